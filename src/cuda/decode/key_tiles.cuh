// The decoding kernel's key tiles, copied from the cache into a stage of shared memory (a K and a V tile in
// BlockedLayout, smem.cuh) in one of two ways:
//   ThreadKeyTiles: every thread issues cp.async copies of 16 bytes, completing on cp.async groups;
//   CopyEngineKeyTiles (Hopper): one thread per box issues bulk tensor copies (TMA) of whole boxes of rows,
//     completing on one mbarrier per stage. A paged cache then needs tiles that start on page boundaries.
// Either way the page lookups of the next tile are loaded one tile ahead of its copies.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "cuda/decode/cache.cuh"
#include "cuda/decode/mask.cuh"
#include "cuda/decode/params.hpp"
#include "cuda/device/ptx.cuh"
#include "cuda/device/smem.cuh"
#include "cuda/hopper/barrier.cuh"
#include "cuda/hopper/tma.cuh"
#include "kvcache_problem.hpp"

namespace flashattn::cuda::device {

// Copies by the threads (cp.async, every GPU since Ampere): eight threads per key row, each thread
// kRowsPerThread rows of every tile.
template <int kHeadDim, class Config>
struct ThreadKeyTiles {
  static constexpr int kThreadsPerRow = kSwizzleChunks;
  static constexpr int kRowsPerPass = Config::kThreads / kThreadsPerRow;
  static constexpr int kRowsPerThread = Config::kTileKeys / kRowsPerPass;
  static constexpr int kChunksPerThread = kHeadDim / kChunkElements / kThreadsPerRow;

  // The cache slots (rows or pages, cache.cuh) of this thread's rows of the tile of keys key0 ...; -1 from
  // key_end on.
  struct Slots {
    int slot[kRowsPerThread];
  };

  static __device__ __forceinline__ int row(int pass) { return threadIdx.x / kThreadsPerRow + pass * kRowsPerPass; }

  static __device__ __forceinline__ Slots slots(const detail::KVCacheProblem& p, const CacheSequence& s, int key0,
                                                int key_end) {
    Slots result;
#pragma unroll
    for (int pass = 0; pass < kRowsPerThread; ++pass) {
      const int key = key0 + row(pass);
      result.slot[pass] = key < key_end ? s.slot_of(p.cache, s.leftpad + key) : -1;
    }
    return result;
  }

  // Starts the copies of the tile of keys key0 ... into one stage. Keys at or past key_end and channels past
  // head_dim / head_dim_v read as zeros.
  template <class T>
  static __device__ __forceinline__ void start(T* stage, const detail::KVCacheProblem& p, const CacheSequence& s,
                                               int key0, int key_end, int kv_head, const Slots& slots) {
    const T* k_cache = static_cast<const T*>(p.cache.k.data);
    const T* v_cache = static_cast<const T*>(p.cache.v.data);
    T* k_tile = stage;
    T* v_tile = stage + Config::KVLayout::kElements;
    const int chunk0 = threadIdx.x % kThreadsPerRow;
#pragma unroll
    for (int pass = 0; pass < kRowsPerThread; ++pass) {
      const int r = row(pass);
      const TokenOffsets at =
          s.offsets(p.cache, key0 + r < key_end ? slots.slot[pass] : -1, s.leftpad + key0 + r, kv_head);
#pragma unroll
      for (int i = 0; i < kChunksPerThread; ++i) {
        const int col = (chunk0 + i * kThreadsPerRow) * kChunkElements;
        const int offset = Config::KVLayout::offset(r, col);
        const bool k_valid = at.valid && col < p.head_dim;
        const bool v_valid = at.valid && col < p.head_dim_v;
        cp_async_16(smem_address(k_tile + offset), k_cache + (k_valid ? at.k + col : 0), k_valid);
        cp_async_16(smem_address(v_tile + offset), v_cache + (v_valid ? at.v + col : 0), v_valid);
      }
    }
  }
};

// Copies by the copy engine (Hopper). A box is tma_box_rows key rows x 64 channels of one KV head, which TMA
// writes with its 128-byte swizzle: exactly one column block of BlockedLayout. One thread copies box i of every
// column block of K and V: lane i of warp 0 for a block's first tiles, lane 0 of warp i in the key loop
// (kernel.cuh), so the boxes' page lookups run side by side. A warp issues its lanes' copies one after another:
// a paged tile's 32 boxes (pages of 16, d = 128) from warp 0's lanes cost about 1 us per tile more than a
// contiguous tile's 4, and from eight warps half that (H100, 2026-11-27: batch 1 x 2k keys unsplit, 16 tiles,
// 41.4 -> 34.0 us against 26.0 contiguous; docs/PERFORMANCE.md).
template <class T, int kHeadDim, class Config>
struct CopyEngineKeyTiles {
  static constexpr int kColumnBlocks = kHeadDim / Config::KVLayout::kBlockCols;
  static constexpr std::uint32_t kStageBytes = sizeof(T) * Config::kStageElements;

