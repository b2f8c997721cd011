// The portable forward kernel (FlashAttention-2 algorithm, mma.sync + ldmatrix + cp.async, sm_80+).
//
// A block owns block_m query rows of one (batch, query head) and, with split-KV, one contiguous share of
// the key tiles those rows see. Q is copied once; K and V tiles stream through one or two buffers each
// (tiles.hpp), the copies of the next tiles in flight while tile j is used. Per key tile: S = Q K^T on the tensor
// cores, score modifiers and the mask where the tile needs them, the online softmax in registers, O += P V with P
// straight from the accumulator registers. The epilogue normalises O and writes it through shared memory.
#pragma once

#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>

#include "cuda/device/ptx.cuh"
#include "cuda/device/sequence.cuh"
#include "cuda/device/smem.cuh"
#include "cuda/device/warp_gemm.cuh"
#include "cuda/forward/mask.cuh"
#include "cuda/forward/softmax.cuh"
#include "cuda/host.hpp"
#include "cuda/params.hpp"
#include "cuda/tiles.hpp"

namespace flashattn::cuda {

template <class T, int kHeadDim, int kWarps, int kMTiles_, int kBlockN_, int kKvStages = 2>
struct ForwardKernelShape {
  static constexpr int kThreads = kWarps * kWarpSize;
  static constexpr int kBlockM = kWarps * kMTiles_ * 16;
  static constexpr int kBlockN = kBlockN_;
  static constexpr int kMTiles = kMTiles_;
  static constexpr int kNTiles = kBlockN / 8;
  static constexpr int kDTiles = kHeadDim / 8;
  using QLayout = device::SmemLayout<kBlockM, kHeadDim>;
  using KvLayout = device::SmemLayout<kBlockN, kHeadDim>;
  // Q (reused for the output), then K[kKvStages] and V[kKvStages].
  static constexpr int kSmemBytes =
      (QLayout::kElements + 2 * kKvStages * KvLayout::kElements) * static_cast<int>(sizeof(T));
};

namespace device {

template <class T, int kHeadDim>
__global__ void __launch_bounds__(forward_tile(kHeadDim).threads(), forward_tile(kHeadDim).min_blocks_per_sm)
    forward_kernel(const __grid_constant__ ForwardParams p) {
  constexpr ForwardTile kTile = forward_tile(kHeadDim);
  using Shape = ForwardKernelShape<T, kHeadDim, kTile.warps, kTile.m_tiles, kTile.block_n, kTile.kv_stages>;
  using QLayout = typename Shape::QLayout;
  using KvLayout = typename Shape::KvLayout;
  constexpr int kThreads = Shape::kThreads;
  constexpr int kBlockM = Shape::kBlockM;
  constexpr int kBlockN = Shape::kBlockN;
  constexpr int kMTiles = Shape::kMTiles;

  extern __shared__ __align__(128) unsigned char smem_bytes[];
  T* const smem_q = reinterpret_cast<T*>(smem_bytes);
  // K tiles at smem_k + buffer * kKvElements, V tiles after them.
  constexpr int kStages = kTile.kv_stages;
  static_assert(kStages == 1 || kStages == 2, "K and V stream through one or two buffers");
  T* const smem_k = smem_q + QLayout::kElements;
  T* const smem_v = smem_k + kStages * KvLayout::kElements;
  constexpr int kKvElements = KvLayout::kElements;

  // The last query tiles see the most keys under a causal mask: hand them out first.
  const int m_block = gridDim.x - 1 - blockIdx.x;
  const int head = blockIdx.y;
  const int batch = blockIdx.z / p.num_splits;
  const int split = blockIdx.z % p.num_splits;
  const Sequence seq = Sequence::of(p, batch);
  const int m0 = m_block * kBlockM;
  if (m0 >= seq.seqlen_q) return;
  const int rows = min(kBlockM, seq.seqlen_q - m0);
  const int head_kv = head / (p.heads_q / p.heads_kv);

  const int thread = threadIdx.x;
  const int lane = thread % kWarpSize;
  const int warp_row0 = (thread / kWarpSize) * kMTiles * 16;

  const MaskPolicy mask = MaskPolicy::of(p, seq);
  int tile_begin = 0;
  int tile_end = 0;
  mask.key_tiles<kBlockN>(m0, m0 + rows, tile_begin, tile_end);
  if (p.num_splits > 1) {
    const int per_split = (tile_end - tile_begin + p.num_splits - 1) / p.num_splits;
    tile_begin = min(tile_end, tile_begin + split * per_split);
    tile_end = min(tile_end, tile_begin + per_split);
  }
  ScoreMod mod;
  mod.scale = p.scale;
  mod.softcap = p.softcap;
  mod.slope = p.alibi_slopes == nullptr ? 0.0f : p.alibi_slopes[batch * p.alibi_batch_stride + head];
  mod.offset = mask.offset;
  // Plain scores stay raw and the softmax folds scale * log2(e) into its exp2; modified ones are
  // converted to log2 units first (and so is a non-positive scale, which would turn the maximum around).
  const bool modify = !mod.plain() || !(p.scale > 0.0f);
  const float softmax_scale = modify ? 1.0f : p.scale_log2;

  const GlobalTile<T> q_src{seq.query_row<const T>(p.q, batch, m0, head), p.q.token_stride, rows, p.head_dim};
  // load_k / load_v start the copy of key tile `tile` of K / V into buffer `buffer` (commit separately).
  auto load_keys = [&](T* smem, const detail::TokenTensor& t, int tile, int valid_cols) {
    const int key0 = tile * kBlockN;
    const GlobalTile<T> src{seq.key_row<const T>(t, batch, key0, head_kv), t.token_stride, seq.seqlen_k - key0,
                            valid_cols};
    copy_tile_async<kThreads, kBlockN, kHeadDim>(smem, src, thread);
  };
  auto load_k = [&](int tile, int buffer) { load_keys(smem_k + buffer * kKvElements, p.k, tile, p.head_dim); };
  auto load_v = [&](int tile, int buffer) { load_keys(smem_v + buffer * kKvElements, p.v, tile, p.head_dim_v); };

  copy_tile_async<kThreads, kBlockM, kHeadDim>(smem_q, q_src, thread);
  cp_async_commit();
  if (tile_begin < tile_end) load_k(tile_begin, 0);
  cp_async_commit();
  if (tile_begin < tile_end) load_v(tile_begin, 0);
  cp_async_commit();

  const RowMajorLanes<kHeadDim> row_lanes(lane);  // Q as A [m][k]; V as B [k][n]
  const ColMajorLanes<kHeadDim> col_lanes(lane);  // K as B [n][k]
  Accumulator<kMTiles, Shape::kDTiles> o;
  o.zero();
  OnlineSoftmax<kMTiles> softmax;
  softmax.init();
  std::uint32_t q_fragments[kMTiles][kHeadDim / 16][4];

  // Two stages: one barrier per tile. Tile j's K and V (requested a whole tile earlier) have landed at its
  // top, where K j+1 and V j+1 are requested into the buffers tile j - 1 used; the warps then run tile j's
  // products and softmax out of step with each other (H100, d = 64, non-causal: 303 -> 306, 313 -> 319,
  // 319 -> 324 TFLOP/s at seqlen 2k, 4k, 8k against a second barrier before P V). One stage: copy groups in flight,
  // oldest first, [V j] at the top, then [V j, K j+1] after Q K^T, then [K j+1, V j+1] after P V.
  for (int tile = tile_begin; tile < tile_end; ++tile) {
    const int buffer = kStages == 2 ? (tile - tile_begin) % 2 : 0;
    if constexpr (kStages == 2) {
      cp_async_wait<0>();  // Q (first time) and this K and V tile have landed
      __syncthreads();     // ... for every thread; and every warp is done with the other buffers
      if (tile + 1 < tile_end) {
        load_k(tile + 1, buffer ^ 1);
        load_v(tile + 1, buffer ^ 1);
      }
      cp_async_commit();
    } else {
      cp_async_wait<1>();  // Q (first time) and this K tile have landed; this V tile may still be in flight
      __syncthreads();     // ... for every thread; and every warp is done with the other buffers
    }

    Accumulator<kMTiles, Shape::kNTiles> s;
    s.zero();
    if constexpr (kTile.q_in_registers) {
      if (tile == tile_begin) {
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
          for (int kk = 0; kk < kHeadDim / 16; ++kk)
            load_a<false>(q_fragments[mt][kk], smem_address(smem_q), warp_row0, row_lanes, mt, 16 * kk);
      }
      warp_gemm_a_registers<T, kHeadDim, false>(s, q_fragments, operand(smem_k + buffer * kKvElements, 0, col_lanes));
    } else {
      warp_gemm<T, kHeadDim, false, false>(s, operand(smem_q, warp_row0, row_lanes),
                                           operand(smem_k + buffer * kKvElements, 0, col_lanes));
    }

    if constexpr (kStages == 1) {
      __syncthreads();  // every warp is done with this K tile: its buffer takes the next one
      if (tile + 1 < tile_end) load_k(tile + 1, 0);
      cp_async_commit();
    }

    const int key0 = tile * kBlockN;
    const bool apply_mask = mask.tile_needs_mask(m0, m0 + rows, key0, key0 + kBlockN);
    if (modify) {
      mask_and_modify<true>(s, mask, mod, m0 + warp_row0, key0, lane);
    } else if (apply_mask) {
      mask_and_modify<false>(s, mask, mod, m0 + warp_row0, key0, lane);
    }
    softmax.update(s, o, softmax_scale);

    if constexpr (kStages == 1) {
      cp_async_wait<1>();  // this V tile has landed (the next K may be in flight)
      __syncthreads();
    }
    warp_gemm_a_accumulator<T, true>(o, s, operand(smem_v + buffer * kKvElements, 0, row_lanes));
    if constexpr (kStages == 1) {
      __syncthreads();  // every warp is done with this V tile
      if (tile + 1 < tile_end) load_v(tile + 1, 0);
      cp_async_commit();
    }
  }
  cp_async_wait<0>();

  float inverse_sum[kMTiles][2];
  float lse[kMTiles][2];
  softmax.finish(inverse_sum, lse, softmax_scale);

  if (p.num_splits > 1) {
    // Partial results go to the fp32 work buffer; the combine kernel normalises across splits.
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int row = warp_row0 + 16 * mt + lane / 4 + 8 * r;
        if (row >= rows) continue;
        const std::int64_t index =
            split * p.partial_split_stride +
            seq.row_index(p.lse_partial.batch_stride, p.lse_partial.head_stride, batch, head, m0 + row);
        float* out_row = p.out_partial + index * p.head_dim_v;
#pragma unroll
        for (int dt = 0; dt < Shape::kDTiles; ++dt) {
          const int col = 8 * dt + 2 * (lane % 4);
          if (col < p.head_dim_v) {
            *reinterpret_cast<float2*>(out_row + col) =
                make_float2(o.c[mt][dt][2 * r] * inverse_sum[mt][r], o.c[mt][dt][2 * r + 1] * inverse_sum[mt][r]);
          }
        }
        if (lane % 4 == 0) p.lse_partial.data[index] = lse[mt][r];
      }
    }
    return;
  }

