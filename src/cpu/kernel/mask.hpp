// The mask as a policy that owns the loop bounds: which keys a query row sees, which query rows a key is
// seen by, and whether a tile needs per-element masking at all. Causal is a window with right = 0; the
// alignment places the diagonal d_i = i + offset (bottom-right: offset = seqlen_k - seqlen_q; top-left: 0).
// Query i sees key j iff 0 <= j < seqlen_k, j >= d_i - left (left >= 0), j <= d_i + right (right >= 0).
#pragma once

#include <algorithm>
#include <cstdint>

#include "problem.hpp"

namespace flashattn::cpu {
namespace {

struct MaskPolicy {
  std::int64_t seqlen_q = 0;
  std::int64_t seqlen_k = 0;
  std::int64_t offset = 0;
  std::int64_t left = -1;  // -1 unbounded
  std::int64_t right = -1;

  static MaskPolicy of(const detail::Problem& p, const detail::SequenceSpan& s) {
    MaskPolicy m;
    m.seqlen_q = s.seqlen_q;
    m.seqlen_k = s.seqlen_k;
    m.offset = p.alignment == CausalAlignment::kBottomRight ? s.seqlen_k - s.seqlen_q : 0;
    m.left = p.window_left;
    m.right = p.window_right;
    return m;
  }

  std::int64_t diagonal(std::int64_t row) const { return row + offset; }

  // Keys seen by query `row`: [first_key, end_key); empty when first_key >= end_key.
  std::int64_t first_key(std::int64_t row) const {
    return left < 0 ? 0 : std::clamp<std::int64_t>(diagonal(row) - left, 0, seqlen_k);
  }
  std::int64_t end_key(std::int64_t row) const {
    return right < 0 ? seqlen_k : std::clamp<std::int64_t>(diagonal(row) + right + 1, 0, seqlen_k);
  }

  // Query rows that see key `key`: [first_row, end_row), clamped to [0, seqlen_q].
  std::int64_t first_row(std::int64_t key) const {
    return right < 0 ? 0 : std::clamp<std::int64_t>(key - offset - right, 0, seqlen_q);
  }
  std::int64_t end_row(std::int64_t key) const {
    return left < 0 ? seqlen_q : std::clamp<std::int64_t>(key - offset + left + 1, 0, seqlen_q);
  }

  // Keys seen by any row of [row_begin, row_end): both bounds grow with the row.
  std::int64_t first_key_of_rows(std::int64_t row_begin) const { return first_key(row_begin); }
  std::int64_t end_key_of_rows(std::int64_t row_end) const { return end_key(row_end - 1); }
  // Rows that see any key of [key_begin, key_end).
  std::int64_t first_row_of_keys(std::int64_t key_begin) const { return first_row(key_begin); }
  std::int64_t end_row_of_keys(std::int64_t key_end) const { return end_row(key_end - 1); }

  // True unless every row of [row_begin, row_end) sees every key of [key_begin, key_end).
  bool tile_needs_mask(std::int64_t row_begin, std::int64_t row_end, std::int64_t key_begin,
                       std::int64_t key_end) const {
    return first_key(row_end - 1) > key_begin || end_key(row_begin) < key_end;
  }

  // Number of visible (row, key) pairs of rows [row_begin, row_end): the work of a query tile.
  std::int64_t visible_pairs(std::int64_t row_begin, std::int64_t row_end) const {
    std::int64_t pairs = 0;
    for (std::int64_t r = row_begin; r < row_end; ++r) pairs += std::max<std::int64_t>(0, end_key(r) - first_key(r));
    return pairs;
  }
};

}  // namespace
}  // namespace flashattn::cpu
