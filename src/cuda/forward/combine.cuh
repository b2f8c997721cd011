// Split-KV (flash-decoding): each split of the keys left a normalised partial output O_s and its lse_s;
// the attention over all keys is sum_s exp(lse_s - lse) O_s with lse = log sum_s exp(lse_s). One warp
// per (row, head); lanes run over the splits for the lse and over the channels for the output.
#pragma once

#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>

#include "cuda/device/ptx.cuh"
#include "cuda/params.hpp"
#include "cuda/tiles.hpp"

namespace flashattn::cuda {
namespace device {

inline constexpr int kCombineWarps = 4;
inline constexpr int kCombineThreads = kCombineWarps * kWarpSize;
inline constexpr int kMaxChannelsPerLane = 8;  // head_dim_v <= 256

template <class T>
__global__ void __launch_bounds__(kCombineThreads) combine_kernel(const __grid_constant__ ForwardParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * kCombineWarps + threadIdx.x / kWarpSize;
  // Items enumerate the rows of the lse_partial layout: batched (b, h, t), variable length (h, token).
  const bool varlen = p.cu_seqlens_q != nullptr;
  const std::int64_t rows_per_head = varlen ? p.lse_partial.head_stride : p.seqlen_q;
  if (item >= p.partial_split_stride) return;
  const int head = static_cast<int>((item / rows_per_head) % p.heads_q);
  const std::int64_t t = item % rows_per_head;
  const int batch = varlen ? 0 : static_cast<int>(item / (rows_per_head * p.heads_q));
  if (varlen && t >= p.cu_seqlens_q[p.batch]) return;  // packed tokens past the last sequence: not ours

  float max_lse = -CUDART_INF_F;
  for (int s = lane; s < p.num_splits; s += kWarpSize) {
    max_lse = fmaxf(max_lse, p.lse_partial.data[s * p.partial_split_stride + item]);
  }
  max_lse = warp_all_max(max_lse);
  const float base = max_lse == -CUDART_INF_F ? 0.0f : max_lse;
  float sum = 0.0f;
  for (int s = lane; s < p.num_splits; s += kWarpSize) {
    sum += exp2f((p.lse_partial.data[s * p.partial_split_stride + item] - base) * kLog2e);
  }
  sum = warp_all_sum(sum);
  const float lse = sum > 0.0f ? base + logf(sum) : -CUDART_INF_F;

  float acc[kMaxChannelsPerLane] = {};
  for (int s = 0; s < p.num_splits; ++s) {
    const std::int64_t index = s * p.partial_split_stride + item;
    const float split_lse = p.lse_partial.data[index];
    if (split_lse == -CUDART_INF_F) continue;
    const float weight = exp2f((split_lse - lse) * kLog2e);
    const float* partial = p.out_partial + index * p.head_dim_v;
#pragma unroll
    for (int j = 0; j < kMaxChannelsPerLane / 2; ++j) {
      const int col = 2 * lane + 2 * kWarpSize * j;
      if (col < p.head_dim_v) {
        const float2 value = *reinterpret_cast<const float2*>(partial + col);
        acc[2 * j] += weight * value.x;
        acc[2 * j + 1] += weight * value.y;
      }
    }
  }
  T* out = static_cast<T*>(p.out.data) + batch * p.out.batch_stride + t * p.out.token_stride + head * p.out.head_stride;
#pragma unroll
  for (int j = 0; j < kMaxChannelsPerLane / 2; ++j) {
    const int col = 2 * lane + 2 * kWarpSize * j;
    if (col < p.head_dim_v) {
      *reinterpret_cast<std::uint32_t*>(out + col) = pack_pair<T>(acc[2 * j], acc[2 * j + 1]);
    }
  }
  if (lane == 0) p.lse.data[batch * p.lse.batch_stride + head * p.lse.head_stride + t] = lse;
}

}  // namespace device

template <class T>
void launch_combine(const ForwardParams& p, cudaStream_t stream) {
  const std::int64_t blocks = (p.partial_split_stride + device::kCombineWarps - 1) / device::kCombineWarps;
  device::combine_kernel<T><<<static_cast<unsigned>(blocks), device::kCombineThreads, 0, stream>>>(p);
}

}  // namespace flashattn::cuda
