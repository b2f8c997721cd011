// A consumer warpgroup's epilogue. Where the block has an output buffer of its own (shape.cuh), in three steps:
// begin_output writes the LSE straight from registers; pack_output normalises the consumer's 64 rows of O and rounds
// them to the input type in registers; store_output puts the packed rows into the consumer's output boxes in the
// 128-byte swizzle the O tensor map expects, and the copy engine takes them out, clipping rows past the sequence.
// Merged into one function, packing and storing made d = 128 0.4-1.8 % slower and d = 256 spill 20 bytes instead of
// 16 (H100, same call, 2026-11-27 00:19 UTC). (Holding the packed rows until the next tile's second products were
// issued, so that the stores ran under them, spilled at d = 128 and was 3.5 % slower at d = 64: H100, 2026-11-26.
// With the tile table's output_under_scores O itself waits in its registers instead, mainloop.cuh.) Without that
// buffer (d = 256), write_output stores the rows from registers to global memory. A consumer whose rows lie before
// the sequence's start (the first query tile under a causal mask, tile_order.hpp) writes neither O nor the LSE.
#pragma once

#include "cuda/device/ptx.cuh"
#include "cuda/device/warp_gemm.cuh"
#include "cuda/hopper/attention/scheduler.cuh"
#include "cuda/hopper/attention/shape.cuh"
#include "cuda/hopper/tma.cuh"

namespace flashattn::cuda::hopper {

// A consumer thread's lane and its first row among the consumer's 64; it also holds row + 8 (wgmma's accumulator
// is the m16n8 layout per warp).
struct ConsumerThread {
  int lane;
  int warp_row;
};

__device__ __forceinline__ ConsumerThread consumer_thread() {
  const int thread = static_cast<int>(threadIdx.x) % kWarpgroupThreads;
  const int lane = thread % kWarpSize;
  return {lane, (thread / kWarpSize) * 16 + lane / 4};
}

// The LSE of rows `row` and row + 8 (one thread of each quad holds them), where they lie in the sequence.
__device__ __forceinline__ void write_lse(const ForwardParams& a, const TileWork& work, int row, int lane,
                                          const float (&lse)[1][2]) {
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row_half = row + 8 * half;
    if (lane % 4 == 0 && row_half >= 0 && row_half < work.seq.seqlen_q) {
      a.lse.data[work.seq.row_index(a.lse.batch_stride, a.lse.head_stride, work.tile.batch, work.tile.head, row_half)] =
          lse[0][half];
    }
  }
}

// Where one consumer's rows of a work tile's output go.
struct OutputRows {
  int row_begin;  // the consumer's first row in the sequence
  int head;
  int batch;
  bool any_rows;  // row_begin is inside the sequence (a consumer's rows are all inside it or all before it)
};

// The consumer's rows of a work tile; their LSE goes out at once, from registers.
__device__ __forceinline__ OutputRows begin_output(const ForwardParams& a, const TileWork& work, int consumer,
                                                   const float (&lse)[1][2]) {
  const auto [lane, warp_row] = consumer_thread();
  OutputRows rows;
  rows.row_begin = work.m0 + consumer * kWgmmaM;
  rows.head = work.tile.head;
  rows.batch = work.tile.batch;
  rows.any_rows = rows.row_begin >= 0 && rows.row_begin < work.seq.seqlen_q;
  write_lse(a, work, rows.row_begin + warp_row, lane, lse);
  return rows;
}

// One consumer's rows of O, normalised and in the input type: (8-channel fragment, half) holds the two channels
// this thread has of row warp_row + 8 * half.
template <class Shape>
struct PackedOutput {
  std::uint32_t pairs[Shape::kHeadDim / 8][2];
};

template <class Shape>
__device__ __forceinline__ PackedOutput<Shape> pack_output(const device::Accumulator<1, Shape::kHeadDim / 8>& o,
                                                           const float (&inverse_sum)[1][2]) {
  using T = typename Shape::Element;
  PackedOutput<Shape> out;
#pragma unroll
  for (int fragment = 0; fragment < Shape::kHeadDim / 8; ++fragment) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      out.pairs[fragment][half] = device::pack_pair<T>(o.c[0][fragment][2 * half] * inverse_sum[0][half],
                                                       o.c[0][fragment][2 * half + 1] * inverse_sum[0][half]);
    }
  }
  return out;
}

// Output boxes are 1024-byte aligned, and the 128-byte swizzle XORs a row's index within its 8-row atom into the
// chunk bits (4-6) of its byte offset, which neither the box, the row's other bits nor the lane's 4-byte column
// touch. So one offset per thread from the shared-memory base, computed once (output_thread_offset), XORed with
// each chunk's constant addresses every store of the consumer's first box; the other boxes and the second row
// half are constant offsets from it. Held per chunk, the addresses were 16 registers through the whole kernel;
// stored through asm rather than C++ stores, the 192-row d = 64 tile lost 4 % (H100, same call).
inline constexpr int kOutputChunkBytes = 16;
inline constexpr int kOutputRowsPerSwizzleAtom = 8;

