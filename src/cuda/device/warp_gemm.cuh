// Warp-level matrix products on the tensor cores with both operands in shared memory.
//
// Each warp computes a (16 * kMTiles) x (8 * kNTiles) block of C += A * B over a contraction of length
// kDepth. Operands are read with ldmatrix from swizzled tiles (smem.cuh) in either orientation:
//   A:  stored [m][k] (kTransposeA = false)   or stored [k][m] (true)
//   B:  stored [n][k] (kTransposeB = false)   or stored [k][n] (true)
// Accumulator element (mt, nt, i) sits at row 16 * mt + lane / 4 + 8 * (i / 2), col 8 * nt + 2 * (lane % 4) +
// i % 2 of the warp's block (the PTX m16n8 C fragment).
#pragma once

#include <cstdint>

#include "cuda/device/ptx.cuh"
#include "cuda/device/smem.cuh"

namespace flashattn::cuda::device {

// Which lane of an ldmatrix.x4 addresses which row of the 16 x 16 block it loads, and which 8-column half.
//   kRowHalfFromBit3: row = lane % 8 + 8 * bit 3 of lane, column half = bit 4  (A stored [m][k], B stored [k][n])
//   kRowHalfFromBit4: row = lane % 8 + 8 * bit 4 of lane, column half = bit 3  (A stored [k][m], B stored [n][k])
enum class LanePattern { kRowHalfFromBit3, kRowHalfFromBit4 };

// The lane-dependent part of every ldmatrix address into a tile kCols wide, computed once per kernel.
// Because blocks start at rows that are multiples of 8, a row's swizzle depends only on lane % 8, and a
// block's address is base + (row0 * kCols + 64 * (col / 64)) * 2 + bytes[(col / 16) % 4]: with col known
// at compile time that is one register plus an immediate. Computing the swizzle per load instead cost
// the backward a register per hoisted address (spills) or several integer instructions per ldmatrix.
// `col_shift` (a multiple of 16, may be run-time) moves every column by the same amount.
template <int kCols, LanePattern kPattern_>
struct LaneTable {
  static constexpr LanePattern kPattern = kPattern_;
  std::uint32_t bytes[4];

  __device__ __forceinline__ explicit LaneTable(int lane, int col_shift = 0) {
    const bool bit3_rows = kPattern == LanePattern::kRowHalfFromBit3;
    const int row = lane % 8 + 8 * (bit3_rows ? (lane >> 3) & 1 : lane >> 4);
    const int col_half = bit3_rows ? lane >> 4 : (lane >> 3) & 1;
    const int swizzle = (lane ^ col_half) & (kSwizzleChunks - 1);
#pragma unroll
    for (int v = 0; v < 4; ++v) {
      const int pair = col_shift / 16 + v;  // 16-column pair index of the block's first column
      const int chunk = (2 * (pair % 4)) ^ swizzle;
      bytes[v] = static_cast<std::uint32_t>(2 * (row * kCols + 64 * (pair / 4) + kChunkElements * chunk));
    }
  }

  // Shared-memory address of this lane's row for the 16 x 16 block at (row0, col): row0 a multiple of 16,
  // col a multiple of 16 (relative to col_shift).
  __device__ __forceinline__ std::uint32_t address(std::uint32_t base, int row0, int col) const {
    return base + static_cast<std::uint32_t>(2 * (row0 * kCols + 64 * (col / 64))) + bytes[(col / 16) % 4];
  }
};

template <int kCols>
using RowMajorLanes = LaneTable<kCols, LanePattern::kRowHalfFromBit3>;  // A as stored [m][k]; B as [k][n]
template <int kCols>
using ColMajorLanes = LaneTable<kCols, LanePattern::kRowHalfFromBit4>;  // A as stored [k][m]; B as [n][k]

// The lane table of a BlockedLayout<kRows, ...> tile (smem.cuh): LaneTable's within one 64-column block, plus
// the block's offset, an immediate when col is known at compile time.
template <int kRows, LanePattern kPattern_>
struct BlockedLaneTable {
  static constexpr LanePattern kPattern = kPattern_;
  static constexpr int kBlockCols = 64;
  LaneTable<kBlockCols, kPattern_> block;

