// The deterministic backward's dQ pass. The main backward kernel adds each key block's share of dQ with
// fp32 atomics, whose order (and so rounding) varies between runs. With `deterministic`, dQ comes from
// this kernel instead: a block owns block_m query rows of one head and walks their key tiles in order,
// recomputing P and dS (as the forward computes P) and keeping dQ in registers: bitwise reproducible,
// at the price of recomputing S and dP once more.
#pragma once

#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>
#include <type_traits>

#include "cuda/device/ptx.cuh"
#include "cuda/device/sequence.cuh"
#include "cuda/device/smem.cuh"
#include "cuda/device/warp_gemm.cuh"
#include "cuda/forward/kernel.cuh"
#include "cuda/host.hpp"
#include "cuda/params.hpp"
#include "cuda/tiles.hpp"

namespace flashattn::cuda {
namespace device {

template <class T, int kHeadDim>
__global__ void __launch_bounds__(dq_tile(kHeadDim).threads(), dq_tile(kHeadDim).min_blocks_per_sm)
    backward_dq_kernel(const __grid_constant__ BackwardParams p) {
  constexpr ForwardTile kTile = dq_tile(kHeadDim);
  using Shape = ForwardKernelShape<T, kHeadDim, kTile.warps, kTile.m_tiles, kTile.block_n>;
  using QLayout = typename Shape::QLayout;
  using KvLayout = typename Shape::KvLayout;
  constexpr int kThreads = Shape::kThreads;
  constexpr int kBlockM = Shape::kBlockM;
  constexpr int kBlockN = Shape::kBlockN;
  static_assert(kTile.m_tiles == 1, "one m-tile per warp");

  extern __shared__ __align__(128) unsigned char smem_bytes[];
  T* const smem_q = reinterpret_cast<T*>(smem_bytes);
  T* const smem_do = smem_q + QLayout::kElements;
  // K tiles at smem_k + buffer * kKvElements, V tiles after them.
  T* const smem_k = smem_do + QLayout::kElements;
  T* const smem_v = smem_k + 2 * KvLayout::kElements;
  constexpr int kKvElements = KvLayout::kElements;

  const int m_block = gridDim.x - 1 - blockIdx.x;
  const int head = blockIdx.y;
  const int batch = blockIdx.z;
  const Sequence seq = Sequence::of(p, batch);
  const int m0 = m_block * kBlockM;
  if (m0 >= seq.seqlen_q) return;
  const int rows = min(kBlockM, seq.seqlen_q - m0);
  const int head_kv = head / (p.heads_q / p.heads_kv);

  const int thread = threadIdx.x;
  const int lane = thread % kWarpSize;
  const int warp_row0 = (thread / kWarpSize) * 16;

  const MaskPolicy mask = MaskPolicy::of(p, seq);
  int tile_begin = 0;
  int tile_end = 0;
  mask.key_tiles<kBlockN>(m0, m0 + rows, tile_begin, tile_end);
  ScoreMod mod;
  mod.scale = p.scale;
  mod.softcap = p.softcap;
  mod.slope = p.alibi_slopes == nullptr ? 0.0f : p.alibi_slopes[batch * p.alibi_batch_stride + head];
  mod.offset = mask.offset;
  const bool modify = !mod.plain();

  // This thread's two rows: lse (log2 units) and rowsum(dO * O).
  float row_lse[2];
  float row_dot[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = warp_row0 + lane / 4 + 8 * r;
    const std::int64_t index = seq.row_index(p.lse_log2.batch_stride, p.lse_log2.head_stride, batch, head, m0 + row);
    row_lse[r] = row < rows ? p.lse_log2.data[index] : CUDART_INF_F;
    row_dot[r] = row < rows ? p.dot_do_o.data[index] : 0.0f;
  }

  copy_tile_async<kThreads, kBlockM, kHeadDim>(
      smem_q, GlobalTile<T>{seq.query_row<const T>(p.q, batch, m0, head), p.q.token_stride, rows, p.head_dim}, thread);
  copy_tile_async<kThreads, kBlockM, kHeadDim>(
      smem_do, GlobalTile<T>{seq.query_row<const T>(p.dout, batch, m0, head), p.dout.token_stride, rows, p.head_dim_v},
      thread);
  auto load_kv = [&](int tile, int buffer) {
    const int key0 = tile * kBlockN;
    copy_tile_async<kThreads, kBlockN, kHeadDim>(smem_k + buffer * kKvElements,
                                                 GlobalTile<T>{seq.key_row<const T>(p.k, batch, key0, head_kv),
                                                               p.k.token_stride, seq.seqlen_k - key0, p.head_dim},
                                                 thread);
    copy_tile_async<kThreads, kBlockN, kHeadDim>(smem_v + buffer * kKvElements,
                                                 GlobalTile<T>{seq.key_row<const T>(p.v, batch, key0, head_kv),
                                                               p.v.token_stride, seq.seqlen_k - key0, p.head_dim_v},
                                                 thread);
  };
  if (tile_begin < tile_end) load_kv(tile_begin, 0);
  cp_async_commit();

  const RowMajorLanes<kHeadDim> row_lanes(lane);  // Q, dO as A [m][k]; K as B [k][n]
  const ColMajorLanes<kHeadDim> col_lanes(lane);  // K, V as B [n][k]
  Accumulator<1, kHeadDim / 8> dq;
  dq.zero();
  for (int tile = tile_begin; tile < tile_end; ++tile) {
    const int buffer = (tile - tile_begin) % 2;
    cp_async_wait<0>();
    __syncthreads();  // this tile has landed; every warp is done with the other buffer
    if (tile + 1 < tile_end) load_kv(tile + 1, buffer ^ 1);
    cp_async_commit();

    Accumulator<1, kBlockN / 8> s;
    Accumulator<1, kBlockN / 8> dp;
    s.zero();
    dp.zero();
    warp_gemm<T, kHeadDim, false, false>(s, operand(smem_q, warp_row0, row_lanes),
                                         operand(smem_k + buffer * kKvElements, 0, col_lanes));
    warp_gemm<T, kHeadDim, false, false>(dp, operand(smem_do, warp_row0, row_lanes),
                                         operand(smem_v + buffer * kKvElements, 0, col_lanes));

    const int key0 = tile * kBlockN;
    // dS = P (dP - D) in place of S; one branch per tile, not per element (see the backward kernel).
    auto scores_to_gradients = [&](auto modify_case, auto mask_case) {
      constexpr bool kModify = decltype(modify_case)::value;
      constexpr bool kMask = decltype(mask_case)::value;
#pragma unroll
      for (int nt = 0; nt < kBlockN / 8; ++nt) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int row = m0 + warp_row0 + lane / 4 + 8 * (i / 2);
          const int key = key0 + 8 * nt + 2 * (lane % 4) + i % 2;
          float softcap_grad = 1.0f;
          const float x = kModify ? mod.apply(s.c[0][nt][i], row, key, &softcap_grad) : s.c[0][nt][i] * p.scale_log2;
          const bool visible = !kMask || mask.visible(row, key);
          const float prob = visible ? fast_exp2(x - row_lse[i / 2]) : 0.0f;
          s.c[0][nt][i] = prob * (dp.c[0][nt][i] - row_dot[i / 2]) * softcap_grad;
        }
      }
    };
    if (modify) {
      scores_to_gradients(std::true_type{}, std::true_type{});
    } else if (mask.tile_needs_mask(m0, m0 + kBlockM, key0, key0 + kBlockN)) {
      scores_to_gradients(std::false_type{}, std::true_type{});
    } else {
      scores_to_gradients(std::false_type{}, std::false_type{});
    }
    warp_gemm_a_accumulator<T, true>(dq, s, operand(smem_k + buffer * kKvElements, 0, row_lanes));
  }
  cp_async_wait<0>();

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = warp_row0 + lane / 4 + 8 * r;
    if (row >= rows) continue;
    T* dq_row = seq.query_row<T>(p.dq, batch, m0 + row, head);
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
      const int col = 8 * dt + 2 * (lane % 4);
      if (col < p.head_dim) {
        *reinterpret_cast<std::uint32_t*>(dq_row + col) =
            pack_pair<T>(dq.c[0][dt][2 * r] * p.scale, dq.c[0][dt][2 * r + 1] * p.scale);
      }
    }
  }
}

}  // namespace device

template <class T, int kHeadDim>
void launch_backward_dq(const BackwardParams& p, cudaStream_t stream) {
  constexpr ForwardTile kTile = dq_tile(kHeadDim);
  using Shape = ForwardKernelShape<T, kHeadDim, kTile.warps, kTile.m_tiles, kTile.block_n>;
  // Q and dO, then K[2] and V[2]: one Q-sized tile more than the forward's layout.
  constexpr int kSmemBytes = Shape::kSmemBytes + Shape::QLayout::kElements * static_cast<int>(sizeof(T));
  auto* kernel = &device::backward_dq_kernel<T, kHeadDim>;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), kSmemBytes);
  const dim3 grid((p.seqlen_q + Shape::kBlockM - 1) / Shape::kBlockM, p.heads_q, p.batch);
  kernel<<<grid, Shape::kThreads, kSmemBytes, stream>>>(p);
}

}  // namespace flashattn::cuda
