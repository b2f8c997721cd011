// Attention options alone and combined, variable-length batches (sequences of length 0 and 1 among longer
// ones, with and without seqused_k, tokens past the last sequence that must stay unwritten) and memory layouts
// (padded, packed q/k/v, transposed), in every dtype.
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "grids.hpp"

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

// The option families each sequence set of the variable-length grid is tried with.
std::vector<OptionSet> varlen_option_sets() {
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

void set_heavy_options(Config& c) {
  c.causal = true;
  c.softcap = 2.0f;
  c.alibi = Alibi::kPerBatch;
}

}  // namespace

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

std::vector<Config> varlen_grid() {
  constexpr std::int32_t kTrailingTokens = 3;
  std::vector<Config> configs;
  for (const SequenceSet& set : sequence_sets()) {
    for (const auto& options : varlen_option_sets()) {
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

std::vector<Config> layout_grid() {
  std::vector<Config> configs;
  for (Layout layout : {Layout::kPadded, Layout::kPacked, Layout::kTransposed}) {
    for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      for (bool heavy : {false, true}) {
        Config batched;
        batched.dtype = dtype;
        batched.layout = layout;
        batched.batch = 2;
        batched.seqlen_q = 29;
        batched.seqlen_k = 29;  // packed q/k/v needs as many queries as keys
        batched.heads_q = 4;
        batched.heads_kv = 2;
        batched.head_dim = 32;
        batched.head_dim_v = heavy ? 64 : 32;
        if (heavy) set_heavy_options(batched);
        configs.push_back(batched);

        Config varlen = batched;
        varlen.sequences = {{5, 9}, {9, 5}, {0, 0}, {13, 13}};  // 27 query and 27 key tokens
        varlen.varlen_label = "layout";
        varlen.trailing_tokens = 2;
        configs.push_back(varlen);
      }
    }
  }
  return configs;
}

}  // namespace flashattn::test
