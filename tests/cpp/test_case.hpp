// One attention test case: its configuration, the tensors built for it, and the checks of the library's
// results against the reference (FlashAttention-3's rule, see check_close). A case runs on the CPU or, with
// its tensors copied to the GPU (device_memory.hpp), on a CUDA device; the checks are the same.
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
  bool deterministic = false;  // AttentionOptions::deterministic

  // Where the library runs the case: the CPU backend, or the CUDA backend on copies of the tensors in that
  // device's memory. Not part of the name: each test binary runs one kind of device.
  Device device = Device::cpu();

  bool varlen() const { return !sequences.empty(); }
  // A unique, readable identifier ([A-Za-z0-9_]); it also seeds the inputs.
  std::string name() const;
};

// What the library is called with: the host tensors' views for CPU cases; for CUDA cases the same views
// moved onto the storages' device copies (alibi slopes, cu_seqlens and seqused_k included).
struct Arguments {
  TensorView q, k, v, out, lse, dout, dq, dk, dv;
  AttentionOptions options;
  std::optional<VarlenSeqlens> seqlens;
};

// The tensors of one case: inputs filled with random normal values, outputs poisoned with NaN. The host
// tensors, `options` and `seqlens` are what the reference reads and what the checks look at.
struct Instance {
  Config config;
  AttentionOptions options;
  Tensor q, k, v, out, lse;
  Tensor dout, dq, dk, dv;
  Tensor cu_seqlens_q, cu_seqlens_k, seqused_k, alibi_slopes;
  std::optional<VarlenSeqlens> seqlens;
  Arguments args;

  const VarlenSeqlens* varlen() const { return seqlens ? &*seqlens : nullptr; }
  bool on_cuda() const { return config.device.type == DeviceType::kCUDA; }
};

Instance make_instance(const Config& config);

// Call the library with c.args; for CUDA cases, then wait for the stream in c.args.options and copy the
// results (out and lse; dq, dk and dv) back into the host tensors.
void call_forward(const Instance& c);
void call_backward(const Instance& c);

// Copies every output (out, lse, dq, dk, dv) of a CUDA case back into its host tensor, e.g. after a call that
// threw, to see that it wrote nothing.
void copy_outputs_to_host(const Instance& c);

// Poisons every output storage with NaN again (and its device copy), so that the next call is checked as
// the first was.
void reset_outputs(const Instance& c);

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

// Runs the forward (and the backward when config.backward) and checks every output.
void run_instance(const Instance& c);
// run_instance on make_instance(config).
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
