// The decoding kernel of the KV-cache call (flash-decoding). A block owns kDecodeRows query rows of one KV
// head of one sequence (its query heads x query tokens, mask.cuh) and one split of the keys they see. Key
// tiles of warps x keys_per_warp keys (tiles.hpp) stream through `stages` cp.async buffers; warp w computes
// the scores of its own keys of each tile against all rows, keeps its own online-softmax state and P V sum,
// and the warps' states merge through shared memory at the end. So every K/V byte is read once per block
// whatever the number of rows, and the mma work per byte stays small: the loop is bound by memory. The splits of
// a row tile merge in the combine (merge.cuh) or, on Hopper, as one cluster through its shared memory.
#pragma once

#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>

#include "cuda/decode/cache.cuh"
#include "cuda/decode/epilogue.cuh"
#include "cuda/decode/key_tiles.cuh"
#include "cuda/decode/launch.hpp"
#include "cuda/decode/mask.cuh"
#include "cuda/decode/params.hpp"
#include "cuda/decode/softmax.cuh"
#include "cuda/device/ptx.cuh"
#include "cuda/device/smem.cuh"
#include "cuda/device/warp_gemm.cuh"
#include "cuda/host.hpp"
#include "cuda/tiles.hpp"

namespace flashattn::cuda {
namespace device {

template <class T, int kHeadDim, DecodeWidth kWidth>
struct DecodeConfig {
  static constexpr DecodeTile kTile = decode_tile(kHeadDim, kWidth);
  static constexpr int kThreads = kTile.threads();
  static constexpr int kKeysPerWarp = kTile.keys_per_warp;
  static constexpr int kTileKeys = kTile.tile_keys();
  using QLayout = SmemLayout<kDecodeRows, kHeadDim>;
  using KVLayout = BlockedLayout<kTileKeys, kHeadDim>;
  static constexpr int kStageElements = 2 * KVLayout::kElements;  // one K and one V tile
  static constexpr int kTileBytes = static_cast<int>(sizeof(T)) * (QLayout::kElements + kTile.stages * kStageElements);
  // The stages' mbarriers (copy-engine path) follow the tiles.
  static constexpr int kSmemBytes = kTileBytes + kTile.stages * static_cast<int>(sizeof(std::uint64_t));
  // The warps' final states (fp32 row maxima, sums, outputs) and the block's reuse the key buffers.
  static constexpr int kMergeBytes =
      static_cast<int>(sizeof(float)) *
      (kTile.warps * kDecodeRows * (kPartialRowStride<kHeadDim> + 2) + BlockState<kHeadDim>::kFloats);
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

template <class T, int kHeadDim, DecodeWidth kWidth>
__global__ void __launch_bounds__(DecodeConfig<T, kHeadDim, kWidth>::kThreads,
                                  decode_tile(kHeadDim, kWidth).min_blocks_per_sm)
    decode_kernel(const __grid_constant__ DecodeParams params) {
  using Config = DecodeConfig<T, kHeadDim, kWidth>;
  using Threads = ThreadKeyTiles<kHeadDim, Config>;
  using Engine = CopyEngineKeyTiles<T, kHeadDim, Config>;
  constexpr int kStages = Config::kTile.stages;
  constexpr int kWarps = Config::kTile.warps;
  constexpr int kTileKeys = Config::kTileKeys;
  const detail::KVCacheProblem& p = params.problem;
  extern __shared__ __align__(1024) unsigned char smem_bytes[];  // TMA's 128-byte swizzle: 1024-aligned boxes
  T* q_smem = reinterpret_cast<T*>(smem_bytes);
  T* stages = q_smem + Config::QLayout::kElements;
  auto* full = reinterpret_cast<std::uint64_t*>(smem_bytes + Config::kTileBytes);

  const int split_index = blockIdx.x % params.num_splits;
  const int row_tile = blockIdx.x / params.num_splits;
  const int kv_head = blockIdx.y;
  const int b = blockIdx.z;
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const bool engine = params.tma_box_rows > 0;
#else
  constexpr bool engine = false;  // no copy engine before Hopper: the host's maps go unused
#endif
  // With the copy engine, the first split's first tile starts at key 0 whatever the sequence's length when the
  // host says so (DecodeParams::first_tile_at_key0): its copies start before the length is read, which a
  // block's start otherwise waits for.
  const bool early = engine && params.first_tile_at_key0 && split_index == 0;
  if (engine && warp == 0) {
    if (lane == 0) {
      for (int stage = 0; stage < kStages; ++stage) hopper::mbarrier_init(full + stage, 1);
      hopper::fence_mbarrier_init();
    }
    __syncwarp();
    if (early) {
      const CacheSequence unread = CacheSequence::unread(p, b);
      Engine::start(stages, full, params, unread, 0, kv_head, Engine::slot(params, unread, 0, lane), lane);
    }
  }

  const CacheSequence s = CacheSequence::of(p, b);
  const DecodeRows rows{static_cast<int>(p.group_size()), static_cast<int>(p.group_size() * p.seqlen_q)};
  const int row0 = row_tile * kDecodeRows;
  const MaskPolicy mask = decode_mask(p, s);
  const int last_row = min(rows.count, row0 + kDecodeRows) - 1;
  const SplitRange split =
      SplitRange::of(mask, rows.token(row0), rows.token(last_row), split_index, params.num_splits, kTileKeys);
  const int tiles = split.tiles(kTileKeys);
  const auto key_of = [&](int tile) { return split.begin + tile * kTileKeys; };

  // The first stages start before the queries load (they do not depend on them), then the page lookups of
  // the next tile to copy: in flight while a tile is computed, so that its copies never wait on the table.
  // With the copy engine, warp 0's lanes start the first stages (lane i box i), and every warp its boxes of
  // the later ones: box warp + warps x lane, in lane 0 alone unless the tile has more boxes than warps.
  typename Threads::Slots next_slots{};
  int next_slot = 0;
  const int loop_box = warp + kWarps * lane;
  if (engine) {
    if (warp == 0) {
      for (int t = early ? 1 : 0; t < kStages - 1 && t < tiles; ++t) {
        Engine::start(stages + t * Config::kStageElements, full + t, params, s, key_of(t), kv_head,
                      Engine::slot(params, s, key_of(t), lane), lane);
      }
    }
    next_slot = Engine::slot(params, s, key_of(kStages - 1), loop_box);
  } else {
#pragma unroll
    for (int t = 0; t < kStages - 1; ++t) {
      if (t < tiles) {
        Threads::start(stages + t * Config::kStageElements, p, s, key_of(t), split.end, kv_head,
                       Threads::slots(p, s, key_of(t), split.end));
      }
      cp_async_commit();
    }
    next_slots = Threads::slots(p, s, key_of(kStages - 1), split.end);
  }
  load_queries<T, kHeadDim, Config>(q_smem, p, s, rows, row0, kv_head);
  if (engine) __syncthreads();  // the mbarriers are initialised before any warp waits on them

  // This lane's two rows of the warp's accumulators: lane / 4 and lane / 4 + 8.
  DecodeSoftmax softmax = DecodeSoftmax::of(p, mask, rows, row0, kv_head, split.end, lane);
  const RowMajorLanes<kHeadDim> q_lanes(lane);
  const BlockedLaneTable<kTileKeys, LanePattern::kRowHalfFromBit4> k_lanes(lane);
  const BlockedLaneTable<kTileKeys, LanePattern::kRowHalfFromBit3> v_lanes(lane);
  Accumulator<1, kHeadDim / 8> out;
  out.zero();
  for (int t = 0; t < tiles; ++t) {
    T* stage = stages + (t % kStages) * Config::kStageElements;
    if (engine) {
      hopper::mbarrier_wait(full + t % kStages, (t / kStages) % 2);
    } else {
      cp_async_wait<kStages - 2>();
    }
    __syncthreads();  // tile t has landed for every thread, and the stage refilled below is free
    const int refill = t + kStages - 1;
    T* refill_stage = stages + (refill % kStages) * Config::kStageElements;
    if (engine) {
      if (refill < tiles) {
        Engine::start(refill_stage, full + refill % kStages, params, s, key_of(refill), kv_head, next_slot, loop_box);
        next_slot = Engine::slot(params, s, key_of(refill + 1), loop_box);
      }
      const int valid_rows = split.end - key_of(t);
      if (valid_rows < kTileKeys) Engine::clear_rows_past(stage, valid_rows, warp, lane);
    } else {
      if (refill < tiles) {
        Threads::start(refill_stage, p, s, key_of(refill), split.end, kv_head, next_slots);
        next_slots = Threads::slots(p, s, key_of(refill + 1), split.end);
      }
      cp_async_commit();
    }

    const T* k_tile = stage;
    const T* v_tile = k_tile + Config::KVLayout::kElements;
    const int warp_keys = warp * Config::kKeysPerWarp;
    Accumulator<1, Config::kKeysPerWarp / 8> scores;
    scores.zero();
    warp_gemm<T, kHeadDim, false, false>(scores, operand(q_smem, 0, q_lanes), operand(k_tile, warp_keys, k_lanes));
    softmax.update(scores, out, key_of(t) + warp_keys, lane);
    // The warp's rows of V start at row warp_keys of each column block (a multiple of 8: same swizzle).
    warp_gemm_a_accumulator<T, true>(out, scores,
                                     operand(v_tile + warp_keys * Config::KVLayout::kBlockCols, 0, v_lanes));
  }
  if (!engine) cp_async_wait<0>();
  // An early first tile of a split without keys lands before the merge reuses its stage.
  if (early && tiles == 0 && warp == 0) hopper::mbarrier_wait(full, 0);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");  // the combine may start launching
#endif
  __syncthreads();  // every warp is done with the key buffers: the merge reuses them

  float* row_max = reinterpret_cast<float*>(stages);
  float* row_sum = row_max + kWarps * kDecodeRows;
  float* partial = row_sum + kWarps * kDecodeRows;  // (warps, rows, kPartialRowStride)
  const auto state = BlockState<kHeadDim>::at(partial + kWarps * kDecodeRows * kPartialRowStride<kHeadDim>);
  softmax.share(row_max + warp * kDecodeRows, row_sum + warp * kDecodeRows, lane);
#pragma unroll
  for (int nt = 0; nt < kHeadDim / 8; ++nt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = lane / 4 + 8 * half;
      const int c = 8 * nt + 2 * (lane % 4);
      *reinterpret_cast<float2*>(partial + partial_offset<kHeadDim>(warp, r, c)) =
          make_float2(out.c[0][nt][2 * half], out.c[0][nt][2 * half + 1]);
    }
  }
  __syncthreads();
  merge_warps_and_store<T, kHeadDim, kWarps, Config::kThreads>(params, s, rows, row0, kv_head, split_index, row_max,
                                                               row_sum, partial, state);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (params.cluster_merge) {
    hopper::cluster_sync();  // every split's state is in its block's shared memory
    merge_cluster_and_store<T, kHeadDim, Config::kThreads>(params, s, rows, row0, kv_head, state);
    hopper::cluster_sync();  // no block leaves while the others read its shared memory
  }
#endif
}

}  // namespace device

// Blocks along x are (row tile, split), the split fastest: with cluster_merge, a cluster of num_splits blocks
// along x is one row tile's splits.
template <class T, int kHeadDim, DecodeWidth kWidth>
void launch_decode(const DecodeParams& params, cudaStream_t stream) {
  using Config = device::DecodeConfig<T, kHeadDim, kWidth>;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(&device::decode_kernel<T, kHeadDim, kWidth>),
                              Config::kSmemBytes);
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(params.row_tiles * params.num_splits),
                        static_cast<unsigned>(params.problem.heads_kv), static_cast<unsigned>(params.problem.batch));
  config.blockDim = dim3(Config::kThreads);
  config.dynamicSmemBytes = Config::kSmemBytes;
  config.stream = stream;
  cudaLaunchAttribute cluster = cluster_dimension(params.num_splits);
  if (params.cluster_merge) {
    config.attrs = &cluster;
    config.numAttrs = 1;
  }
  cudaLaunchKernelEx(&config, device::decode_kernel<T, kHeadDim, kWidth>, params);
}

template <class T, int kHeadDim, DecodeWidth kWidth>
DecodeKernel decode_instance() {
  using Config = device::DecodeConfig<T, kHeadDim, kWidth>;
  const auto* kernel = reinterpret_cast<const void*>(&device::decode_kernel<T, kHeadDim, kWidth>);
  allow_dynamic_shared_memory(kernel, Config::kSmemBytes);  // before the planner's occupancy query
  return {&launch_decode<T, kHeadDim, kWidth>, kernel, Config::kThreads, Config::kSmemBytes};
}

}  // namespace flashattn::cuda
