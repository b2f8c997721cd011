#include "flops.hpp"

#include <algorithm>

namespace flashattn::cli {
namespace {

constexpr double kFlopsPerMultiplyAdd = 2.0;

double flops_per_pair(const AttentionShape& shape) {
  return kFlopsPerMultiplyAdd * static_cast<double>(shape.batch) * static_cast<double>(shape.heads_q) *
         static_cast<double>(shape.head_dim + shape.head_dim_v);
}

}  // namespace

std::int64_t visible_pairs(std::int64_t seqlen_q, std::int64_t seqlen_k, const MaskSpec& mask) {
  // As the library folds it in: causal is a window whose right edge is the diagonal.
  const std::int64_t window_right = mask.causal ? 0 : mask.window_right;
  const std::int64_t diagonal_offset = mask.alignment == CausalAlignment::kBottomRight ? seqlen_k - seqlen_q : 0;
  std::int64_t pairs = 0;
  for (std::int64_t i = 0; i < seqlen_q; ++i) {
    const std::int64_t diagonal = i + diagonal_offset;
    const std::int64_t first = mask.window_left < 0 ? 0 : std::max<std::int64_t>(0, diagonal - mask.window_left);
    const std::int64_t last = window_right < 0 ? seqlen_k - 1 : std::min(seqlen_k - 1, diagonal + window_right);
    pairs += std::max<std::int64_t>(0, last - first + 1);
  }
  return pairs;
}

double forward_flops_exact(const AttentionShape& shape, const MaskSpec& mask) {
  return flops_per_pair(shape) * static_cast<double>(visible_pairs(shape.seqlen_q, shape.seqlen_k, mask));
}

double forward_flops_convention(const AttentionShape& shape, bool causal) {
  const double all_pairs = static_cast<double>(shape.seqlen_q) * static_cast<double>(shape.seqlen_k);
  return flops_per_pair(shape) * (causal ? all_pairs / 2.0 : all_pairs);
}

}  // namespace flashattn::cli
