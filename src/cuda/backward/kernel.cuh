// The portable backward kernel (FlashAttention-2 algorithm, sm_80+): dK and dV of one block of keys.
//
// A block owns block_n keys of one (batch, KV head). K and V stay in shared memory; the query tiles of
// every query head of the KV head's group stream through two buffers (Q, dO, the row's lse and
// rowsum(dO * O)). Per query tile:
//   S^T = K Q^T, dP^T = V dO^T                       (recomputed; keys along the rows)
//   P^T = exp2(x - lse), dS^T = P^T (dP^T - D)       (registers -> shared memory, in the input dtype)
//   dV += P^T dO, dK += dS^T Q                       (fp32 registers for the whole loop)
//   dQ += dS K                                       (fp32 atomics into a work buffer, unless deterministic)
// The group's query heads are summed in registers, so GQA needs no atomics for dK and dV.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "cuda/device/ptx.cuh"
#include "cuda/device/sequence.cuh"
#include "cuda/device/smem.cuh"
#include "cuda/device/warp_gemm.cuh"
#include "cuda/host.hpp"
#include "cuda/params.hpp"
#include "cuda/tiles.hpp"

namespace flashattn::cuda {

template <class T, int kHeadDim>
struct BackwardKernelShape {
  static constexpr BackwardTile kTile = backward_tile(kHeadDim);
  static constexpr int kThreads = kTile.threads();
  static constexpr int kWarps = kTile.warps;
  static constexpr int kBlockM = kTile.block_m;
  static constexpr int kBlockN = kTile.block_n;
  using QLayout = device::SmemLayout<kBlockM, kHeadDim>;  // Q and dO
  using KLayout = device::SmemLayout<kBlockN, kHeadDim>;  // K and V
  using PLayout = device::SmemLayout<kBlockN, kBlockM>;   // P^T and dS^T
  // S^T and dP^T: each warp owns sdp_keys x sdp_queries.
  static constexpr int kSdpKeys = kBlockN / kTile.sdp_warps_n;
  static constexpr int kSdpQueries = kBlockM / (kWarps / kTile.sdp_warps_n);
  // dK and dV: each warp owns kv_keys x kv_dims.
  static constexpr int kKvKeys = kBlockN / kTile.kv_warps_n;
  static constexpr int kKvDims = kHeadDim / (kWarps / kTile.kv_warps_n);
  // dQ: each warp owns dq_rows x dq_dims.
  static constexpr int kDqRows = kBlockM / kTile.dq_warps_m;
  static constexpr int kDqDims = kHeadDim / (kWarps / kTile.dq_warps_m);
  // The register budget: S^T / dP^T are computed 32 queries at a time where the step needs the mask or a
  // score modifier, up to 64 at a time elsewhere, and dQ 32 channels at a time (d = 256: 64 at a time
  // spilled 16 bytes and was 4 % slower at seqlen 8k, H100; its red bursts were twice as long). With 32,
  // each K / V fragment was fetched once per chunk, which doubled the shared-memory queue's stalls at d = 64
  // (ncu against FA2); 64 on plain steps took d = 64 from 225 / 265 / 279 to 237 / 279 / 293 TFLOP/s at
  // seqlen 2k / 8k / 16k non-causal (H100), though it spills 48 bytes. 64 on every step was slower causal.
  static constexpr int kSdpQueryChunk = kSdpQueries < 32 ? kSdpQueries : 32;
  static constexpr int kSdpPlainChunk = kSdpQueries < 64 ? kSdpQueries : 64;
  static constexpr int kDqDimChunk = kDqDims < 32 ? kDqDims : 32;
  static_assert(kSdpKeys % 16 == 0 && kSdpQueries % 16 == 0 && kKvKeys % 16 == 0 && kKvDims % 16 == 0 &&
                    kDqRows % 16 == 0 && kDqDims % 16 == 0,
                "warp blocks must be whole 16 x 16 tiles");

