// The Hopper forward's tile scheduler, checked without a GPU.
// - It divides by divisors fixed for a launch with a multiply-high and a shift (InvariantDivisor,
//   src/cuda/hopper/attention/params.hpp). Its host form is the same arithmetic as the device form (__umulhi there, a
//   64-bit product here): every quotient against integer division, for every divisor up to 4096 and divisors near
//   powers of two up to 2^31 - 1, over dividends near the multiples of the divisor, random ones and the largest int.
// - The order of its work tiles is planned on the host (tile_order.hpp): under a causal mask every query tile is
//   walked once and the units' key counts come out even.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "cuda/hopper/attention/params.hpp"
#include "cuda/hopper/attention/tile_order.hpp"

namespace {

using flashattn::cuda::ForwardParams;
using flashattn::cuda::hopper::InvariantDivisor;
using flashattn::cuda::hopper::plan_tile_order;
using flashattn::cuda::hopper::TileOrder;

std::vector<int> divisors() {
  std::vector<int> result;
  for (int d = 1; d <= 4096; ++d) result.push_back(d);
  for (int bit = 12; bit <= 30; ++bit) {
    for (int delta = -2; delta <= 2; ++delta) result.push_back((1 << bit) + delta);
  }
  result.push_back(std::numeric_limits<int>::max() - 1);
  result.push_back(std::numeric_limits<int>::max());
  return result;
}

void expect_divides(const InvariantDivisor& divisor, int n) {
  ASSERT_EQ(divisor.divide(n), n / divisor.divisor) << n << " / " << divisor.divisor;
}

TEST(HopperSchedule, InvariantDivisorMatchesIntegerDivision) {
  constexpr int kMax = std::numeric_limits<int>::max();
  std::mt19937 rng(20261127);
  std::uniform_int_distribution<int> any(0, kMax);
  for (const int d : divisors()) {
    const InvariantDivisor divisor = InvariantDivisor::of(d);
    ASSERT_EQ(divisor.divisor, d);
    for (int n = 0; n < 512; ++n) expect_divides(divisor, n);
    for (const std::int64_t k : {std::int64_t{1}, std::int64_t{2}, std::int64_t{3}, std::int64_t{kMax / d}}) {
      for (std::int64_t n = k * d - 2; n <= k * d + 2; ++n) {
        if (n >= 0 && n <= kMax) expect_divides(divisor, static_cast<int>(n));
      }
    }
    for (int i = 0; i < 64; ++i) expect_divides(divisor, any(rng));
    expect_divides(divisor, kMax);
  }
}

// A batched d = 64 problem of 2 x 4 query heads (2 KV heads) without a mask.
ForwardParams problem(int seqlen_q, int seqlen_k) {
  ForwardParams a;
  a.batch = 2;
  a.heads_q = 4;
  a.heads_kv = 2;
  a.head_dim = 64;
  a.head_dim_v = 64;
  a.seqlen_q = seqlen_q;
  a.seqlen_k = seqlen_k;
  return a;
}

// The tile order (tile_order.hpp) of a causal problem with these lengths, on 132 multiprocessors, bf16.
TileOrder causal_order(int seqlen_q, int seqlen_k, int block_m, bool bottom_right = true) {
  ForwardParams a = problem(seqlen_q, seqlen_k);
  a.window_right = 0;
  a.bottom_right = bottom_right;
  return plan_tile_order(a, block_m, 64, 2, 132);
}

// Key tiles of 128 keys that query tile `tile` of the order sees under a causal mask (equal lengths): none for a tile
// whose rows all lie before the sequence.
int causal_key_tiles(const TileOrder& order, int tile, int block_m, int seqlen) {
  const int first_row = tile * block_m - order.row_shift;
  const int end_row = std::min(first_row + block_m, seqlen);
  if (end_row <= 0) return 0;
  return (end_row + 127) / 128;
}

// The walk (scheduler.cuh) takes unit k as query tiles m_blocks - 1 - k and k, but k alone where it is the first or
// the empty tile before the sequence. Every tile of the sequence must come once, and the units' key counts may differ
// by at most one key tile: without the empty tile an odd count leaves a unit of half the others' (d = 64's 192-row
// tile at 2k: units of 17 or 18 key tiles and one of 9).
TEST(HopperSchedule, CausalUnitsCoverEveryTileOnceWithEvenWork) {
  for (const int block_m : {128, 192}) {
    for (int seqlen = 1; seqlen <= 4200; seqlen += 3) {
      const TileOrder order = causal_order(seqlen, seqlen, block_m);
      ASSERT_TRUE(order.paired);
      ASSERT_EQ(order.units_per_head, (order.m_blocks + 1) / 2);
      std::vector<int> walked(order.m_blocks, 0);
      int fewest = std::numeric_limits<int>::max();
      int most = 0;
      for (int k = 0; k < order.units_per_head; ++k) {
        const int last = order.m_blocks - 1 - k;
        int key_tiles = causal_key_tiles(order, last, block_m, seqlen);
        ++walked[last];
        if (k >= order.empty_tiles && k != last) {
          key_tiles += causal_key_tiles(order, k, block_m, seqlen);
          ++walked[k];
        }
        fewest = std::min(fewest, key_tiles);
        most = std::max(most, key_tiles);
      }
      for (int tile = 0; tile < order.m_blocks; ++tile) {
        const bool in_sequence = tile * block_m - order.row_shift + block_m > 0;
        ASSERT_EQ(walked[tile], in_sequence ? 1 : 0)
            << "tile " << tile << ", seqlen " << seqlen << ", block_m " << block_m;
      }
      ASSERT_LE(most - fewest, 1) << "seqlen " << seqlen << ", block_m " << block_m;
    }
  }
}

TEST(HopperSchedule, EmptyTileOnlyWhereItSeesNoKey) {
  // 2048 queries in 192-row tiles: 11 tiles, the first 64 rows before the sequence; one more makes 12.
  TileOrder order = causal_order(2048, 2048, 192);
  EXPECT_EQ(order.m_blocks, 12);
  EXPECT_EQ(order.row_shift, 64 + 192);
  EXPECT_EQ(order.empty_tiles, 1);
  EXPECT_EQ(order.units_per_head, 6);
  // An even count is left as it is.
  order = causal_order(2048, 2048, 128);
  EXPECT_EQ(order.m_blocks, 16);
  EXPECT_EQ(order.row_shift, 0);
  EXPECT_EQ(order.empty_tiles, 0);
  // Bottom-right with more keys than queries: rows before the sequence would see keys, so no tile is added.
  order = causal_order(1100, 3000, 128);
  EXPECT_EQ(order.m_blocks, 9);
  EXPECT_EQ(order.empty_tiles, 0);
  // ... but top-left they would not.
  order = causal_order(1100, 3000, 128, false);
  EXPECT_EQ(order.m_blocks, 10);
  EXPECT_EQ(order.empty_tiles, 1);
  // More queries than keys (bottom-right): the first rows see no key anyway.
  order = causal_order(1537, 1023, 128);
  EXPECT_EQ(order.m_blocks, 14);
  EXPECT_EQ(order.row_shift, 64 + 128);
  EXPECT_EQ(order.empty_tiles, 1);
  // Without a mask the tiles are not paired.
  order = plan_tile_order(problem(2048, 2048), 192, 64, 2, 132);
  EXPECT_FALSE(order.paired);
  EXPECT_EQ(order.m_blocks, 11);
  EXPECT_EQ(order.row_shift, 0);
  EXPECT_EQ(order.empty_tiles, 0);
  EXPECT_EQ(order.units, 11 * 8);
}

}  // namespace
