// The decoding kernels' launchers, instantiated in instances/decode_*.cu; declared here so that the host
// side (kvcache.cpp, compiled by the C++ compiler) calls them without seeing a kernel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/decode/params.hpp"
#include "cuda/tiles.hpp"
#include "kvcache_problem.hpp"

namespace flashattn::cuda {

template <class T>
void launch_append(const detail::KVCacheProblem& p, cudaStream_t stream);
// One decoding kernel instance (instances/decode_*.cu): its launcher and what a block of it takes, which the
// planner (kvcache.cpp) needs for the clusters the device holds at once.
struct DecodeKernel {
  void (*launch)(const DecodeParams& params, cudaStream_t stream);
  const void* kernel;
  int threads;
  int shared_bytes;
};
template <class T, int kHeadDim, DecodeWidth kWidth>
DecodeKernel decode_instance();
template <class T>
void launch_combine_splits(const DecodeParams& params, cudaStream_t stream);
void launch_merge_states(const detail::MergeProblem& p, cudaStream_t stream);

}  // namespace flashattn::cuda