  static constexpr int kTileBytes = static_cast<int>(sizeof(T));
  static constexpr int kSmemBytes =
      (2 * KLayout::kElements + 4 * QLayout::kElements + 2 * PLayout::kElements) * kTileBytes +
      4 * kBlockM * static_cast<int>(sizeof(float));
};

namespace device {

// cp.async of kBlockM fp32 row values (lse or rowsum), zero past `valid` (those rows are masked anyway).
template <int kBlockM>
__device__ __forceinline__ void copy_rows_async(float* smem, const float* global, int valid, int thread) {
  if (thread < kBlockM) {
    const bool ok = thread < valid;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_address(smem + thread)),
                 "l"(ok ? global + thread : global), "r"(ok ? 4 : 0));
  }
}

// Where a warp's S^T / dP^T chunk sits: its first key and query inside the block's tile, and the lane.
struct ScoreTile {
  int key0;
  int query0;
  int lane;
};
// The step's per-query values in shared memory (lse in log2 units, rowsum(dO * O)) and the tile's origin.
struct TileRows {
  const float* lse_log2;
  const float* dot_do_o;
  int m0;
  int n0;
};

// P^T = exp2(x - lse) and dS^T = P^T (dP^T - D) of one chunk, stored to shared memory in the input dtype.
// kModify: softcap / ALiBi (the mask is then applied too); kMask: the tile crosses the mask's edge.
template <class T, int kBlockN, int kBlockM, bool kModify, bool kMask, int kMTiles, int kNTiles>
__device__ __forceinline__ void probabilities_and_gradients(const Accumulator<kMTiles, kNTiles>& s,
                                                            const Accumulator<kMTiles, kNTiles>& dp,
                                                            const ScoreTile& where, const TileRows& rows,
                                                            const ScoreMod& mod, const MaskPolicy& mask,
                                                            float scale_log2, T* smem_p, T* smem_ds) {
#pragma unroll
  for (int nt = 0; nt < kNTiles; ++nt) {
    const int query_local = where.query0 + 8 * nt + 2 * (where.lane % 4);  // and query_local + 1
    float lse[2];
    float dot[2];
    MaskPolicy::KeyRange keys[2];
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      lse[c] = rows.lse_log2[query_local + c];
      dot[c] = rows.dot_do_o[query_local + c];
      keys[c] = mask.keys_of(rows.m0 + query_local + c);
    }
    // Rows 8 apart share their swizzle, so the lane's pairs of this column tile are constant offsets from
    // one address. Computed per pair, the compiler hoisted all 16 addresses out of the step loop and kept
    // them in registers (d = 128: 16 registers where 4 do, in a kernel that spills).
    const int column_at = SmemLayout<kBlockN, kBlockM>::offset(where.key0 + where.lane / 4, query_local);
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int key_local = where.key0 + 16 * mt + where.lane / 4 + 8 * half;
        const int key = rows.n0 + key_local;
        float prob[2];
        float ds[2];
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int i = 2 * half + c;
          float softcap_grad = 1.0f;
          const float x = kModify ? mod.apply(s.c[mt][nt][i], rows.m0 + query_local + c, key, &softcap_grad)
                                  : s.c[mt][nt][i] * scale_log2;
          const bool visible = !kMask || keys[c].contains(key);
          prob[c] = visible ? fast_exp2(x - lse[c]) : 0.0f;
          ds[c] = prob[c] * (dp.c[mt][nt][i] - dot[c]);
          if (kModify) ds[c] *= softcap_grad;
        }
        const int at = column_at + (16 * mt + 8 * half) * kBlockM;
        *reinterpret_cast<std::uint32_t*>(smem_p + at) = pack_pair<T>(prob[0], prob[1]);
        *reinterpret_cast<std::uint32_t*>(smem_ds + at) = pack_pair<T>(ds[0], ds[1]);
      }
    }
  }
}