  __syncthreads();  // every warp is done reading Q from shared memory: its space takes the output
  // One address register for all the thread's pairs, and the approximate log2 in softmax.finish: the d = 128
  // epilogue went from 1510 to 1080 instructions a thread and the forward gained 2.2 / 2.4 % at seqlen 2k
  // non-causal / causal, 1.2 % at 8k (H100, same call as the code before; d = 64 and 256 within +-0.6 %).
  const PairStores<kBlockM, kHeadDim> pairs(smem_q, warp_row0, lane);
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = warp_row0 + 16 * mt + lane / 4 + 8 * r;
#pragma unroll
      for (int dt = 0; dt < Shape::kDTiles; ++dt) {
        pairs.store(2 * mt + r, dt,
                    pack_pair<T>(o.c[mt][dt][2 * r] * inverse_sum[mt][r], o.c[mt][dt][2 * r + 1] * inverse_sum[mt][r]));
      }
      if (lane % 4 == 0 && row < rows) {
        p.lse.data[seq.row_index(p.lse.batch_stride, p.lse.head_stride, batch, head, m0 + row)] = lse[mt][r];
      }
    }
  }
  __syncthreads();
  const GlobalOutTile<T> out_dst{seq.query_row<T>(p.out, batch, m0, head), p.out.token_stride, rows, p.head_dim_v};
  store_tile<kThreads, kBlockM, kHeadDim>(smem_q, out_dst, thread);
}

}  // namespace device

// Launches the forward over every (query tile, head, batch * split).
template <class T, int kHeadDim>
void launch_forward(const ForwardParams& p, cudaStream_t stream) {
  constexpr ForwardTile kTile = forward_tile(kHeadDim);
  using Shape = ForwardKernelShape<T, kHeadDim, kTile.warps, kTile.m_tiles, kTile.block_n, kTile.kv_stages>;
  auto* kernel = &device::forward_kernel<T, kHeadDim>;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), Shape::kSmemBytes);
  const dim3 grid((p.seqlen_q + Shape::kBlockM - 1) / Shape::kBlockM, p.heads_q, p.batch * p.num_splits);
  kernel<<<grid, Shape::kThreads, Shape::kSmemBytes, stream>>>(p);
}

}  // namespace flashattn::cuda