  __device__ __forceinline__ explicit BlockedLaneTable(int lane) : block(lane) {}
  __device__ __forceinline__ std::uint32_t address(std::uint32_t base, int row0, int col) const {
    const auto block_bytes = static_cast<std::uint32_t>(2 * (col / kBlockCols) * kRows * kBlockCols);
    return block.address(base + block_bytes, row0, col % kBlockCols);
  }
};

template <int kMTiles, int kNTiles>
struct Accumulator {
  float c[kMTiles][kNTiles][4];

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) c[mt][nt][i] = 0.0f;
  }
};

// Loads the A fragment of rows row0 + 16 * mt (A stored [m][k]) or of A columns 16 * mt (A stored [k][m],
// the warp's first column folded into the lane table), depth k0.
template <bool kTransposed, class Lanes>
__device__ __forceinline__ void load_a(std::uint32_t (&a)[4], std::uint32_t base, int row0, const Lanes& lanes, int mt,
                                       int k0) {
  if constexpr (kTransposed) {
    static_assert(Lanes::kPattern == LanePattern::kRowHalfFromBit4, "A stored [k][m] takes ColMajorLanes");
    ldmatrix_x4_trans(a, lanes.address(base, k0, 16 * mt));
  } else {
    static_assert(Lanes::kPattern == LanePattern::kRowHalfFromBit3, "A stored [m][k] takes RowMajorLanes");
    ldmatrix_x4(a, lanes.address(base, row0 + 16 * mt, k0));
  }
}
// Loads the B fragments of n8 tiles nt, nt + 1 (nt even), depth k0: B stored [n][k] (rows row0 + 8 * nt)
// or [k][n] (columns col0 + 8 * nt, the warp's first column folded into the lane table).
template <bool kTransposed, class Lanes>
__device__ __forceinline__ void load_b_pair(std::uint32_t (&b)[4], std::uint32_t base, int row0, int col0,
                                            const Lanes& lanes, int nt, int k0) {
  if constexpr (kTransposed) {
    static_assert(Lanes::kPattern == LanePattern::kRowHalfFromBit3, "B stored [k][n] takes RowMajorLanes");
    ldmatrix_x4_trans(b, lanes.address(base, k0, col0 + 8 * nt));
  } else {
    static_assert(Lanes::kPattern == LanePattern::kRowHalfFromBit4, "B stored [n][k] takes ColMajorLanes");
    ldmatrix_x4(b, lanes.address(base, row0 + 8 * nt, k0));
  }
}

// A tile operand in shared memory: the tile's address, the warp's first row (for operands stored with
// the warp's dimension along the rows), the lane table, and for B stored [k][n] a column offset on top of
// the lane table's (a multiple of 16, known at compile time where the caller's loop is unrolled).
template <class Lanes>
struct SmemOperand {
  std::uint32_t base;
  int row0;
  const Lanes& lanes;
  int col0;
};
template <class Lanes, class T>
__device__ __forceinline__ SmemOperand<Lanes> operand(const T* tile, int row0, const Lanes& lanes, int col0 = 0) {
  return {smem_address(tile), row0, lanes, col0};
}

// The loop every product shares: acc += A * B over kSteps 16-deep steps, B from shared memory, the A
// fragments of a step from `a_step(step, a)`. The fragments of step + 1 are fetched before the products
// of step, so that ldmatrix latency overlaps the mma instead of stalling on it (ncu: short-scoreboard and
// fixed-latency waits were 4 of the backward's 7.7 cycles per issued instruction without this).
template <class T, int kSteps, bool kTransposeB, class BLanes, int kMTiles, int kNTiles, class AStep>
__device__ __forceinline__ void pipelined_products(Accumulator<kMTiles, kNTiles>& acc, const AStep& a_step,
                                                   const SmemOperand<BLanes>& b) {
  static_assert(kNTiles % 2 == 0, "B fragments come in pairs of n8 tiles");
  std::uint32_t a_frag[2][kMTiles][4];
  std::uint32_t b_frag[2][kNTiles / 2][4];
  auto fetch = [&](int step, int slot) {
    a_step(step, a_frag[slot]);
#pragma unroll
    for (int np = 0; np < kNTiles / 2; ++np) {
      load_b_pair<kTransposeB>(b_frag[slot][np], b.base, b.row0, b.col0, b.lanes, 2 * np, 16 * step);
    }
  };
  fetch(0, 0);
#pragma unroll
  for (int step = 0; step < kSteps; ++step) {
    if (step + 1 < kSteps) fetch(step + 1, (step + 1) % 2);
    const int slot = step % 2;
#pragma unroll
    for (int np = 0; np < kNTiles / 2; ++np) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        mma_16x8x16<T>(acc.c[mt][2 * np], a_frag[slot][mt], b_frag[slot][np][0], b_frag[slot][np][1]);
        mma_16x8x16<T>(acc.c[mt][2 * np + 1], a_frag[slot][mt], b_frag[slot][np][2], b_frag[slot][np][3]);
      }
    }
  }
}

