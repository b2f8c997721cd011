// Shared-memory tiles of 16-bit elements and the copies in and out of them.
//
// A tile is kRows x kCols elements, row-major, stored in 16-byte chunks (8 elements). The chunk index is
// XOR-swizzled with the row inside each group of 8 chunks, so that the 8 row addresses of one ldmatrix
// (same logical chunk, 8 consecutive rows) and the 16-byte cp.async writes of a warp land in 8 different
// bank groups: no bank conflicts on either side.
#pragma once

#include <cstdint>

#include "cuda/device/ptx.cuh"

namespace flashattn::cuda::device {

inline constexpr int kChunkElements = 8;  // 16 bytes of 16-bit elements
inline constexpr int kSwizzleChunks = 8;  // chunks per swizzle group: 128 bytes, all 32 banks

template <int kRows, int kCols>
struct SmemLayout {
  static_assert(kCols % (kChunkElements * kSwizzleChunks) == 0, "tile width must be a multiple of 64 elements");
  static constexpr int kChunksPerRow = kCols / kChunkElements;
  static constexpr int kElements = kRows * kCols;

  // Element offset of (row, col); col % 8 is kept, the chunk is swizzled.
  static __device__ __forceinline__ int offset(int row, int col) {
    const int chunk = col / kChunkElements;
    const int swizzled = (chunk & ~(kSwizzleChunks - 1)) | ((chunk ^ row) & (kSwizzleChunks - 1));
    return row * kCols + swizzled * kChunkElements + col % kChunkElements;
  }
};

// A tile stored as kCols / 64 column blocks one after the other, each a SmemLayout<kRows, 64>: 128-byte rows
// with the chunks swizzled by the row, which is the layout a bulk tensor copy (TMA) writes with its 128-byte
// swizzle when a block starts 1024-byte aligned. The decoding kernel's K/V tiles use it on every path, so
// that its copies by threads (cp.async) and by the copy engine fill the same layout.
template <int kRows, int kCols>
struct BlockedLayout {
  static constexpr int kBlockCols = kChunkElements * kSwizzleChunks;
  static_assert(kCols % kBlockCols == 0, "tile width must be a multiple of 64 elements");
  static constexpr int kBlockElements = kRows * kBlockCols;
  static constexpr int kElements = kRows * kCols;

  static __device__ __forceinline__ int offset(int row, int col) {
    return (col / kBlockCols) * kBlockElements + SmemLayout<kRows, kBlockCols>::offset(row, col % kBlockCols);
  }
};

// A rows x cols window of a global tensor: row r starts at base + r * row_stride. Rows at or past
// `valid_rows` and columns at or past `valid_cols` (a multiple of 8) read as zeros.
template <class T>
struct GlobalTile {
  const T* base = nullptr;
  std::int64_t row_stride = 0;
  int valid_rows = 0;
  int valid_cols = 0;
};

// Starts the asynchronous copy of a whole tile by all kThreads threads of the block (commit separately).
// Eight threads share a row: thread c copies chunks c, c + 8, ... of rows first_row, first_row +
// kRowsPerPass, ... Rows kRowsPerPass apart (a multiple of 8) share their swizzle and chunk c + 8 j lies 64 j
// elements after chunk c on both sides.
//   64 columns (one chunk per thread and row): one pointer walks down the rows. Per-row addresses computed
//     up front were hoisted out of the kernels' key loops and held in registers (spills).
//   Wider: each row's address is computed before its copies and the row's other chunks are immediate
//     offsets from it. The walking pointer made each cp.async wait until the previous one had read the
//     register (ncu, forward d = 128, seqlen 2k: 1.9 % of the stall samples, FA2's copies 0.2 %); this
//     form gave the forward +2.6 % / +1.8 % at d = 128, seqlen 2k / 4k, non-causal (H100). At 64 columns
//     it cost the forward about 1 %, so those keep the walk.
template <int kThreads, int kRows, int kCols, class T>
__device__ __forceinline__ void copy_tile_async(T* smem, const GlobalTile<T>& src, int thread) {
  using Layout = SmemLayout<kRows, kCols>;
  constexpr int kThreadsPerRow = kSwizzleChunks;
  constexpr int kChunksPerThread = Layout::kChunksPerRow / kThreadsPerRow;
  constexpr int kRowsPerPass = kThreads / kThreadsPerRow;
  constexpr int kPasses = kRows / kRowsPerPass;
  static_assert(kThreads % kThreadsPerRow == 0 && kRowsPerPass % kSwizzleChunks == 0, "passes must keep the swizzle");
  static_assert(kRows % kRowsPerPass == 0, "the tile must split evenly over the threads");
  const int first_row = thread / kThreadsPerRow;
  const int col = (thread % kThreadsPerRow) * kChunkElements;
  const std::int64_t pass_stride = kRowsPerPass * src.row_stride;
  // An invalid chunk reads nothing (src-size 0), so its pointer needs no clamping: the select cost two
  // instructions per row in the backward's step loop (SASS, d = 128).
  if constexpr (kChunksPerThread == 1) {
    const bool col_valid = col < src.valid_cols;
    const T* from = src.base + first_row * src.row_stride + col;
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int row = first_row + pass * kRowsPerPass;
      cp_async_16(smem_address(smem + Layout::offset(row, col)), from, col_valid && row < src.valid_rows);
      from += pass_stride;
    }
  } else {
    const std::uint32_t smem_first = smem_address(smem + Layout::offset(first_row, col));
    const T* rows[kPasses];
    rows[0] = src.base + first_row * src.row_stride + col;
#pragma unroll
    for (int pass = 1; pass < kPasses; ++pass) rows[pass] = rows[pass - 1] + pass_stride;
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const bool row_valid = first_row + pass * kRowsPerPass < src.valid_rows;
#pragma unroll
      for (int j = 0; j < kChunksPerThread; ++j) {
        const int offset = j * kThreadsPerRow * kChunkElements;
        cp_async_16(smem_first + 2 * (pass * kRowsPerPass * kCols + offset), rows[pass] + offset,
                    row_valid && col + offset < src.valid_cols);
      }
    }
  }
}

