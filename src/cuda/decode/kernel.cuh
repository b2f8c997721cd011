// The decoding kernel of the KV-cache call (flash-decoding). A block owns kDecodeRows query rows of one KV
// head of one sequence (its query heads x query tokens, mask.cuh) and one split of the keys they see. Key
// tiles of warps x keys_per_warp keys (tiles.hpp) stream through `stages` cp.async buffers; warp w computes
// the scores of its own keys of each tile against all rows, keeps its own online-softmax state and P V sum,
// and the warps' states merge through shared memory at the end. So every K/V byte is read once per block
// whatever the number of rows, and the mma work per byte stays small: the loop is bound by memory.
#pragma once

#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>

#include "cuda/decode/cache.cuh"
#include "cuda/decode/epilogue.cuh"
#include "cuda/decode/mask.cuh"
#include "cuda/decode/params.hpp"
#include "cuda/decode/softmax.cuh"
#include "cuda/device/ptx.cuh"
#include "cuda/device/smem.cuh"
#include "cuda/device/warp_gemm.cuh"
#include "cuda/tiles.hpp"

namespace flashattn::cuda {
namespace device {

template <class T, int kHeadDim>
struct DecodeConfig {
  static constexpr DecodeTile kTile = decode_tile(kHeadDim);
  static constexpr int kThreads = kTile.threads();
  static constexpr int kKeysPerWarp = kTile.keys_per_warp;
  static constexpr int kTileKeys = kTile.tile_keys();
  using QLayout = SmemLayout<kDecodeRows, kHeadDim>;
  using KVLayout = SmemLayout<kTileKeys, kHeadDim>;
  static constexpr int kStageElements = 2 * KVLayout::kElements;  // one K and one V tile
  static constexpr int kSmemBytes = static_cast<int>(sizeof(T)) * (QLayout::kElements + kTile.stages * kStageElements);
  // The warps' final states (fp32 row maxima, sums, outputs) reuse the key buffers.
  static constexpr int kMergeBytes = static_cast<int>(sizeof(float)) * kTile.warps * kDecodeRows * (kHeadDim + 2);
  static_assert(kMergeBytes <= static_cast<int>(sizeof(T)) * kTile.stages * kStageElements, "merge must fit");
};

// q rows into shared memory, rotated when asked: scalar reads, once per block.
template <class T, int kHeadDim, class Config>
__device__ __forceinline__ void load_queries(T* q_smem, const detail::KVCacheProblem& p, const CacheSequence& s,
                                             const DecodeRows& rows, int row0, int kv_head) {
  const bool per_row_position = p.rotary_per_row();
  for (int index = threadIdx.x; index < kDecodeRows * kHeadDim; index += Config::kThreads) {
    const int r = index / kHeadDim;
    const int c = index % kHeadDim;
    float value = 0.0f;
    const int row = row0 + r;
    if (row < rows.count && c < p.head_dim) {
      const int token = rows.token(row);
      const T* q = static_cast<const T*>(p.q.data) + s.batch * p.q.batch_stride + token * p.q.token_stride +
                   rows.head(kv_head, row) * p.q.head_stride;
      // Clamped: a query position past the tables (a broken precondition, kvcache.hpp) must not read past them.
      const int position = min(s.cached + (per_row_position ? token : 0), static_cast<int>(p.rotary.seqlen_ro) - 1);
      value = rotated_channel<T>(p.rotary, position, c, [&](int channel) { return static_cast<float>(q[channel]); });
    }
    q_smem[Config::QLayout::offset(r, c)] = T(value);
  }
}

// The copies of a key tile: eight threads per key row, each thread kRowsPerThread rows of every tile.
template <int kHeadDim, class Config>
struct KeyTileCopy {
  static constexpr int kThreadsPerRow = kSwizzleChunks;
  static constexpr int kRowsPerPass = Config::kThreads / kThreadsPerRow;
  static constexpr int kRowsPerThread = Config::kTileKeys / kRowsPerPass;
  static constexpr int kChunksPerThread = kHeadDim / kChunkElements / kThreadsPerRow;

  // The cache slots (rows or pages, cache.cuh) of this thread's rows of tile `tile`; -1 past the split.
  struct Slots {
    int slot[kRowsPerThread];
  };

  static __device__ __forceinline__ int row(int pass) { return threadIdx.x / kThreadsPerRow + pass * kRowsPerPass; }

  static __device__ __forceinline__ Slots slots(const detail::KVCacheProblem& p, const CacheSequence& s,
                                                const SplitRange& split, int tile) {
    Slots result;
#pragma unroll
    for (int pass = 0; pass < kRowsPerThread; ++pass) {
      const int key = split.begin + tile * Config::kTileKeys + row(pass);
      result.slot[pass] = key < split.end ? s.slot_of(p.cache, s.leftpad + key) : -1;
    }
    return result;
  }

