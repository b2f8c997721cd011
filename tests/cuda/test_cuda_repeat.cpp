// The same inputs many times. The forward is bitwise reproducible in every mode; the backward is in
// deterministic mode (AttentionOptions::deterministic), while by default its dq (and with GQA its dk, dv) may
// be accumulated in a different order each run and is checked against the reference every run instead.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cuda_cases.hpp"

namespace flashattn::test {
namespace {

constexpr int kRuns = 20;

// Bitwise equality of two runs' values; on failure, where and how often they differ.
testing::AssertionResult same_bits(const std::string& what, const std::vector<std::uint64_t>& run,
                                   const std::vector<std::uint64_t>& first) {
  std::size_t differing = 0, first_difference = 0;
  for (std::size_t i = 0; i < first.size(); ++i) {
    if (run[i] != first[i] && differing++ == 0) first_difference = i;
  }
  if (differing == 0) return testing::AssertionSuccess();
  return testing::AssertionFailure() << what << ": " << differing << " of " << first.size()
                                     << " elements differ from the first run, the first at element "
                                     << first_difference;
}

std::vector<Config> repeat_grid() {
  std::vector<Config> configs;
  for (bool deterministic : {false, true}) {
    Config many_key_tiles;  // dq gathers contributions from many key tiles
    many_key_tiles.device = Device::cuda(0);
    many_key_tiles.dtype = DType::kBFloat16;
    many_key_tiles.batch = 1;
    many_key_tiles.seqlen_q = 700;
    many_key_tiles.seqlen_k = 900;
    many_key_tiles.heads_q = 8;
    many_key_tiles.heads_kv = 2;
    many_key_tiles.head_dim = 128;
    many_key_tiles.head_dim_v = 128;
    many_key_tiles.causal = true;
    many_key_tiles.deterministic = deterministic;
    configs.push_back(many_key_tiles);

    Config varlen_mqa = many_key_tiles;  // dk and dv gather 8 query heads each
    varlen_mqa.dtype = DType::kFloat16;
    varlen_mqa.sequences = {{300, 500}, {1, 400}, {0, 0}, {257, 257}};
    varlen_mqa.varlen_label = "repeat";
    varlen_mqa.heads_kv = 1;
    varlen_mqa.head_dim = 64;
    varlen_mqa.head_dim_v = 64;
    varlen_mqa.causal = false;
    varlen_mqa.window_left = 64;
    varlen_mqa.window_right = 16;
    configs.push_back(varlen_mqa);

    Config split_kv = many_key_tiles;  // a forward split over the keys and combined
    split_kv.seqlen_q = 3;
    split_kv.seqlen_k = 4096;
    split_kv.heads_q = 4;
    split_kv.heads_kv = 1;
    split_kv.causal = false;
    configs.push_back(split_kv);
  }
  return configs;
}

class Repeat : public CudaCaseTest {};

TEST_P(Repeat, SameInputsManyRuns) {
  const Config& config = GetParam();
  const Instance c = make_instance(config);
  using reference::Precision;
  const auto forward64 = reference::forward(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), Precision::kFloat64);
  const auto forward_naive =
      reference::forward(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), Precision::kInputDType);
  const auto backward64 =
      reference::backward(c.q.view, c.k.view, c.v.view, c.dout.view, c.options, c.varlen(), Precision::kFloat64);
  const auto backward_naive =
      reference::backward(c.q.view, c.k.view, c.v.view, c.dout.view, c.options, c.varlen(), Precision::kInputDType);

  const std::vector<std::string> names = {"out", "lse", "dq", "dk", "dv"};
  const std::vector<const Tensor*> outputs = {&c.out, &c.lse, &c.dq, &c.dk, &c.dv};
  constexpr std::size_t kFirstGradient = 2;
  std::vector<std::vector<std::uint64_t>> first_run;
  for (int run = 0; run < kRuns && !HasFailure(); ++run) {
    SCOPED_TRACE("run " + std::to_string(run + 1) + " of " + std::to_string(kRuns));
    reset_outputs(c);
    ASSERT_NO_THROW(call_forward(c));
    ASSERT_NO_THROW(call_backward(c));
    // Deterministic runs that match the first bit for bit are as close to the reference as it was.
    if (run == 0 || !config.deterministic) {
      check_forward(c, forward64, forward_naive);
      check_backward(c, backward64, backward_naive, forward64.lse);
    }
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      std::vector<std::uint64_t> bits = bits_of(*outputs[i]);
      if (run == 0) {
        first_run.push_back(std::move(bits));
      } else if (i < kFirstGradient || config.deterministic) {
        EXPECT_TRUE(same_bits(names[i], bits, first_run[i]));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Gpu, Repeat, testing::ValuesIn(repeat_grid()), ConfigName());

}  // namespace
}  // namespace flashattn::test