// A rows x cols window of a global tensor to write; rows at or past valid_rows and columns at or past
// valid_cols are skipped.
template <class T>
struct GlobalOutTile {
  T* base = nullptr;
  std::int64_t row_stride = 0;
  int valid_rows = 0;
  int valid_cols = 0;
};

// Writes a whole tile from shared memory to global memory in 16-byte pieces (after a barrier).
template <int kThreads, int kRows, int kCols, class T>
__device__ __forceinline__ void store_tile(const T* smem, const GlobalOutTile<T>& dst, int thread) {
  using Layout = SmemLayout<kRows, kCols>;
  constexpr int kChunks = kRows * Layout::kChunksPerRow;
#pragma unroll
  for (int i = 0; i < kChunks / kThreads; ++i) {
    const int chunk = thread + i * kThreads;
    const int row = chunk / Layout::kChunksPerRow;
    const int col = (chunk % Layout::kChunksPerRow) * kChunkElements;
    if (row < dst.valid_rows && col < dst.valid_cols) {
      *reinterpret_cast<uint4*>(dst.base + row * dst.row_stride + col) =
          *reinterpret_cast<const uint4*>(smem + Layout::offset(row, col));
    }
  }
}

// The stores of a warp's m16n8 accumulator pairs into a tile: the thread's pairs lie in rows row0 + lane / 4 + 8 i
// and columns 8 t + 2 (lane % 4) + {0, 1}. Those rows share one swizzle, so every pair's address is the thread's
// first one with the chunk bits XORed by t % 8, plus an immediate: one address register where the per-pair
// offset() took four instructions a store (SASS, forward d = 128). The tile must start 128-byte aligned.
template <int kRows, int kCols>
struct PairStores {
  std::uint32_t first;  // shared-memory byte address of the pair in row row0 + lane / 4, column 2 (lane % 4)

  __device__ __forceinline__ PairStores(const void* tile, int row0, int lane) {
    const int row = row0 + lane / 4;
    first = smem_address(tile) + 2 * (row * kCols + (row % kSwizzleChunks) * kChunkElements + 2 * (lane % 4));
  }
  // The pair in row row0 + lane / 4 + 8 * row8, column 8 * col_tile + 2 * (lane % 4).
  __device__ __forceinline__ void store(int row8, int col_tile, std::uint32_t pair) const {
    constexpr int kChunkBytes = 2 * kChunkElements;
    const std::uint32_t swizzled = first ^ ((col_tile % kSwizzleChunks) * kChunkBytes);
    st_shared_32(swizzled + 2 * 8 * row8 * kCols + (col_tile / kSwizzleChunks) * kSwizzleChunks * kChunkBytes, pair);
  }
};

}  // namespace flashattn::cuda::device