  // Starts the copies of tile `tile` into one stage. Keys outside the split and channels past head_dim /
  // head_dim_v read as zeros.
  template <class T>
  static __device__ __forceinline__ void start(T* stage, const detail::KVCacheProblem& p, const CacheSequence& s,
                                               const SplitRange& split, int tile, int kv_head, const Slots& slots) {
    const T* k_cache = static_cast<const T*>(p.cache.k.data);
    const T* v_cache = static_cast<const T*>(p.cache.v.data);
    T* k_tile = stage;
    T* v_tile = stage + Config::KVLayout::kElements;
    const int chunk0 = threadIdx.x % kThreadsPerRow;
#pragma unroll
    for (int pass = 0; pass < kRowsPerThread; ++pass) {
      const int r = row(pass);
      const int key = split.begin + tile * Config::kTileKeys + r;
      const TokenOffsets at = s.offsets(p.cache, slots.slot[pass], s.leftpad + key, kv_head);
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

template <class T, int kHeadDim>
__global__ void __launch_bounds__(DecodeConfig<T, kHeadDim>::kThreads, decode_tile(kHeadDim).min_blocks_per_sm)
    decode_kernel(const __grid_constant__ DecodeParams params) {
  using Config = DecodeConfig<T, kHeadDim>;
  constexpr int kStages = Config::kTile.stages;
  constexpr int kWarps = Config::kTile.warps;
  const detail::KVCacheProblem& p = params.problem;
  extern __shared__ __align__(128) unsigned char smem_bytes[];
  T* q_smem = reinterpret_cast<T*>(smem_bytes);
  T* stages = q_smem + Config::QLayout::kElements;

  const int split_index = blockIdx.x % params.num_splits;
  const int row_tile = blockIdx.x / params.num_splits;
  const int kv_head = blockIdx.y;
  const int b = blockIdx.z;
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;

  const CacheSequence s = CacheSequence::of(p, b);
  const DecodeRows rows{static_cast<int>(p.group_size()), static_cast<int>(p.group_size() * p.seqlen_q)};
  const int row0 = row_tile * kDecodeRows;
  const DecodeMask mask = DecodeMask::of(p, s);
  const int last_row = min(rows.count, row0 + kDecodeRows) - 1;
  const SplitRange split =
      SplitRange::of(mask, rows.token(row0), rows.token(last_row), split_index, params.num_splits, Config::kTileKeys);
  const int tiles = split.tiles(Config::kTileKeys);

  using Copy = KeyTileCopy<kHeadDim, Config>;
  load_queries<T, kHeadDim, Config>(q_smem, p, s, rows, row0, kv_head);
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < tiles)
      Copy::start(stages + t * Config::kStageElements, p, s, split, t, kv_head, Copy::slots(p, s, split, t));
    cp_async_commit();
  }
  // Paged caches: the page lookups of the next tile to copy are in flight while a tile is computed, so the
  // copies never wait on the block table (they did, and paged runs lost up to 20 % to contiguous ones).
  typename Copy::Slots next_slots = Copy::slots(p, s, split, kStages - 1);

  // This lane's two rows of the warp's accumulators: lane / 4 and lane / 4 + 8.
  DecodeSoftmax softmax = DecodeSoftmax::of(p, mask, rows, row0, kv_head, split.end, lane);
  const RowMajorLanes<kHeadDim> row_major(lane);
  const ColMajorLanes<kHeadDim> col_major(lane);
  Accumulator<1, kHeadDim / 8> out;
  out.zero();
  for (int t = 0; t < tiles; ++t) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // tile t has landed for every thread, and the stage refilled below is free
    const int refill = t + kStages - 1;
    if (refill < tiles) {
      Copy::start(stages + (refill % kStages) * Config::kStageElements, p, s, split, refill, kv_head, next_slots);
      next_slots = Copy::slots(p, s, split, refill + 1);
    }
    cp_async_commit();

    const T* k_tile = stages + (t % kStages) * Config::kStageElements;
    const T* v_tile = k_tile + Config::KVLayout::kElements;
    Accumulator<1, Config::kKeysPerWarp / 8> scores;
    scores.zero();
    warp_gemm<T, kHeadDim, false, false>(scores, operand(q_smem, 0, row_major),
                                         operand(k_tile, warp * Config::kKeysPerWarp, col_major));
    const int key0 = split.begin + t * Config::kTileKeys + warp * Config::kKeysPerWarp;
    softmax.update(scores, out, key0, lane);
    warp_gemm_a_accumulator<T, true>(out, scores,
                                     operand(v_tile + warp * Config::kKeysPerWarp * kHeadDim, 0, row_major));
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with the key buffers: the merge reuses them

  float* row_max = reinterpret_cast<float*>(stages);
  float* row_sum = row_max + kWarps * kDecodeRows;
  float* partial = row_sum + kWarps * kDecodeRows;  // (warps, rows, kHeadDim)
  softmax.share(row_max + warp * kDecodeRows, row_sum + warp * kDecodeRows, lane);
#pragma unroll
  for (int nt = 0; nt < kHeadDim / 8; ++nt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = lane / 4 + 8 * half;
      const int c = 8 * nt + 2 * (lane % 4);
      *reinterpret_cast<float2*>(partial + (warp * kDecodeRows + r) * kHeadDim + c) =
          make_float2(out.c[0][nt][2 * half], out.c[0][nt][2 * half + 1]);
    }
  }
  __syncthreads();
  merge_warps_and_store<T, kHeadDim, kWarps, Config::kThreads>(params, s, rows, row0, kv_head, split_index, row_max,
                                                               row_sum, partial);
}

}  // namespace device

template <class T, int kHeadDim>
void launch_decode(const DecodeParams& params, cudaStream_t stream) {
  using Config = device::DecodeConfig<T, kHeadDim>;
  static const cudaError_t configured = cudaFuncSetAttribute(
      device::decode_kernel<T, kHeadDim>, cudaFuncAttributeMaxDynamicSharedMemorySize, Config::kSmemBytes);
  (void)configured;  // a failure here shows as the launch's error
  const dim3 grid(static_cast<unsigned>(params.row_tiles * params.num_splits),
                  static_cast<unsigned>(params.problem.heads_kv), static_cast<unsigned>(params.problem.batch));
  device::decode_kernel<T, kHeadDim><<<grid, Config::kThreads, Config::kSmemBytes, stream>>>(params);
}

}  // namespace flashattn::cuda
