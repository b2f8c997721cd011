// A plain, independent implementation of attention used to check the backends (tests and
// `flashattn bench`). It materialises every score row, applies the options exactly as documented in
// flashattn/options.hpp, and shares no code with the backends.
#pragma once

#include <cstdint>
#include <vector>

#include "flashattn/attention.hpp"

namespace flashattn::reference {

enum class Precision {
  kFloat64,     // every step in double: the ground truth
  kInputDType,  // the same naive math in the input's precision, rounding to it where PyTorch's eager
                // attention (scores, probabilities, output, each gradient product) rounds: the yardstick
                // of the error tolerance (FlashAttention-3's test rule)
};

// Results in dense row-major layouts: out (batch, seqlen_q, heads_q, head_dim_v) or
// (total_q, heads_q, head_dim_v); lse (batch, heads_q, seqlen_q) or (heads_q, total_q). Rows past
// cu_seqlens_q[batch] are left 0. Fully masked rows: out 0, lse -inf.
struct ForwardResult {
  std::vector<double> out;
  std::vector<double> lse;
};

// Gradients in dense layouts of q, k, v's shapes.
struct BackwardResult {
  std::vector<double> dq, dk, dv;
};

// Inputs are read through the views (any strides, any dtype the API accepts); they must be on the CPU.
// `varlen` is null for batched layouts.
ForwardResult forward(const TensorView& q, const TensorView& k, const TensorView& v, const AttentionOptions& options,
                      const VarlenSeqlens* varlen, Precision precision);

BackwardResult backward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& dout,
                        const AttentionOptions& options, const VarlenSeqlens* varlen, Precision precision);

// Element conversions, rounding to nearest even; the tests use them to fill and read views too.
double load_element(const void* element, DType dtype);         // fp32, fp16, bf16, int32
void store_element(double value, DType dtype, void* element);  // through float for fp16 and bf16
float round_to_dtype(float value, DType dtype);                // identity for fp32

// One query row (batch b, query head h, query index i within its sequence), float64: out row
// (head_dim_v values) and its lse. For spot checks of large problems.
std::vector<double> forward_row(const TensorView& q, const TensorView& k, const TensorView& v,
                                const AttentionOptions& options, const VarlenSeqlens* varlen, std::int64_t b,
                                std::int64_t h, std::int64_t i, double* lse);

}  // namespace flashattn::reference
