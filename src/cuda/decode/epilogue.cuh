// The decoding kernel's end: the warps' softmax states (each over its own keys of every tile) merge into
// the block's, and the rows go out: normalised in the output dtype with their lse when the keys are not
// split, else in fp32 to the split's slot of the workspace for merge.cuh's combine.
#pragma once

#include <math_constants.h>

#include <cstdint>

#include "cuda/decode/cache.cuh"
#include "cuda/decode/mask.cuh"
#include "cuda/decode/params.hpp"
#include "cuda/device/ptx.cuh"
#include "cuda/tiles.hpp"

namespace flashattn::cuda::device {

// Floats from one row of a warp's partial output to the next in shared memory. A warp writes its accumulator
// eight rows at a time (lanes 4i .. 4i + 3 hold row i's 8 columns of a column block); rows kHeadDim floats
// apart would all start on bank 0, an eight-way conflict. Eight floats more move each row by eight banks:
// four rows fill the 32 banks, so a warp's 256 bytes take the two passes they need at the least (H100: the
// share 1.05 -> 0.39 us at every block's end, 64 x 4k decoding 363.9 -> 361.4 us; docs/PERFORMANCE.md).
template <int kHeadDim>
inline constexpr int kPartialRowStride = kHeadDim + 8;

// Where channel `channel` of row `row` of warp `warp`'s partial output lies among the partial outputs.
template <int kHeadDim>
__device__ __forceinline__ int partial_offset(int warp, int row, int channel) {
  return (warp * kDecodeRows + row) * kPartialRowStride<kHeadDim> + channel;
}

// row_max / row_sum: (warps, kDecodeRows), log2 domain; partial: (warps, kDecodeRows, kPartialRowStride)
// unnormalised.
template <class T, int kHeadDim, int kWarps, int kThreads>
__device__ __forceinline__ void merge_warps_and_store(const DecodeParams& params, const CacheSequence& s,
                                                      const DecodeRows& rows, int row0, int kv_head, int split,
                                                      const float* row_max, const float* row_sum,
                                                      const float* partial) {
  const detail::KVCacheProblem& p = params.problem;
  constexpr int kPairs = kHeadDim / 2;
  for (int index = threadIdx.x; index < kDecodeRows * kPairs; index += kThreads) {
    const int r = index / kPairs;
    const int c = 2 * (index % kPairs);
    const int row = row0 + r;
    if (row >= rows.count || c >= p.head_dim_v) continue;
    float block_max = -CUDART_INF_F;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) block_max = fmaxf(block_max, row_max[w * kDecodeRows + r]);
    float total = 0.0f;
    float2 value = make_float2(0.0f, 0.0f);
    if (block_max != -CUDART_INF_F) {
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float weight = fast_exp2(row_max[w * kDecodeRows + r] - block_max);
        const float2 part = *reinterpret_cast<const float2*>(partial + partial_offset<kHeadDim>(w, r, c));
        total += weight * row_sum[w * kDecodeRows + r];
        value.x += weight * part.x;
        value.y += weight * part.y;
      }
      value.x /= total;
      value.y /= total;
    }
    // Natural-log lse; a row that saw no key has -inf and a zero output.
    const float lse = block_max == -CUDART_INF_F ? -CUDART_INF_F : (block_max + __log2f(total)) * kLn2;
    const int token = rows.token(row);
    const int head = rows.head(kv_head, row);
    if (params.num_splits == 1) {
      T* out = static_cast<T*>(p.out.data) + s.batch * p.out.batch_stride + token * p.out.token_stride +
               head * p.out.head_stride;
      *reinterpret_cast<std::uint32_t*>(out + c) = pack_pair<T>(value.x, value.y);
      if (c == 0) p.lse.data[s.batch * p.lse.batch_stride + head * p.lse.head_stride + token] = lse;
    } else {
      const std::int64_t partial_row =
          split * params.partial_rows + (static_cast<std::int64_t>(s.batch) * p.heads_q + head) * p.seqlen_q + token;
      *reinterpret_cast<float2*>(params.out_partial + partial_row * p.head_dim_v + c) = value;
      if (c == 0) params.lse_partial[partial_row] = lse;
    }
  }
}

}  // namespace flashattn::cuda::device
