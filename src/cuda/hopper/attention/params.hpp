// What the Hopper forward kernel receives: the portable kernels' parameters, the tensor maps its copy engine
// reads Q, K, V and writes O through (O from registers at d = 256, epilogue.cuh), and the persistent schedule's extent.
// Passed as one __grid_constant__ kernel parameter, so the tensor maps sit in parameter space as TMA requires.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/params.hpp"

namespace flashattn::cuda::hopper {

// Division of non-negative ints by a divisor d >= 1 fixed for the whole launch, as a multiply-high, an add and a
// shift (Granlund and Montgomery, "Division by invariant integers using multiplication", 1994): with s = ceil(log2 d)
// and m = floor(2^32 (2^s - d) / d) + 1, n / d = (umulhi(n, m) + n) >> s. The scheduler's divisions by run-time
// divisors were a chain of three float-reciprocal sequences, about 740 cycles between a work tile's last key tile and
// the next tile's first products at d = 128 and seqlen 2k, 1070 at d = 64 causal (event trace, H100, session 13).
// Same call, against those divisions (H100, 2026-11-27 02:46 UTC): d = 64 causal +1.1 to +3.4 %, d = 128 causal +4.3 /
// +0.7 % at 1k / 2k, geomean +0.55 % (a copy of the old library: 0.0 %). With a run-time division left for the last
// group's heads, d = 256 spilled 20 bytes and lost 3.5 to 6.5 %.
struct InvariantDivisor {
  int divisor = 1;
  std::uint32_t multiplier = 1;
  std::uint32_t shift = 0;

  static InvariantDivisor of(int d) {
    InvariantDivisor result;
    result.divisor = d;
    std::uint32_t s = 0;
    while ((std::uint64_t{1} << s) < static_cast<std::uint64_t>(d)) ++s;
    result.shift = s;
    result.multiplier = static_cast<std::uint32_t>(((std::uint64_t{1} << 32) * ((std::uint64_t{1} << s) - d)) / d + 1);
    return result;
  }

  __host__ __device__ __forceinline__ int divide(int n) const {
#if defined(__CUDA_ARCH__)
    const std::uint32_t high = __umulhi(static_cast<std::uint32_t>(n), multiplier);
#else
    const auto high = static_cast<std::uint32_t>((static_cast<std::uint64_t>(n) * multiplier) >> 32);
#endif
    return static_cast<int>((high + static_cast<std::uint32_t>(n)) >> shift);
  }
};

// The order of the (query tile, head, batch) work tiles, in units that the blocks take in turn (scheduler.cuh):
// heads in groups of about one wave of units (tile_order.hpp), and inside a group every head of the group for one
// unit before the next unit, so that the blocks running at once share K and V in L2. A unit is one query tile, the last
// ones first; or, where the query tiles see more keys the later they are (causal), the pair of query tiles
// m_blocks - 1 - k and k, whose key counts add up to about the same for every k: the blocks' shares then come
// out even (a round-robin of single tiles gave them 55 to 87 % balance on the causal benchmark shapes).
struct TileOrder {
  int m_blocks = 0;         // query tiles of a sequence
  int row_shift = 0;        // rows the first query tile begins before the sequence (tile_order.hpp)
  int heads = 0;            // (batch, head) pairs
  int heads_per_group = 1;  // pairs whose K and V are read at the same time
  bool paired = false;      // a unit is a pair of query tiles
  int units_per_head = 0;   // m_blocks, or (m_blocks + 1) / 2 when paired
  int units = 0;            // units_per_head x heads
  // The scheduler's divisors: units of a group (heads_per_group x units_per_head), heads_per_group, and the query
  // heads.
  InvariantDivisor group_units;
  InvariantDivisor group_heads;
  InvariantDivisor last_group_heads;  // the last group's heads (heads - (groups - 1) x heads_per_group)
  InvariantDivisor heads_q;
  // 1 where an empty tile (one whose rows see no key) has been put before the first to pair the last tile of an
  // odd count (tile_order.hpp): tile 0 then is that one, and the walk skips it.
  int empty_tiles = 0;
};

struct HopperForwardParams {
  ForwardParams attention;
  // Four-dimensional (channel, token, head, batch) maps of 16-bit elements, 128-byte swizzled boxes of 64
  // channels: Q and O in block_m- and 64-row boxes, K and V in block_n-row boxes.
  CUtensorMap q_map;
  CUtensorMap k_map;
  CUtensorMap v_map;
  CUtensorMap o_map;
  TileOrder order;
};

}  // namespace flashattn::cuda::hopper
