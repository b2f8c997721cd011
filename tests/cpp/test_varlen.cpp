// Variable-length batches: sequences of length 0 and 1 among longer ones, with and without seqused_k,
// tokens past the last sequence (never written), in every option family and dtype.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "test_case.hpp"

namespace flashattn::test {
namespace {

constexpr auto kTopLeft = CausalAlignment::kTopLeft;

struct SequenceSet {
  std::string label;
  std::vector<std::pair<std::int32_t, std::int32_t>> lengths;  // (queries, keys)
  std::vector<std::int32_t> seqused_k;                         // keys used, <= keys
  std::int64_t head_dim_v;
};

std::vector<SequenceSet> sequence_sets() {
  return {
      {"mixed", {{5, 9}, {0, 4}, {1, 1}, {17, 0}, {33, 33}, {1, 40}, {12, 3}, {0, 0}}, {4, 4, 0, 0, 20, 40, 1, 0}, 32},
      {"single", {{37, 53}}, {30}, 64},
      {"short", {{1, 1}, {1, 0}, {0, 1}, {2, 7}}, {1, 0, 1, 3}, 32},
  };
}

std::vector<std::function<void(Config&)>> option_sets() {
  return {
      [](Config&) {},
      [](Config& c) { c.causal = true; },
      [](Config& c) {
        c.causal = true;
        c.alignment = kTopLeft;
      },
      [](Config& c) {
        c.window_left = 3;
        c.window_right = 2;
      },
      [](Config& c) {
        c.softcap = 1.5f;
        c.alibi = Alibi::kPerBatch;
      },
      [](Config& c) {
        c.causal = true;
        c.alignment = kTopLeft;
        c.window_left = 2;
        c.alibi = Alibi::kPerHead;
      },
      [](Config& c) {
        c.window_right = 0;
        c.softcap = 2.0f;
        c.softmax_scale = 0.25f;
      },
  };
}

std::vector<Config> varlen_grid() {
  constexpr std::int32_t kTrailingTokens = 3;
  std::vector<Config> configs;
  for (const SequenceSet& set : sequence_sets()) {
    for (const auto& options : option_sets()) {
      for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
        for (bool used : {false, true}) {
          Config c;
          c.dtype = dtype;
          c.sequences = set.lengths;
          c.varlen_label = set.label;
          c.heads_q = 4;
          c.heads_kv = 2;
          c.head_dim = 32;
          c.head_dim_v = set.head_dim_v;
          if (used) {
            c.seqused_k = set.seqused_k;
            c.trailing_tokens = kTrailingTokens;
          }
          options(c);
          configs.push_back(c);
        }
      }
    }
  }
  return configs;
}

class Varlen : public testing::TestWithParam<Config> {};

TEST_P(Varlen, ForwardAndBackwardMatchReference) { run_case(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Grid, Varlen, testing::ValuesIn(varlen_grid()), ConfigName());

}  // namespace
}  // namespace flashattn::test
