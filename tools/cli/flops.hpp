// Floating-point operation counts of attention, for throughput figures.
//
// Each visible (query i, key j) pair costs 2 * head_dim FLOPs in q.k and 2 * head_dim_v in p.v, so the
// forward pass does 2 * batch * heads_q * (head_dim + head_dim_v) FLOPs per visible pair; the backward pass
// counts 2.5 times the forward (its five matrix products against the forward's two).
//
// Two figures:
//  - exact: counts the pairs the mask leaves visible (causal, either alignment, and sliding windows). This is
//    the work a tile-skipping kernel must do at least, so it is honest for every mask.
//  - FlashAttention convention: every pair, halved when causal (4 * b * h * s_q * s_k * d at
//    head_dim_v = head_dim); windows are not discounted. This is what flash-attn, the FlashAttention papers
//    and PyTorch benchmarks report; for causal with s_q = s_k it differs from the exact count only by the
//    diagonal (s_q * (s_q + 1) / 2 against s_q^2 / 2).
#pragma once

#include <cstdint>

#include "flashattn/options.hpp"

namespace flashattn::cli {

inline constexpr double kBackwardFlopsFactor = 2.5;

struct AttentionShape {
  std::int64_t batch = 0;
  std::int64_t heads_q = 0;
  std::int64_t seqlen_q = 0;
  std::int64_t seqlen_k = 0;
  std::int64_t head_dim = 0;
  std::int64_t head_dim_v = 0;
};

struct MaskSpec {
  bool causal = false;
  CausalAlignment alignment = CausalAlignment::kBottomRight;
  std::int64_t window_left = -1;  // -1: unbounded
  std::int64_t window_right = -1;
};

// Number of (i, j) pairs of one (batch, head) that the mask leaves visible.
std::int64_t visible_pairs(std::int64_t seqlen_q, std::int64_t seqlen_k, const MaskSpec& mask);

// Forward FLOPs; multiply by kBackwardFlopsFactor for the backward pass.
double forward_flops_exact(const AttentionShape& shape, const MaskSpec& mask);
double forward_flops_convention(const AttentionShape& shape, bool causal);

}  // namespace flashattn::cli
