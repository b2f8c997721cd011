// Every attention option alone and in combination, on square and rectangular problems, in each dtype;
// every case checks the forward (out, lse) and the backward (dq, dk, dv).
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "test_case.hpp"

namespace flashattn::test {
namespace {

constexpr auto kTopLeft = CausalAlignment::kTopLeft;

// Sets some options of a Config.
using OptionSet = std::function<void(Config&)>;

std::vector<OptionSet> option_sets() {
  return {
      {[](Config&) {}},
      {[](Config& c) { c.causal = true; }},
      {[](Config& c) {
        c.causal = true;
        c.alignment = kTopLeft;
      }},
      {[](Config& c) { c.window_left = 5; }},
      {[](Config& c) { c.window_right = 3; }},
      {[](Config& c) {
        c.window_left = 4;
        c.window_right = 2;
      }},
      {[](Config& c) {
        c.window_left = 0;
        c.window_right = 0;
      }},
      {[](Config& c) {
        c.window_left = 3;
        c.window_right = 1;
        c.alignment = kTopLeft;
      }},
      {[](Config& c) { c.window_right = 0; }},  // causal spelled as a window
      {[](Config& c) { c.softcap = 1.5f; }},
      {[](Config& c) { c.alibi = Alibi::kPerHead; }},
      {[](Config& c) { c.alibi = Alibi::kPerBatch; }},
      {[](Config& c) { c.softmax_scale = 0.3f; }},
      {[](Config& c) {
        c.causal = true;
        c.softcap = 2.5f;
      }},
      {[](Config& c) {
        c.causal = true;
        c.alignment = kTopLeft;
        c.alibi = Alibi::kPerHead;
      }},
      {[](Config& c) {
        c.causal = true;
        c.window_left = 4;
      }},
      {[](Config& c) {
        c.window_left = 6;
        c.window_right = 2;
        c.alibi = Alibi::kPerBatch;
        c.softcap = 1.0f;
      }},
      {[](Config& c) {
        c.causal = true;
        c.alignment = kTopLeft;
        c.window_left = 3;
        c.softcap = 1.5f;
        c.alibi = Alibi::kPerBatch;
        c.softmax_scale = 0.2f;
      }},
      {[](Config& c) {
        c.causal = true;
        c.window_right = 0;  // explicit 0 is allowed alongside causal
        c.alibi = Alibi::kPerHead;
        c.softmax_scale = 1.1f;
      }},
  };
}

struct ProblemShape {
  std::int64_t batch, seqlen_q, seqlen_k;
};

std::vector<Config> option_grid() {
  // Square, more keys than queries and more queries than keys (fully masked rows under bottom-right
  // causal and windows).
  const ProblemShape shapes[] = {{2, 33, 33}, {1, 17, 40}, {2, 40, 17}};
  std::vector<Config> configs;
  for (const OptionSet& options : option_sets()) {
    for (const ProblemShape& shape : shapes) {
      for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
        Config c;
        c.dtype = dtype;
        c.batch = shape.batch;
        c.seqlen_q = shape.seqlen_q;
        c.seqlen_k = shape.seqlen_k;
        c.heads_q = 4;
        c.heads_kv = 2;
        c.head_dim = 32;
        c.head_dim_v = 32;
        options(c);
        configs.push_back(c);
      }
    }
  }
  return configs;
}

class Options : public testing::TestWithParam<Config> {};

TEST_P(Options, ForwardAndBackwardMatchReference) { run_case(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Grid, Options, testing::ValuesIn(option_grid()), ConfigName());

}  // namespace
}  // namespace flashattn::test
