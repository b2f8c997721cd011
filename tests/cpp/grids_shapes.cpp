// Problem shapes: odd sequence lengths both ways, empty sequences, every head-dim class, head_dim_v !=
// head_dim, GQA / MQA, and rows that see no key.
#include <utility>
#include <vector>

#include "grids.hpp"

namespace flashattn::test {
namespace {

constexpr DType kDTypes[] = {DType::kFloat32, DType::kFloat16, DType::kBFloat16};
constexpr auto kTopLeft = CausalAlignment::kTopLeft;

// The mask variants every odd shape is tried with; the last also reshapes the scores.
enum class Mask { kNone, kCausalBottomRight, kCausalTopLeft, kWindowSoftcapAlibi };

void apply(Mask mask, Config& c) {
  c.causal = mask == Mask::kCausalBottomRight || mask == Mask::kCausalTopLeft;
  c.alignment = mask == Mask::kCausalTopLeft ? kTopLeft : CausalAlignment::kBottomRight;
  if (mask == Mask::kWindowSoftcapAlibi) {
    c.window_left = 50;
    c.window_right = 9;
    c.softcap = 2.0f;
    c.alibi = Alibi::kPerBatch;
  }
}

Config base(DType dtype, std::int64_t seqlen_q, std::int64_t seqlen_k, std::int64_t head_dim) {
  Config c;
  c.dtype = dtype;
  c.batch = 1;
  c.seqlen_q = seqlen_q;
  c.seqlen_k = seqlen_k;
  c.heads_q = 2;
  c.heads_kv = 1;
  c.head_dim = head_dim;
  c.head_dim_v = head_dim;
  return c;
}

}  // namespace

// Lengths 1, 7, 113, 257 against each other; the dtype rotates so that each appears throughout.
std::vector<Config> odd_lengths_grid() {
  const std::int64_t lengths[] = {1, 7, 113, 257};
  std::vector<Config> configs;
  std::size_t n = 0;
  for (std::int64_t seqlen_q : lengths) {
    for (std::int64_t seqlen_k : lengths) {
      for (Mask mask : {Mask::kNone, Mask::kCausalBottomRight, Mask::kCausalTopLeft, Mask::kWindowSoftcapAlibi}) {
        Config c = base(kDTypes[n++ % 3], seqlen_q, seqlen_k, 64);
        apply(mask, c);
        configs.push_back(c);
      }
    }
  }
  return configs;
}

std::vector<Config> head_dims_grid() {
  std::vector<Config> configs;
  for (std::int64_t head_dim : {8, 16, 40, 64, 96, 128, 160, 256}) {
    for (DType dtype : kDTypes) {
      Config c = base(dtype, 37, 29, head_dim);
      c.causal = head_dim % 16 == 0;
      configs.push_back(c);
    }
  }
  // head_dim_v != head_dim, both ways.
  const std::pair<std::int64_t, std::int64_t> pairs[] = {{64, 128}, {128, 64}, {32, 256},
                                                         {256, 32}, {8, 256},  {96, 40}};
  std::size_t n = 0;
  for (const auto& [head_dim, head_dim_v] : pairs) {
    for (Mask mask : {Mask::kNone, Mask::kCausalBottomRight}) {
      Config c = base(kDTypes[n++ % 3], 29, 45, head_dim);
      c.head_dim_v = head_dim_v;
      c.heads_q = 4;
      c.heads_kv = 2;
      apply(mask, c);
      configs.push_back(c);
    }
  }
  return configs;
}

// The largest problems of the suite: 257 tokens at head_dim 256.
std::vector<Config> large_grid() {
  std::vector<Config> configs;
  Config c = base(DType::kFloat16, 257, 257, 256);
  c.causal = true;
  configs.push_back(c);
  c = base(DType::kBFloat16, 257, 257, 256);
  c.softcap = 3.0f;
  c.alibi = Alibi::kPerHead;
  configs.push_back(c);
  c = base(DType::kFloat32, 257, 113, 256);
  c.window_left = 40;
  c.window_right = 7;
  configs.push_back(c);
  return configs;
}

std::vector<Config> head_groups_grid() {
  // (heads_q, heads_kv): group sizes 1, 4, 8 and multi-query attention.
  const std::pair<std::int64_t, std::int64_t> groups[] = {{3, 3}, {8, 2}, {16, 2}, {4, 1}, {8, 1}};
  std::vector<Config> configs;
  for (const auto& [heads_q, heads_kv] : groups) {
    for (int variant = 0; variant < 3; ++variant) {
      for (DType dtype : kDTypes) {
        Config c = base(dtype, 23, 41, 32);
        c.heads_q = heads_q;
        c.heads_kv = heads_kv;
        if (variant == 1) {
          c.causal = true;
          c.alibi = Alibi::kPerHead;
        } else if (variant == 2) {
          c.softcap = 2.0f;
          c.window_left = 8;
          c.window_right = 3;
          c.alibi = Alibi::kPerBatch;
        }
        configs.push_back(c);
      }
    }
  }
  return configs;
}

// seqlen_k = 0 gives out 0 and lse -inf; seqlen_q = 0 or batch 0 write nothing.
std::vector<Config> empty_grid() {
  struct Sizes {
    std::int64_t batch, seqlen_q, seqlen_k;
  };
  const Sizes sizes[] = {{2, 0, 9}, {2, 9, 0}, {2, 0, 0}, {0, 5, 5}};
  std::vector<Config> configs;
  for (const Sizes& s : sizes) {
    for (int variant = 0; variant < 3; ++variant) {
      for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
        Config c = base(dtype, s.seqlen_q, s.seqlen_k, 32);
        c.batch = s.batch;
        if (variant == 1) c.causal = true;
        if (variant == 2) {
          c.causal = true;
          c.alignment = kTopLeft;
          c.alibi = Alibi::kPerBatch;
          c.softcap = 1.0f;
        }
        configs.push_back(c);
      }
    }
  }
  return configs;
}

// Problems whose masks leave some query rows without any key.
std::vector<Config> fully_masked_grid() {
  std::vector<Config> configs;
  Config c = base(DType::kFloat32, 41, 17, 32);
  c.causal = true;  // bottom-right with seqlen_q > seqlen_k: the top 24 rows see nothing
  configs.push_back(c);
  c = base(DType::kFloat16, 41, 17, 32);
  c.alignment = kTopLeft;
  c.window_left = 5;  // top-left window: rows past seqlen_k + 5 see nothing
  c.window_right = 2;
  configs.push_back(c);
  c = base(DType::kBFloat16, 30, 12, 64);
  c.window_left = 3;  // bottom-right window, more queries than keys
  c.window_right = 1;
  c.softcap = 1.5f;
  c.alibi = Alibi::kPerHead;
  configs.push_back(c);
  c = base(DType::kFloat32, 40, 6, 32);
  c.alignment = kTopLeft;
  c.causal = true;
  c.window_left = 2;  // top-left causal window: rows past seqlen_k + 2 see nothing
  configs.push_back(c);
  return configs;
}

}  // namespace flashattn::test
