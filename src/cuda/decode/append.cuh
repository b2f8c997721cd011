// The in-place append of the KV-cache call: new token j of sequence b goes to cache position
// cache_seqlens[b] + j, its key rotated there when a rotary embedding is given. Runs before the attention
// kernel on the same stream, which then reads the new tokens from the cache like any other.
#pragma once

#include <cuda_runtime.h>

#include "cuda/decode/cache.cuh"
#include "cuda/decode/params.hpp"

namespace flashattn::cuda {
namespace device {

inline constexpr int kAppendThreads = 128;

// One block per new token (blockIdx.x) of a sequence (blockIdx.y); its threads run over heads x channels.
template <class T>
__global__ void __launch_bounds__(kAppendThreads) append_kernel(const __grid_constant__ detail::KVCacheProblem p) {
  const int j = blockIdx.x;
  const int b = blockIdx.y;
  const CacheSequence s = CacheSequence::of(p, b);
  const int position = s.cached + j;
  if (position >= s.total) return;  // past the capacity (or no cache row): nothing may be written
  const int head_dim = static_cast<int>(p.head_dim);
  const int head_dim_v = static_cast<int>(p.head_dim_v);
  T* k_cache = static_cast<T*>(p.cache.k.data);
  T* v_cache = static_cast<T*>(p.cache.v.data);
  for (int head = 0; head < p.heads_kv; ++head) {
    const TokenOffsets at = s.locate(p.cache, position, head);
    if (!at.valid) continue;
    const T* k_new = static_cast<const T*>(p.k_new.data) + b * p.k_new.batch_stride + j * p.k_new.token_stride +
                     head * p.k_new.head_stride;
    const T* v_new = static_cast<const T*>(p.v_new.data) + b * p.v_new.batch_stride + j * p.v_new.token_stride +
                     head * p.v_new.head_stride;
    const auto key = [&](int c) { return static_cast<float>(k_new[c]); };
    for (int c = threadIdx.x; c < head_dim; c += kAppendThreads) {
      // Channels outside the rotation are copied bit for bit; rotated ones round once from fp32.
      k_cache[at.k + c] = c < p.rotary.rotary_dim ? T(rotated_channel<T>(p.rotary, position, c, key)) : k_new[c];
    }
    for (int c = threadIdx.x; c < head_dim_v; c += kAppendThreads) v_cache[at.v + c] = v_new[c];
  }
}

}  // namespace device

template <class T>
void launch_append(const detail::KVCacheProblem& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(p.seqlen_new), static_cast<unsigned>(p.batch));
  device::append_kernel<T><<<grid, device::kAppendThreads, 0, stream>>>(p);
}

}  // namespace flashattn::cuda
