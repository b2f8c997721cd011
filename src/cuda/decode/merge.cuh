// Attention states over disjoint key sets merged into the state over their union:
//   lse = log sum_s exp(lse_s),  out = sum_s exp(lse_s - lse) out_s.
// Two kernels compute it: the split-KV combine of the decoding kernel (num_splits fp32 states from the
// workspace into out / lse) and merge_attention_states (two caller states of any dtype). One warp per row;
// lanes run over the channels.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstdint>
#include <limits>

#include "cuda/decode/output.cuh"
#include "cuda/decode/params.hpp"
#include "cuda/device/ptx.cuh"
#include "cuda/tiles.hpp"
#include "kvcache_problem.hpp"

namespace flashattn::cuda {
namespace device {

inline constexpr int kMergeWarps = 4;
inline constexpr int kMergeThreads = kMergeWarps * kWarpSize;
// The combine's channels per lane: one 16-byte load of each split's fp32 row (head_dim_v is a multiple of 8).
inline constexpr int kCombineChannels = 4;

// The running merge of states: add() each (lse, out pair) in any order, then out() and lse().
struct StateMerge {
  float max_lse = -std::numeric_limits<float>::infinity();
  float total = 0.0f;  // sum of exp(lse_s - max_lse)
  float2 value = make_float2(0.0f, 0.0f);

  __device__ __forceinline__ void add(float lse, float2 out) {
    if (lse == -CUDART_INF_F) return;  // no keys in that set
    if (lse > max_lse) {
      const float rescale = max_lse == -CUDART_INF_F ? 0.0f : expf(max_lse - lse);
      total *= rescale;
      value.x *= rescale;
      value.y *= rescale;
      max_lse = lse;
    }
    const float weight = expf(lse - max_lse);
    total += weight;
    value.x += weight * out.x;
    value.y += weight * out.y;
  }
  __device__ __forceinline__ float2 out() const {
    return total > 0.0f ? make_float2(value.x / total, value.y / total) : make_float2(0.0f, 0.0f);
  }
  __device__ __forceinline__ float lse() const { return total > 0.0f ? max_lse + logf(total) : -CUDART_INF_F; }
};

__device__ __forceinline__ float2 load_pair(const void* row, detail::KVDType dtype, int c) {
  switch (dtype) {
    case detail::KVDType::kFloat16:
      return __half22float2(*reinterpret_cast<const __half2*>(static_cast<const __half*>(row) + c));
    case detail::KVDType::kBFloat16:
      return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(static_cast<const __nv_bfloat16*>(row) + c));
    default:
      return *reinterpret_cast<const float2*>(static_cast<const float*>(row) + c);
  }
}

__device__ __forceinline__ void store_pair(void* row, detail::KVDType dtype, int c, float2 value) {
  switch (dtype) {
    case detail::KVDType::kFloat16:
      *reinterpret_cast<__half2*>(static_cast<__half*>(row) + c) = __float22half2_rn(value);
      return;
    case detail::KVDType::kBFloat16:
      *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(row) + c) = __float22bfloat162_rn(value);
      return;
    default:
      *reinterpret_cast<float2*>(static_cast<float*>(row) + c) = value;
  }
}