template <class Shape>
__device__ __forceinline__ std::uint32_t output_thread_offset(const AttentionStorage<Shape>& smem, int consumer) {
  const auto [lane, warp_row] = consumer_thread();
  const std::uint32_t in_box =
      static_cast<std::uint32_t>(warp_row * static_cast<int>(kSwizzle128RowBytes) + (lane % 4) * 4) ^
      static_cast<std::uint32_t>((warp_row % kOutputRowsPerSwizzleAtom) * kOutputChunkBytes);
  return static_cast<std::uint32_t>(smem.output_box(consumer, 0) - smem.base) + in_box;
}

template <class Shape>
__device__ __forceinline__ void store_output(const AttentionStorage<Shape>& smem, const HopperForwardParams& p,
                                             int consumer, std::uint32_t thread_offset, const OutputRows& rows,
                                             const PackedOutput<Shape>& out) {
  constexpr int kChunksPerRow = static_cast<int>(kSwizzle128RowBytes) / kOutputChunkBytes;
  constexpr std::uint32_t kHalfBytes = kOutputRowsPerSwizzleAtom * kSwizzle128RowBytes;
  const int thread = static_cast<int>(threadIdx.x) % kWarpgroupThreads;
  static_assert(Shape::kOutputBuffer, "without an output buffer the consumer writes O itself (write_output)");

  // The previous tile's output copies must have read the buffer before it is written again.
  if (thread == 0) tma_store_wait_read<0>();
  named_barrier_sync(epilogue_barrier(consumer), kWarpgroupThreads);
#pragma unroll
  for (int fragment = 0; fragment < Shape::kHeadDim / 8; ++fragment) {
    const std::uint32_t box_offset =
        static_cast<std::uint32_t>(smem.output_box(consumer, fragment / kChunksPerRow) - smem.output_box(consumer, 0));
    unsigned char* const chunk =
        smem.base +
        ((thread_offset ^ static_cast<std::uint32_t>(fragment % kChunksPerRow * kOutputChunkBytes)) + box_offset);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      *reinterpret_cast<std::uint32_t*>(chunk + half * kHalfBytes) = out.pairs[fragment][half];
    }
  }
  fence_proxy_async_shared();
  named_barrier_sync(epilogue_barrier(consumer), kWarpgroupThreads);
  if (thread == 0) {
    if (rows.any_rows) {
#pragma unroll
      for (int panel = 0; panel < Shape::kPanels; ++panel) {
        tma_store_4d(&p.o_map, smem.output_box(consumer, panel), panel * Shape::kPanelColumns, rows.row_begin,
                     rows.head, rows.batch);
      }
      tma_store_commit_group();
    }
  }
}

// Without an output buffer of its own the consumer writes its rows of O from registers to global memory, so that
// Q's one buffer frees with the tile's last Q K^T and the next tile's Q loads under the last softmax, P V and this
// epilogue. (Through Q's panels and the copy engine, as before, the next Q waited for the output copies to read
// them.) d = 256 against that, H100, same call, 2026-11-27 01:07 UTC: +1.3 to +4.4 % from 1k to 16k but causal at
// 1k (+0.5 %). Lanes 2i and 2i + 1 of a quad swap one value per pair of 8-channel fragments, so that each holds four
// consecutive channels of one of them: a warp's store then fills 32 contiguous bytes of each of its 8 rows (with
// 4-byte stores and no swap, session 10, ptxas spilled 196 bytes and the kernel lost 6-25 %).
template <class Shape>
__device__ __forceinline__ void write_output(const HopperForwardParams& p, const TileWork& work, int consumer,
                                             const device::Accumulator<1, Shape::kHeadDim / 8>& o,
                                             const float (&inverse_sum)[1][2], const float (&lse)[1][2]) {
  using T = typename Shape::Element;
  constexpr int kChannelsPerLane = 4;
  const auto [lane, warp_row] = consumer_thread();
  const int row = work.m0 + consumer * kWgmmaM + warp_row;
  const ForwardParams& a = p.attention;
  write_lse(a, work, row, lane, lse);
  const int odd = lane % 2;  // this lane stores the second fragment of each pair
  const int column = (lane % 4) / 2 * kChannelsPerLane;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row_half = row + 8 * half;
    const bool inside = row_half >= 0 && row_half < work.seq.seqlen_q;
    T* const out = work.seq.query_row<T>(a.out, work.tile.batch, inside ? row_half : 0, work.tile.head);
#pragma unroll
    for (int fragment = 0; fragment < Shape::kHeadDim / 8; fragment += 2) {
      const std::uint32_t first = device::pack_pair<T>(o.c[0][fragment][2 * half] * inverse_sum[0][half],
                                                       o.c[0][fragment][2 * half + 1] * inverse_sum[0][half]);
      const std::uint32_t second = device::pack_pair<T>(o.c[0][fragment + 1][2 * half] * inverse_sum[0][half],
                                                        o.c[0][fragment + 1][2 * half + 1] * inverse_sum[0][half]);
      const std::uint32_t received = __shfl_xor_sync(0xffffffffu, odd ? first : second, 1);
      const uint2 channels = odd ? make_uint2(received, second) : make_uint2(first, received);
      const int channel = (fragment + odd) * 8 + column;
      // Channels past head_dim_v (the kernel's head dimension rounds it up) are not the tensor's; head dims are
      // multiples of 8 (validate_rules.hpp), so a lane's four channels are all inside or all past it.
      if (inside && channel < a.head_dim_v) *reinterpret_cast<uint2*>(out + channel) = channels;
    }
  }
}

}  // namespace flashattn::cuda::hopper
