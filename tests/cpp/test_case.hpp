// One attention test case: its configuration, the tensors built for it, and the checks of the library's
// results against the reference (FlashAttention-3's rule, see check_close).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "flashattn/flashattn.hpp"
#include "reference/reference.hpp"
#include "test_tensors.hpp"

namespace flashattn::test {

enum class Alibi { kNone, kPerHead, kPerBatch };

struct Config {
  DType dtype = DType::kFloat32;
  std::int64_t batch = 2;
  std::int64_t seqlen_q = 16;
  std::int64_t seqlen_k = 16;
  std::int64_t heads_q = 2;
  std::int64_t heads_kv = 2;
  std::int64_t head_dim = 32;
  std::int64_t head_dim_v = 32;

  // Variable length when non-empty: (query tokens, key tokens) of each sequence; batch and seqlen_* are
  // then ignored.
  std::vector<std::pair<std::int32_t, std::int32_t>> sequences;
  std::vector<std::int32_t> seqused_k;  // optional, one entry per sequence
  std::int32_t trailing_tokens = 0;     // packed tokens past the last sequence, which must stay unwritten
  std::string varlen_label;             // names the sequence set in the test name

  bool causal = false;
  CausalAlignment alignment = CausalAlignment::kBottomRight;
  int window_left = -1;
  int window_right = -1;
  float softcap = 0.0f;
  Alibi alibi = Alibi::kNone;
  std::optional<float> softmax_scale;

  Layout layout = Layout::kDense;
  int num_threads = 0;
  bool backward = true;

  bool varlen() const { return !sequences.empty(); }
  // A unique, readable identifier ([A-Za-z0-9_]); it also seeds the inputs.
  std::string name() const;
};

// The tensors of one case: inputs filled with random normal values, outputs poisoned with NaN.
struct Instance {
  Config config;
  AttentionOptions options;
  Tensor q, k, v, out, lse;
  Tensor dout, dq, dk, dv;
  Tensor cu_seqlens_q, cu_seqlens_k, seqused_k, alibi_slopes;
  std::optional<VarlenSeqlens> seqlens;

  const VarlenSeqlens* varlen() const { return seqlens ? &*seqlens : nullptr; }
};

Instance make_instance(const Config& config);

void call_forward(const Instance& c);
void call_backward(const Instance& c);

// FlashAttention-3's rule: max|backend - ref64| <= 2 * max|naive - ref64| + atol, where naive is the
// reference computed in the input's precision and atol = 2 * u * (max|ref64| + 0.3): twice the rounding
// error of a value of the reference's magnitude, as FA3's `2 * (ref + 0.3 - 0.3 - ref)`. u is the unit
// roundoff for fp16 (2^-11) and bf16 (2^-8); for fp32 it is 2^-14 (see kAtolUnitFloat32 for why). Any NaN
// fails; infinities must match exactly. Elements with `must_stay_poisoned` set are not compared: they
// must still be NaN.
testing::AssertionResult check_close(const std::string& what, const std::vector<double>& backend,
                                     const std::vector<double>& ref64, const std::vector<double>& naive, DType dtype,
                                     const std::vector<bool>& must_stay_poisoned = {});

// Checks the forward's out and lse (and that nothing outside the outputs' views was written).
void check_forward(const Instance& c, const reference::ForwardResult& ref64, const reference::ForwardResult& naive);
// ref_lse: the float64 forward's lse, to find the fully masked rows.
void check_backward(const Instance& c, const reference::BackwardResult& ref64, const reference::BackwardResult& naive,
                    const std::vector<double>& ref_lse);

// Builds the case, runs the forward (and the backward when config.backward) and checks every output.
void run_case(const Config& config);

// How many query rows of the case see no key at all (by the float64 reference).
std::int64_t fully_masked_rows(const Config& config);

// Bit patterns of the view's values, for bitwise comparisons.
std::vector<std::uint64_t> bits_of(const Tensor& t);

// gtest prints a parameter by its name.
void PrintTo(const Config& config, std::ostream* os);

// gtest parameter names.
struct ConfigName {
  std::string operator()(const testing::TestParamInfo<Config>& info) const { return info.param.name(); }
};

}  // namespace flashattn::test