// acc += A * B over a contraction of kDepth, both operands in shared memory.
template <class T, int kDepth, bool kTransposeA, bool kTransposeB, class ALanes, class BLanes, int kMTiles, int kNTiles>
__device__ __forceinline__ void warp_gemm(Accumulator<kMTiles, kNTiles>& acc, const SmemOperand<ALanes>& a,
                                          const SmemOperand<BLanes>& b) {
  auto a_step = [&](int step, std::uint32_t(&frag)[kMTiles][4]) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) load_a<kTransposeA>(frag[mt], a.base, a.row0, a.lanes, mt, 16 * step);
  };
  pipelined_products<T, kDepth / 16, kTransposeB>(acc, a_step, b);
}

// The same with A already in registers: a[mt][k0 / 16] holds the A fragment of rows 16 * mt, depth k0.
template <class T, int kDepth, bool kTransposeB, class BLanes, int kMTiles, int kNTiles>
__device__ __forceinline__ void warp_gemm_a_registers(Accumulator<kMTiles, kNTiles>& acc,
                                                      const std::uint32_t (&a)[kMTiles][kDepth / 16][4],
                                                      const SmemOperand<BLanes>& b) {
  auto a_step = [&](int step, std::uint32_t(&frag)[kMTiles][4]) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int i = 0; i < 4; ++i) frag[mt][i] = a[mt][step][i];
  };
  pipelined_products<T, kDepth / 16, kTransposeB>(acc, a_step, b);
}

// The accumulator of a 16 x 16 block (n8 tiles nt, nt + 1 of m-tile mt) packed as an A fragment: how P
// (the softmax's output) feeds the next product without leaving registers.
template <class T, int kMTiles, int kNTiles>
__device__ __forceinline__ void accumulator_as_a(std::uint32_t (&a)[4], const Accumulator<kMTiles, kNTiles>& acc,
                                                 int mt, int nt) {
  a[0] = pack_pair<T>(acc.c[mt][nt][0], acc.c[mt][nt][1]);
  a[1] = pack_pair<T>(acc.c[mt][nt][2], acc.c[mt][nt][3]);
  a[2] = pack_pair<T>(acc.c[mt][nt + 1][0], acc.c[mt][nt + 1][1]);
  a[3] = pack_pair<T>(acc.c[mt][nt + 1][2], acc.c[mt][nt + 1][3]);
}

// acc += P * B where P is another warp block's accumulator (16 * kMTiles x 8 * kPTiles), converted to the
// input dtype 16 columns at a time, as it is consumed.
template <class T, bool kTransposeB, class BLanes, int kMTiles, int kNTiles, int kPTiles>
__device__ __forceinline__ void warp_gemm_a_accumulator(Accumulator<kMTiles, kNTiles>& acc,
                                                        const Accumulator<kMTiles, kPTiles>& p,
                                                        const SmemOperand<BLanes>& b) {
  auto a_step = [&](int step, std::uint32_t(&frag)[kMTiles][4]) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) accumulator_as_a<T>(frag[mt], p, mt, 2 * step);
  };
  pipelined_products<T, kPTiles / 2, kTransposeB>(acc, a_step, b);
}

}  // namespace flashattn::cuda::device
