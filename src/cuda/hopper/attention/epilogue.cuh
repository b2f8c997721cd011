// A consumer warpgroup's epilogue: its 64 rows of O, normalised and rounded to the input type, go into its
// output boxes (shape.cuh: its own buffer, or its rows of Q's panels) in the 128-byte swizzle the O tensor map
// expects, and leave through the copy engine, which clips rows past the sequence. The LSE goes straight from
// registers.
#pragma once

#include "cuda/device/ptx.cuh"
#include "cuda/device/warp_gemm.cuh"
#include "cuda/hopper/attention/scheduler.cuh"
#include "cuda/hopper/attention/shape.cuh"
#include "cuda/hopper/tma.cuh"

namespace flashattn::cuda::hopper {

template <class Shape>
__device__ __forceinline__ void store_output(const AttentionStorage<Shape>& smem, const HopperForwardParams& p,
                                             const TileWork& work, int consumer,
                                             const device::Accumulator<1, Shape::kHeadDim / 8>& o,
                                             const float (&inverse_sum)[1][2], const float (&lse)[1][2]) {
  using T = typename Shape::Element;
  constexpr int kChunkBytes = 16;
  constexpr int kChunksPerRow = static_cast<int>(kSwizzle128RowBytes) / kChunkBytes;
  constexpr int kRowsPerSwizzleAtom = 8;
  const int thread = static_cast<int>(threadIdx.x) % kWarpgroupThreads;
  const int lane = thread % kWarpSize;
  const int row_begin = work.m0 + consumer * kWgmmaM;
  const int warp_row = (thread / kWarpSize) * 16 + lane / 4;  // this thread's first row among the 64
  const ForwardParams& a = p.attention;

#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row_begin + warp_row + 8 * half;
    if (lane % 4 == 0 && row < work.seq.seqlen_q) {
      a.lse.data[work.seq.row_index(a.lse.batch_stride, a.lse.head_stride, work.tile.batch, work.tile.head, row)] =
          lse[0][half];
    }
  }

  // With its own buffer, the previous tile's output copies must have read it before it is written again.
  if constexpr (Shape::kOwnOutputBuffer) {
    if (thread == 0) tma_store_wait_read<0>();
    named_barrier_sync(epilogue_barrier(consumer), kWarpgroupThreads);
  }
#pragma unroll
  for (int fragment = 0; fragment < Shape::kHeadDim / 8; ++fragment) {
    const int chunk = fragment % kChunksPerRow;
    unsigned char* const box = smem.output_box(consumer, fragment / kChunksPerRow);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = warp_row + 8 * half;
      const int swizzled_chunk = chunk ^ (row % kRowsPerSwizzleAtom);
      unsigned char* destination = box + row * kSwizzle128RowBytes + swizzled_chunk * kChunkBytes + (lane % 4) * 4;
      *reinterpret_cast<std::uint32_t*>(destination) = device::pack_pair<T>(
          o.c[0][fragment][2 * half] * inverse_sum[0][half], o.c[0][fragment][2 * half + 1] * inverse_sum[0][half]);
    }
  }
  fence_proxy_async_shared();
  named_barrier_sync(epilogue_barrier(consumer), kWarpgroupThreads);
  if (thread == 0) {
    if (row_begin < work.seq.seqlen_q) {
#pragma unroll
      for (int panel = 0; panel < Shape::kPanels; ++panel) {
        tma_store_4d(&p.o_map, smem.output_box(consumer, panel), panel * Shape::kPanelColumns, row_begin,
                     work.tile.head, work.tile.batch);
      }
      tma_store_commit_group();
    }
    if constexpr (!Shape::kOwnOutputBuffer) {
      // The output went through Q's panels: they take the next Q once the copies have read them.
      tma_store_wait_read<0>();
      mbarrier_arrive(smem.q_empty(0));
    }
  }
}

}  // namespace flashattn::cuda::hopper
