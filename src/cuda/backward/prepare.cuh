// The backward's row passes around the main kernel:
//   before: per query row, rowsum(dO * O) and the lse in log2 units (+inf for rows that saw no key, so
//           that the recomputed P = exp2(x - lse) is 0 there rather than NaN);
//   after:  dQ = scale * (the fp32 sums the main kernel's atomics left) in the output's dtype.
// One warp per (row, head); rows enumerate the RowBuffer layout (batched (b, h, t); variable length (h, token)).
#pragma once

#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>

#include "cuda/device/ptx.cuh"
#include "cuda/params.hpp"
#include "cuda/tiles.hpp"

namespace flashattn::cuda {
namespace device {

inline constexpr int kRowPassWarps = 4;
inline constexpr int kRowPassThreads = kRowPassWarps * kWarpSize;
inline constexpr int kMaxPairsPerLane = 4;  // 2 * 32 * 4 = 256 channels

// The (batch, token, head) of item `item`, or false for packed tokens past the last sequence.
__device__ __forceinline__ bool row_of_item(const BackwardParams& p, std::int64_t item, int& batch, std::int64_t& t,
                                            int& head) {
  const std::int64_t rows = p.rows_total;
  head = static_cast<int>((item / rows) % p.heads_q);
  t = item % rows;
  batch = static_cast<int>(item / (rows * p.heads_q));
  return p.cu_seqlens_q == nullptr || t < p.cu_seqlens_q[p.batch];
}

template <class T>
__device__ __forceinline__ float2 load_pair(const T* address) {
  const typename ElementTraits<T>::Pair pair = *reinterpret_cast<const typename ElementTraits<T>::Pair*>(address);
  return make_float2(static_cast<float>(pair.x), static_cast<float>(pair.y));
}

template <class T>
__global__ void __launch_bounds__(kRowPassThreads) backward_prepare_kernel(const __grid_constant__ BackwardParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * kRowPassWarps + threadIdx.x / kWarpSize;
  if (item >= p.rows_total * p.heads_q * (p.cu_seqlens_q == nullptr ? p.batch : 1)) return;
  int batch = 0;
  int head = 0;
  std::int64_t t = 0;
  if (!row_of_item(p, item, batch, t, head)) return;
  const T* out = static_cast<const T*>(p.out.data) + batch * p.out.batch_stride + t * p.out.token_stride +
                 head * p.out.head_stride;
  const T* dout = static_cast<const T*>(p.dout.data) + batch * p.dout.batch_stride + t * p.dout.token_stride +
                  head * p.dout.head_stride;
  float dot = 0.0f;
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j) {
    const int col = 2 * lane + 2 * kWarpSize * j;
    if (col < p.head_dim_v) {
      const float2 o = load_pair(out + col);
      const float2 g = load_pair(dout + col);
      dot += o.x * g.x + o.y * g.y;
    }
  }
  dot = warp_all_sum(dot);
  if (lane == 0) {
    const float lse = p.lse.data[batch * p.lse.batch_stride + head * p.lse.head_stride + t];
    p.dot_do_o.data[item] = dot;
    p.lse_log2.data[item] = lse == -CUDART_INF_F ? CUDART_INF_F : lse * kLog2e;
  }
}

template <class T>
__global__ void __launch_bounds__(kRowPassThreads) backward_dq_store_kernel(const __grid_constant__ BackwardParams p) {
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * kRowPassWarps + threadIdx.x / kWarpSize;
  if (item >= p.rows_total * p.heads_q * (p.cu_seqlens_q == nullptr ? p.batch : 1)) return;
  int batch = 0;
  int head = 0;
  std::int64_t t = 0;
  if (!row_of_item(p, item, batch, t, head)) return;
  T* dq = static_cast<T*>(p.dq.data) + batch * p.dq.batch_stride + t * p.dq.token_stride + head * p.dq.head_stride;
  const float* sums = p.dq_accum + dq_sum_index(item, 0, p.dq_accum_stride);
#pragma unroll
  for (int j = 0; j < kMaxPairsPerLane; ++j) {
    const int col = 2 * lane + 2 * kWarpSize * j;
    if (col < p.head_dim) {
      const float2 sum = *reinterpret_cast<const float2*>(sums + dq_sum_index(0, col, p.dq_accum_stride));
      *reinterpret_cast<std::uint32_t*>(dq + col) = pack_pair<T>(sum.x * p.scale, sum.y * p.scale);
    }
  }
}

}  // namespace device

inline unsigned row_pass_blocks(const BackwardParams& p) {
  const std::int64_t items = p.rows_total * p.heads_q * (p.cu_seqlens_q == nullptr ? p.batch : 1);
  return static_cast<unsigned>((items + device::kRowPassWarps - 1) / device::kRowPassWarps);
}

template <class T>
void launch_backward_prepare(const BackwardParams& p, cudaStream_t stream) {
  device::backward_prepare_kernel<T><<<row_pass_blocks(p), device::kRowPassThreads, 0, stream>>>(p);
}

template <class T>
void launch_backward_dq_store(const BackwardParams& p, cudaStream_t stream) {
  device::backward_dq_store_kernel<T><<<row_pass_blocks(p), device::kRowPassThreads, 0, stream>>>(p);
}

}  // namespace flashattn::cuda