// Workspace rows are (batch, head_q, token); the output's are placed through its strides. One warp per row, in
// two passes. The lanes read the splits' lses together and reduce them to the row's lse, leaving each split's
// weight exp(lse_s - lse) in shared memory; then each lane sums its four channels over the splits, whose loads
// depend on nothing before them. The one-pass StateMerge form chained every split's loads behind the previous
// split's rescale: about one L2 round trip per split and channel pair (H100, 2026-11-26: PERFORMANCE.md).
template <class T>
__global__ void __launch_bounds__(kMergeThreads) combine_splits_kernel(const __grid_constant__ DecodeParams params) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // Launched early (programmatic dependent launch, launch_combine_splits): wait for the decoding grid here.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
  __shared__ float split_weights[kMergeWarps][kMaxDecodeSplits];
  const detail::KVCacheProblem& p = params.problem;
  const int warp = threadIdx.x / kWarpSize;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kMergeWarps + warp;
  if (row >= params.partial_rows) return;
  const int lane = threadIdx.x % kWarpSize;
  const int splits = params.num_splits;
  float* weights = split_weights[warp];

  float max_lse = -CUDART_INF_F;
  for (int split = lane; split < splits; split += kWarpSize) {
    max_lse = fmaxf(max_lse, params.lse_partial[split * params.partial_rows + row]);
  }
  max_lse = warp_all_max(max_lse);
  float total = 0.0f;
  for (int split = lane; split < splits; split += kWarpSize) {
    const float lse = params.lse_partial[split * params.partial_rows + row];
    // A split without keys (lse -inf) weighs 0; so do all when the row saw no key at all.
    const float weight = lse == -CUDART_INF_F ? 0.0f : expf(lse - max_lse);
    weights[split] = weight;
    total += weight;
  }
  total = warp_all_sum(total);
  __syncwarp();
  const float scale = total > 0.0f ? 1.0f / total : 0.0f;

  const int token = static_cast<int>(row % p.seqlen_q);
  const int head = static_cast<int>((row / p.seqlen_q) % p.heads_q);
  const int b = static_cast<int>(row / (p.seqlen_q * p.heads_q));
  T* out = output_row<T>(p, b, token, head);
  for (int c = kCombineChannels * lane; c < p.head_dim_v; c += kCombineChannels * kWarpSize) {
    float4 sum = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
    for (int split = 0; split < splits; ++split) {
      const float weight = weights[split];
      const float4 part =
          *reinterpret_cast<const float4*>(params.out_partial + (split * params.partial_rows + row) * p.head_dim_v + c);
      sum.x += weight * part.x;
      sum.y += weight * part.y;
      sum.z += weight * part.z;
      sum.w += weight * part.w;
    }
    const uint2 packed =
        make_uint2(pack_pair<T>(sum.x * scale, sum.y * scale), pack_pair<T>(sum.z * scale, sum.w * scale));
    *reinterpret_cast<uint2*>(out + c) = packed;
  }
  if (lane == 0) {
    *lse_entry(p, b, token, head) = total > 0.0f ? max_lse + logf(total) : -CUDART_INF_F;
  }
}

// Rows are (batch, token, head) of the outputs. Each lane reads its channels of both states before it
// writes, so out may be out_a or out_b; the lse is written by lane 0 after the warp has read both lses.
__global__ void __launch_bounds__(kMergeThreads) merge_states_kernel(const __grid_constant__ detail::MergeProblem p) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kMergeWarps + threadIdx.x / kWarpSize;
  if (row >= p.batch * p.seqlen * p.heads) return;
  const int lane = threadIdx.x % kWarpSize;
  const std::int64_t head = row % p.heads;
  const std::int64_t token = (row / p.heads) % p.seqlen;
  const std::int64_t b = row / (p.heads * p.seqlen);
  const auto at = [&](const detail::TokenTensor& t, detail::KVDType dtype) {
    const std::int64_t element = b * t.batch_stride + token * t.token_stride + head * t.head_stride;
    const std::size_t bytes = dtype == detail::KVDType::kFloat32 ? sizeof(float) : sizeof(__half);
    return static_cast<char*>(t.data) + element * static_cast<std::int64_t>(bytes);
  };
  const auto lse_at = [&](const detail::LseTensor& t) {
    return t.data + b * t.batch_stride + head * t.head_stride + token;
  };
  const float lse_a = *lse_at(p.lse_a);
  const float lse_b = *lse_at(p.lse_b);
  const char* a = at(p.out_a, p.dtype_a);
  const char* b_row = at(p.out_b, p.dtype_b);
  char* out = at(p.out, p.dtype_out);
  for (int c = 2 * lane; c < p.head_dim; c += 2 * kWarpSize) {
    StateMerge merge;
    merge.add(lse_a, load_pair(a, p.dtype_a, c));
    merge.add(lse_b, load_pair(b_row, p.dtype_b, c));
    store_pair(out, p.dtype_out, c, merge.out());
  }
  __syncwarp();
  if (lane == 0) {
    StateMerge lses;
    lses.add(lse_a, make_float2(0.0f, 0.0f));
    lses.add(lse_b, make_float2(0.0f, 0.0f));
    *lse_at(p.lse) = lses.lse();
  }
}

}  // namespace device

// A programmatic dependent launch: the combine's blocks are set up while the decoding grid's last blocks run
// and wait for its results in griddepcontrol.wait, instead of the launch following the grid's end.
template <class T>
void launch_combine_splits(const DecodeParams& params, cudaStream_t stream) {
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>((params.partial_rows + device::kMergeWarps - 1) / device::kMergeWarps));
  config.blockDim = dim3(device::kMergeThreads);
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = 1;
  cudaLaunchKernelEx(&config, device::combine_splits_kernel<T>, params);
}

}  // namespace flashattn::cuda