  // Box `box`'s coordinate along the cache rows or pages for the tile of keys key0 ...: the cache row
  // (contiguous) or the block table's entry (paged; -1 past the capacity, which TMA reads as zeros).
  static __device__ __forceinline__ int slot(const DecodeParams& params, const CacheSequence& s, int key0, int box) {
    const detail::KVCacheProblem& p = params.problem;
    const int position = s.leftpad + key0 + box * params.tma_box_rows;
    if (p.cache.page_size == 0) return static_cast<int>(s.row);
    return box * params.tma_box_rows < Config::kTileKeys && position < p.cache.capacity ? s.slot_of(p.cache, position)
                                                                                        : -1;
  }

  // Box `box`'s copies; box 0's thread also tells the stage's mbarrier to expect all the stage's bytes (boxes past
  // the tensor's ends are zero-filled and counted too). Another box's copies may land first: the phase cannot
  // complete before that arrival, and its transaction count may go below zero until then (PTX ISA, mbarrier).
  static __device__ __forceinline__ void start(T* stage, std::uint64_t* full, const DecodeParams& params,
                                               const CacheSequence& s, int key0, int kv_head, int box_slot, int box) {
    const detail::KVCacheProblem& p = params.problem;
    if (box == 0) hopper::mbarrier_arrive_expect_tx(full, kStageBytes);
    const int box_rows = params.tma_box_rows;
    if (box * box_rows >= Config::kTileKeys) return;
    const int position = s.leftpad + key0 + box * box_rows;
    const int row = p.cache.page_size == 0 ? position : s.pages.row_in_page(position);
#pragma unroll
    for (int block = 0; block < kColumnBlocks; ++block) {
      const int offset = block * Config::KVLayout::kBlockElements + box * box_rows * Config::KVLayout::kBlockCols;
      const int channel = block * Config::KVLayout::kBlockCols;
      hopper::tma_load_4d(stage + offset, &params.k_map, full, channel, kv_head, row, box_slot);
      hopper::tma_load_4d(stage + Config::KVLayout::kElements + offset, &params.v_map, full, channel, kv_head, row,
                          box_slot);
    }
  }

  // The rows of the split's last tile past its end hold whatever the cache holds there (NaN, say), which
  // P V would multiply by zero probabilities: each warp zeroes its own rows of K and V there.
  static __device__ __forceinline__ void clear_rows_past(T* stage, int valid_rows, int warp, int lane) {
    constexpr int kChunksPerRow = kHeadDim / kChunkElements;
    for (int index = lane; index < Config::kKeysPerWarp * kChunksPerRow; index += kWarpSize) {
      const int r = warp * Config::kKeysPerWarp + index / kChunksPerRow;
      const int col = (index % kChunksPerRow) * kChunkElements;
      if (r < valid_rows) continue;
      const int offset = Config::KVLayout::offset(r, col);
      *reinterpret_cast<uint4*>(stage + offset) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(stage + Config::KVLayout::kElements + offset) = make_uint4(0, 0, 0, 0);
    }
    __syncwarp();
  }
};

}  // namespace flashattn::cuda::device
