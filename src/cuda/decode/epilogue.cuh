// The decoding kernel's end: the warps' softmax states (each over its own keys of every tile) merge into
// the block's, and the rows go out: normalised in the output dtype with their lse when the keys are not
// split; else in fp32, to the block's shared memory where the splits run as one cluster and merge there
// (merge_cluster_and_store), or to the split's slot of the workspace for merge.cuh's combine.
#pragma once

#include <math_constants.h>

#include <cstdint>

#include "cuda/decode/cache.cuh"
#include "cuda/decode/mask.cuh"
#include "cuda/decode/output.cuh"
#include "cuda/decode/params.hpp"
#include "cuda/device/ptx.cuh"
#include "cuda/hopper/cluster.cuh"
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

// A block's merged rows where the splits merge in their cluster: normalised fp32 outputs (kDecodeRows,
// kHeadDim) and natural-log lses (kDecodeRows), in the block's shared memory for the cluster's blocks to read.
template <int kHeadDim>
struct BlockState {
  static constexpr int kFloats = kDecodeRows * (kHeadDim + 1);
  float* out;
  float* lse;

  static __device__ __forceinline__ BlockState at(float* base) { return {base, base + kDecodeRows * kHeadDim}; }
  __device__ __forceinline__ int offset(int row, int channel) const { return row * kHeadDim + channel; }
};

// row_max / row_sum: (warps, kDecodeRows), log2 domain; partial: (warps, kDecodeRows, kPartialRowStride)
// unnormalised. `state` is used where the splits merge in their cluster.
template <class T, int kHeadDim, int kWarps, int kThreads>
__device__ __forceinline__ void merge_warps_and_store(const DecodeParams& params, const CacheSequence& s,
                                                      const DecodeRows& rows, int row0, int kv_head, int split,
                                                      const float* row_max, const float* row_sum, const float* partial,
                                                      BlockState<kHeadDim> state) {
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
      *reinterpret_cast<std::uint32_t*>(output_row<T>(p, s.batch, token, head) + c) = pack_pair<T>(value.x, value.y);
      if (c == 0) *lse_entry(p, s.batch, token, head) = lse;
    } else if (params.cluster_merge) {
      *reinterpret_cast<float2*>(state.out + state.offset(r, c)) = value;
      if (c == 0) state.lse[r] = lse;
    } else {
      const std::int64_t partial_row =
          split * params.partial_rows + (static_cast<std::int64_t>(s.batch) * p.heads_q + head) * p.seqlen_q + token;
      *reinterpret_cast<float2*>(params.out_partial + partial_row * p.head_dim_v + c) = value;
      if (c == 0) params.lse_partial[partial_row] = lse;
    }
  }
}

// The splits of one block's rows run as one cluster of num_splits blocks (kvcache.cpp), each block's state
// in its shared memory (merge_warps_and_store) behind a cluster barrier. Block `rank` merges its share of the
// rows' channels over every block's state, as merge.cuh's combine does over the workspace:
//   lse = log sum_k exp(lse_k),  out = sum_k exp(lse_k - lse) out_k.
// All blocks' loads of a row are in flight together: an empty split's state is a zero output with weight 0.
template <class T, int kHeadDim, int kThreads>
__device__ __forceinline__ void merge_cluster_and_store(const DecodeParams& params, const CacheSequence& s,
                                                        const DecodeRows& rows, int row0, int kv_head,
                                                        BlockState<kHeadDim> state) {
  const detail::KVCacheProblem& p = params.problem;
  constexpr int kQuads = kHeadDim / 4;  // head_dim_v is a multiple of 8 (validation)
  const int blocks = params.num_splits;
  const int rank = static_cast<int>(hopper::cluster_rank());
  for (int index = rank * kThreads + threadIdx.x; index < kDecodeRows * kQuads; index += blocks * kThreads) {
    const int r = index / kQuads;
    const int c = 4 * (index % kQuads);
    const int row = row0 + r;
    if (row >= rows.count || c >= p.head_dim_v) continue;
    float lses[kMaxClusterSplits];
    float4 parts[kMaxClusterSplits];
    float max_lse = -CUDART_INF_F;
#pragma unroll
    for (int k = 0; k < kMaxClusterSplits; ++k) {
      lses[k] = -CUDART_INF_F;
      if (k < blocks) {
        lses[k] = hopper::load_cluster_float(hopper::cluster_address(state.lse + r, k));
        parts[k] = hopper::load_cluster_float4(hopper::cluster_address(state.out + state.offset(r, c), k));
      }
      max_lse = fmaxf(max_lse, lses[k]);
    }
    float total = 0.0f;
    float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int k = 0; k < kMaxClusterSplits; ++k) {
      if (lses[k] == -CUDART_INF_F) continue;  // no keys in that split (or no such split)
      const float weight = expf(lses[k] - max_lse);
      total += weight;
      sum.x += weight * parts[k].x;
      sum.y += weight * parts[k].y;
      sum.z += weight * parts[k].z;
      sum.w += weight * parts[k].w;
    }
    const float scale = total > 0.0f ? 1.0f / total : 0.0f;
    const int token = rows.token(row);
    const int head = rows.head(kv_head, row);
    *reinterpret_cast<uint2*>(output_row<T>(p, s.batch, token, head) + c) =
        make_uint2(pack_pair<T>(sum.x * scale, sum.y * scale), pack_pair<T>(sum.z * scale, sum.w * scale));
    if (c == 0) *lse_entry(p, s.batch, token, head) = total > 0.0f ? max_lse + logf(total) : -CUDART_INF_F;
  }
}

}  // namespace flashattn::cuda::device
