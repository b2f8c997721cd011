// The Hopper forward's order of work tiles (TileOrder, params.hpp), planned on the host for each launch: how the
// query tiles of a sequence are placed and paired, and how the (batch, head) pairs are grouped so that the blocks
// running at once share K and V in L2. Plain C++, so that tests/cuda/test_hopper_schedule.cpp checks it without a
// GPU.
#pragma once

#include <algorithm>
#include <cstdint>

#include "cuda/hopper/attention/params.hpp"

namespace flashattn::cuda::hopper {

// The bytes of K and V in a group of (batch, head) pairs: at most kL2GroupBytes (H100's L2 holds 50 MB), and at
// most kL2SmallGroupBytes where that still leaves kMinGroupHeads heads (plan_tile_order below).
inline constexpr std::int64_t kL2GroupBytes = std::int64_t{24} << 20;
inline constexpr std::int64_t kL2SmallGroupBytes = std::int64_t{8} << 20;
inline constexpr std::int64_t kMinGroupHeads = 4;

// The order of a batched problem's work tiles in `block_m`-row query tiles, each split among consumers of
// `consumer_rows` rows, for a grid of `multiprocessors` blocks; K and V of `element_bytes` per value.
inline TileOrder plan_tile_order(const ForwardParams& a, int block_m, int consumer_rows, int element_bytes,
                                 int multiprocessors) {
  TileOrder order;
  order.m_blocks = (a.seqlen_q + block_m - 1) / block_m;
  // Where the keys are bounded on the right (causal) the partial query tile goes first, since the first tile sees
  // the fewest keys there, by whole consumers' rows: a consumer's rows are then all in the sequence or all before
  // its start, whose output it does not write (epilogue.cuh); TMA fills their Q with zeros. (Shifted by 127 rows,
  // so that a consumer's output box began 63 rows before the sequence, the kernel stopped with an illegal instruction
  // on an H100.) d = 64's 192-row tile at seqlen 4k, H100, same call, 2026-11-26: +4.5 % causal (363 key tiles per
  // head against 384).
  const int spare_rows = order.m_blocks * block_m - a.seqlen_q;
  order.row_shift = a.window_right >= 0 && order.m_blocks > 1 ? spare_rows / consumer_rows * consumer_rows : 0;
  order.heads = a.batch * a.heads_q;
  // Later query tiles see more keys when the window's right side is bounded and its left side is not (causal).
  order.paired = a.window_right >= 0 && a.window_left < 0;
  // An odd tile count leaves the middle tile unpaired, a unit of half the others' keys. Where one more tile before the
  // first would see no key at all, the pairs are taken as if it were there: the last tile then goes alone (its pair
  // the empty tile, which the walk skips) and every unit has about the same key count. d = 64's 192-row tile at
  // seqlen 2k has 11 tiles of 1 to 16 key tiles: five pairs of 17 or 18 and one of 9 tiles, or six units of 16.
  // H200, in-process A/B, 2026-11-27 05:23 UTC, causal at 1152 / 1920 queries (9 / 15 tiles): d = 64 +8.1 / +5.7 %,
  // d = 128 +4.0 / +5.9 %, d = 256 +10.7 / +5.7 % (with the empty tile walked rather than skipped: d = 128 +1.5 /
  // +4.8 %, the others the same).
  const int key_offset = a.bottom_right ? a.seqlen_k - a.seqlen_q : 0;
  if (order.paired && order.m_blocks > 1 && order.m_blocks % 2 == 1 && key_offset + a.window_right <= order.row_shift) {
    ++order.m_blocks;
    order.row_shift += block_m;
    order.empty_tiles = 1;
  }
  order.units_per_head = order.paired ? (order.m_blocks + 1) / 2 : order.m_blocks;
  order.units = order.units_per_head * order.heads;
  // A group is about one wave of units, and at least kMinGroupHeads heads: the blocks running at the same time
  // then work on few heads and read each head's K and V from L2 once it is there, without all of them reading
  // the same tiles at once. H100, bf16, same call: at d = 128, groups of 24 MB of K and V (48 heads at seqlen
  // 1k) gave 520 / 595 / 633 TFLOP/s at seqlen 1k / 2k / 4k, 8 MB (16 heads, one wave) 549 / 613 / 644, 96 MB
  // 330 / 449 / 601; one wave of one head at seqlen 16k (every block on the same K and V) cost 3 % at d = 128
  // and 11 % at d = 64 against 3 and 6 heads. Smaller groups keep a head's units closer together in the walk, so
  // that they read its K and V from L2 before it is evicted: groups of at most 8 MiB instead of 24 MiB (H100, same
  // call, 2026-11-27 01:07 UTC) gave d = 256 +9.3 % causal at 1k (8 heads against 24), +3.3 % at 2k, +2.0 % without
  // a mask at 1k, d = 128 +1.4 % causal at 2k; where they left fewer than kMinGroupHeads heads (1 or 2 from seqlen
  // 8k at d = 128) they cost 0.6-1.3 %, hence the floor.
  const std::int64_t kv_bytes_per_head =
      static_cast<std::int64_t>(a.seqlen_k) * (a.head_dim + a.head_dim_v) * static_cast<std::int64_t>(element_bytes);
  const auto heads_within = [&](std::int64_t bytes) {
    return bytes * a.group_size() / std::max<std::int64_t>(kv_bytes_per_head, 1);
  };
  const std::int64_t wave_heads =
      std::max<std::int64_t>(multiprocessors / std::max(order.units_per_head, 1), kMinGroupHeads);
  const std::int64_t l2_heads =
      std::min(heads_within(kL2GroupBytes), std::max(heads_within(kL2SmallGroupBytes), kMinGroupHeads));
  order.heads_per_group = static_cast<int>(std::clamp<std::int64_t>(std::min(wave_heads, l2_heads), 1, order.heads));
  order.group_units = InvariantDivisor::of(order.heads_per_group * order.units_per_head);
  order.group_heads = InvariantDivisor::of(order.heads_per_group);
  order.last_group_heads =
      InvariantDivisor::of(order.heads - (order.heads - 1) / order.heads_per_group * order.heads_per_group);
  order.heads_q = InvariantDivisor::of(a.heads_q);
  return order;
}

}  // namespace flashattn::cuda::hopper