// Adds a warp's dQ chunk into the fp32 sums (dq_sum_index's layout); `sums` is the lane's first pair (row
// lane / 4, column 2 (lane % 4) of the chunk), and every other pair is a compile-time offset from it. Columns
// past head_dim add the zeros of K's zero-filled columns into the rows' padding. kWhole: every row lies
// inside seqlen_q. Guarding each pair and rebuilding its 64-bit address, as before, took ~190 of the loop's
// ~1060 instructions per step at d = 128 (SASS).
template <bool kWhole, int kHeadDim, int kMTiles, int kNTiles>
__device__ __forceinline__ void add_dq_chunk(const Accumulator<kMTiles, kNTiles>& dq, float* sums, int rows_left,
                                             int lane) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = 16 * mt + 8 * half;  // a multiple of 8: the lane's place inside its 8-row group stays
      if (!kWhole && row + lane / 4 >= rows_left) continue;
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        atomic_add_pair(sums + dq_sum_index(row, 8 * nt, kHeadDim), dq.c[mt][nt][2 * half], dq.c[mt][nt][2 * half + 1]);
      }
    }
  }
}

template <class T, int kHeadDim>
__global__ void __launch_bounds__(backward_tile(kHeadDim).threads(), backward_tile(kHeadDim).min_blocks_per_sm)
    backward_kernel(const __grid_constant__ BackwardParams p, bool accumulate_dq) {
  constexpr BackwardTile kTile = backward_tile(kHeadDim);
  using Shape = BackwardKernelShape<T, kHeadDim>;
  using QLayout = typename Shape::QLayout;
  using KLayout = typename Shape::KLayout;
  using PLayout = typename Shape::PLayout;
  constexpr int kThreads = Shape::kThreads;
  constexpr int kBlockM = Shape::kBlockM;
  constexpr int kBlockN = Shape::kBlockN;

  extern __shared__ __align__(128) unsigned char smem_bytes[];
  T* const smem_k = reinterpret_cast<T*>(smem_bytes);
  T* const smem_v = smem_k + KLayout::kElements;
  // Double buffers: Q at smem_q + buffer * kQElements, dO after them; lse and rowsum likewise.
  constexpr int kQElements = QLayout::kElements;
  T* const smem_q = smem_v + KLayout::kElements;
  T* const smem_do = smem_q + 2 * kQElements;
  T* const smem_p = smem_do + 2 * kQElements;
  T* const smem_ds = smem_p + PLayout::kElements;
  float* const smem_lse = reinterpret_cast<float*>(smem_ds + PLayout::kElements);
  float* const smem_dot = smem_lse + 2 * kBlockM;

  const int n_block = blockIdx.x;
  const int head_kv = blockIdx.y;
  const int batch = blockIdx.z;
  const Sequence seq = Sequence::of(p, batch);
  const int n0 = n_block * kBlockN;
  if (n0 >= seq.seqlen_k_stored) return;
  const int keys = max(0, min(kBlockN, seq.seqlen_k - n0));
  const int group = p.heads_q / p.heads_kv;

  const int thread = threadIdx.x;
  const int lane = thread % kWarpSize;
  const int warp = thread / kWarpSize;
  const int sdp_key0 = (warp % kTile.sdp_warps_n) * Shape::kSdpKeys;
  const int sdp_query0 = (warp / kTile.sdp_warps_n) * Shape::kSdpQueries;
  const int kv_key0 = (warp % kTile.kv_warps_n) * Shape::kKvKeys;
  const int kv_dim0 = (warp / kTile.kv_warps_n) * Shape::kKvDims;
  const int dq_row0 = (warp % kTile.dq_warps_m) * Shape::kDqRows;
  const int dq_dim0 = (warp / kTile.dq_warps_m) * Shape::kDqDims;

  const MaskPolicy mask = MaskPolicy::of(p, seq);
  int m_first = 0;
  int m_end = 0;
  if (keys > 0) mask.query_tiles<kBlockM>(n0, n0 + keys, m_first, m_end);
  const int tiles_per_head = m_end - m_first;
  const int steps = tiles_per_head * group;
  // Steps walk the query heads of the group, and each head's query tiles in a rotated order starting
  // n_block tiles in: the key blocks of one head then add their dQ shares to different rows at any one time
  // instead of all queueing on the same addresses. The cursor advances by counting: a division per step
  // put ~60 dependent instructions in front of every step's first mma (SASS, d = 128).
  struct StepCursor {
    int head;
    int tile;  // rotated position among the head's query tiles
  };
  const StepCursor first_step{head_kv * group, tiles_per_head > 0 ? n_block % tiles_per_head : 0};
  auto next_step = [&](StepCursor c) {
    ++c.tile;
    if (c.tile == tiles_per_head) c.tile = 0;
    if (c.tile == first_step.tile) ++c.head;
    return c;
  };
  auto step_row0 = [&](const StepCursor& c) { return (m_first + c.tile) * kBlockM; };

  auto load_step = [&](const StepCursor& c, int buffer) {
    const int head = c.head;
    const int m0 = step_row0(c);
    const int rows = seq.seqlen_q - m0;
    copy_tile_async<kThreads, kBlockM, kHeadDim>(
        (smem_q + buffer * kQElements),
        GlobalTile<T>{seq.query_row<const T>(p.q, batch, m0, head), p.q.token_stride, rows, p.head_dim}, thread);
    copy_tile_async<kThreads, kBlockM, kHeadDim>(
        (smem_do + buffer * kQElements),
        GlobalTile<T>{seq.query_row<const T>(p.dout, batch, m0, head), p.dout.token_stride, rows, p.head_dim_v},
        thread);
    const std::int64_t row = seq.row_index(p.lse_log2.batch_stride, p.lse_log2.head_stride, batch, head, m0);
    copy_rows_async<kBlockM>((smem_lse + buffer * kBlockM), p.lse_log2.data + row, rows, thread);
    copy_rows_async<kBlockM>((smem_dot + buffer * kBlockM), p.dot_do_o.data + row, rows, thread);
  };

  const GlobalTile<T> k_src{seq.key_row<const T>(p.k, batch, n0, head_kv), p.k.token_stride, keys, p.head_dim};
  const GlobalTile<T> v_src{seq.key_row<const T>(p.v, batch, n0, head_kv), p.v.token_stride, keys, p.head_dim_v};
  if (steps > 0) {
    copy_tile_async<kThreads, kBlockN, kHeadDim>(smem_k, k_src, thread);
    copy_tile_async<kThreads, kBlockN, kHeadDim>(smem_v, v_src, thread);
    load_step(first_step, 0);
  }
  cp_async_commit();

  // Lane tables (warp_gemm.cuh) for each way a tile is read.
  const RowMajorLanes<kHeadDim> kv_as_a(lane);             // K, V as A [m][k]: S^T, dP^T
  const ColMajorLanes<kHeadDim> qdo_as_b(lane);            // Q, dO as B [n][k]: S^T, dP^T
  const RowMajorLanes<kBlockM> pds_as_a(lane);             // P^T, dS^T as A [m][k]: dV, dK
  const RowMajorLanes<kHeadDim> qdo_as_bt(lane, kv_dim0);  // dO, Q as B [k][n]: dV, dK
  const ColMajorLanes<kBlockM> ds_as_at(lane, dq_row0);    // dS^T as A [k][m]: dQ
  const RowMajorLanes<kHeadDim> k_as_bt(lane, dq_dim0);    // K as B [k][n]: dQ
  Accumulator<Shape::kKvKeys / 16, Shape::kKvDims / 8> dk;
  Accumulator<Shape::kKvKeys / 16, Shape::kKvDims / 8> dv;
  dk.zero();
  dv.zero();
  ScoreMod mod;
  mod.scale = p.scale;
  mod.softcap = p.softcap;
  mod.offset = mask.offset;

  StepCursor cursor = first_step;
  for (int step = 0; step < steps; ++step) {
    const int buffer = step % 2;
    const int head = cursor.head;
    const int m0 = step_row0(cursor);
    cursor = next_step(cursor);
    cp_async_wait<0>();
    __syncthreads();  // this step's tiles have landed; every warp is done with the previous step

    mod.slope = p.alibi_slopes == nullptr ? 0.0f : p.alibi_slopes[batch * p.alibi_batch_stride + head];
    const bool modify = !mod.plain();
    const bool apply_mask = mask.tile_needs_mask(m0, m0 + kBlockM, n0, n0 + kBlockN);
    const TileRows rows{smem_lse + buffer * kBlockM, smem_dot + buffer * kBlockM, m0, n0};
    // S^T and dP^T a chunk of queries at a time, then P^T and dS^T compiled per case (score modifier, mask),
    // chosen once per chunk: per-element tests of `modify` and the mask doubled the instructions executed
    // per mma (SASS of the d = 128 instance). plain_only: the step needs neither.
    auto score_chunks = [&](auto chunk_size, auto plain_only) {
      constexpr int kChunk = decltype(chunk_size)::value;
#pragma unroll
      for (int chunk0 = sdp_query0; chunk0 < sdp_query0 + Shape::kSdpQueries; chunk0 += kChunk) {
        Accumulator<Shape::kSdpKeys / 16, kChunk / 8> s;
        Accumulator<Shape::kSdpKeys / 16, kChunk / 8> dp;
        s.zero();
        dp.zero();
        warp_gemm<T, kHeadDim, false, false>(s, operand(smem_k, sdp_key0, kv_as_a),
                                             operand(smem_q + buffer * kQElements, chunk0, qdo_as_b));
        warp_gemm<T, kHeadDim, false, false>(dp, operand(smem_v, sdp_key0, kv_as_a),
                                             operand(smem_do + buffer * kQElements, chunk0, qdo_as_b));
        const ScoreTile where{sdp_key0, chunk0, lane};
        if (!decltype(plain_only)::value && modify) {
          probabilities_and_gradients<T, kBlockN, kBlockM, true, true>(s, dp, where, rows, mod, mask, p.scale_log2,
                                                                       smem_p, smem_ds);
        } else if (!decltype(plain_only)::value && apply_mask) {
          probabilities_and_gradients<T, kBlockN, kBlockM, false, true>(s, dp, where, rows, mod, mask, p.scale_log2,
                                                                        smem_p, smem_ds);
        } else {
          probabilities_and_gradients<T, kBlockN, kBlockM, false, false>(s, dp, where, rows, mod, mask, p.scale_log2,
                                                                         smem_p, smem_ds);
        }
      }
    };
    using MaskedChunk = std::integral_constant<int, Shape::kSdpQueryChunk>;
    using PlainChunk = std::integral_constant<int, Shape::kSdpPlainChunk>;
    if (Shape::kSdpPlainChunk == Shape::kSdpQueryChunk || modify || apply_mask) {
      score_chunks(MaskedChunk{}, std::false_type{});
    } else {
      score_chunks(PlainChunk{}, std::true_type{});
    }
    // The next step's tiles are requested here rather than right after the first barrier, so that their
    // address arithmetic does not stand between the barrier and the first mma (H100, seqlen 8k: +2 % at
    // d = 64 and 128). The buffer they fill was last read in the previous step, before that barrier.
    if (step + 1 < steps) load_step(cursor, buffer ^ 1);
    cp_async_commit();
    __syncthreads();  // P^T and dS^T are complete

    warp_gemm<T, kBlockM, false, true>(dv, operand(smem_p, kv_key0, pds_as_a),
                                       operand(smem_do + buffer * kQElements, 0, qdo_as_bt));
    warp_gemm<T, kBlockM, false, true>(dk, operand(smem_ds, kv_key0, pds_as_a),
                                       operand(smem_q + buffer * kQElements, 0, qdo_as_bt));

    if (accumulate_dq) {
      // dQ a chunk of channels at a time, for the same reason as the query chunks above.
      const std::int64_t row0 = seq.row_index(p.lse_log2.batch_stride, p.lse_log2.head_stride, batch, head, m0);
      float* const lane_sums = p.dq_accum + dq_sum_index(row0 + dq_row0 + lane / 4, 2 * (lane % 4), kHeadDim);
      const int rows_left = seq.seqlen_q - m0 - dq_row0;
      const bool whole_tile = m0 + kBlockM <= seq.seqlen_q;
      constexpr int kDqChunk = Shape::kDqDimChunk;
#pragma unroll
      for (int dim0 = dq_dim0; dim0 < dq_dim0 + Shape::kDqDims; dim0 += kDqChunk) {
        Accumulator<Shape::kDqRows / 16, kDqChunk / 8> dq;
        dq.zero();
        warp_gemm<T, kBlockN, true, true>(dq, operand(smem_ds, 0, ds_as_at),
                                          operand(smem_k, 0, k_as_bt, dim0 - dq_dim0));
        // dq_sum_index(0, dim0) for a dim0 that is a multiple of 8, written out: through the function, the
        // run-time division it stands for changed the d = 256 kernel's code.
        float* const chunk_sums = lane_sums + dim0 * 8;
        if (whole_tile) {
          add_dq_chunk<true, kHeadDim>(dq, chunk_sums, rows_left, lane);
        } else {
          add_dq_chunk<false, kHeadDim>(dq, chunk_sums, rows_left, lane);
        }
      }
    }
  }
  cp_async_wait<0>();

  // dK = scale * sum dS^T Q (dS is the gradient of the raw dot products); keys past seqused_k get zeros.
  const int stored_keys = min(kBlockN, seq.seqlen_k_stored - n0);
#pragma unroll
  for (int mt = 0; mt < Shape::kKvKeys / 16; ++mt) {
#pragma unroll
    for (int i = 0; i < 4; i += 2) {
      const int key = kv_key0 + 16 * mt + lane / 4 + 8 * (i / 2);
      if (key >= stored_keys) continue;
      T* dk_row = seq.key_row<T>(p.dk, batch, n0 + key, head_kv);
      T* dv_row = seq.key_row<T>(p.dv, batch, n0 + key, head_kv);
#pragma unroll
      for (int nt = 0; nt < Shape::kKvDims / 8; ++nt) {
        const int col = kv_dim0 + 8 * nt + 2 * (lane % 4);
        if (col < p.head_dim) {
          *reinterpret_cast<std::uint32_t*>(dk_row + col) =
              pack_pair<T>(dk.c[mt][nt][i] * p.scale, dk.c[mt][nt][i + 1] * p.scale);
        }
        if (col < p.head_dim_v) {
          *reinterpret_cast<std::uint32_t*>(dv_row + col) = pack_pair<T>(dv.c[mt][nt][i], dv.c[mt][nt][i + 1]);
        }
      }
    }
  }
}

}  // namespace device

template <class T, int kHeadDim>
void launch_backward(const BackwardParams& p, bool accumulate_dq, cudaStream_t stream) {
  constexpr BackwardTile kTile = backward_tile(kHeadDim);
  using Shape = BackwardKernelShape<T, kHeadDim>;
  auto* kernel = &device::backward_kernel<T, kHeadDim>;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), Shape::kSmemBytes);
  const dim3 grid((p.seqlen_k + Shape::kBlockN - 1) / Shape::kBlockN, p.heads_kv, p.batch);
  kernel<<<grid, Shape::kThreads, Shape::kSmemBytes, stream>>>(p, accumulate_dq);
}

}  // namespace flashattn::cuda
