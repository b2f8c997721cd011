// Where the KV-cache call's results go: query row (token, head) of a batch's sequence in out and lse. The decoding
// kernel's epilogue (unsplit rows, and the cluster merge) and the split combine (merge.cuh) store through these.
#pragma once

#include "kvcache_problem.hpp"

namespace flashattn::cuda::device {

template <class T>
__device__ __forceinline__ T* output_row(const detail::KVCacheProblem& p, int batch, int token, int head) {
  return static_cast<T*>(p.out.data) + batch * p.out.batch_stride + token * p.out.token_stride +
         head * p.out.head_stride;
}

__device__ __forceinline__ float* lse_entry(const detail::KVCacheProblem& p, int batch, int token, int head) {
  return p.lse.data + batch * p.lse.batch_stride + head * p.lse.head_stride + token;
}

}  // namespace flashattn::cuda::device
