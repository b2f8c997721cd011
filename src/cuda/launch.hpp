// The kernel launchers, one explicit instantiation per compiled configuration (instances/*.cu, named by
// their configuration). Declared here so that the host-side dispatch (backend.cpp, compiled by the C++
// compiler) calls them without seeing a kernel.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/params.hpp"

namespace flashattn::cuda {

template <class T, int kHeadDim>
void launch_forward(const ForwardParams& p, cudaStream_t stream);
template <class T>
void launch_combine(const ForwardParams& p, cudaStream_t stream);

template <class T>
void launch_backward_prepare(const BackwardParams& p, cudaStream_t stream);
template <class T, int kHeadDim>
void launch_backward(const BackwardParams& p, bool accumulate_dq, cudaStream_t stream);
template <class T, int kHeadDim>
void launch_backward_dq(const BackwardParams& p, cudaStream_t stream);
template <class T>
void launch_backward_dq_store(const BackwardParams& p, cudaStream_t stream);

namespace hopper {
// The Hopper forward (hopper/attention/kernel.cuh), built only with the sm_90a target (FLASHATTN_CUDA_HOPPER);
// kLongSequences selects the long-sequence tile where tiles.hpp has one (hopper_long_tile).
template <class T, int kHeadDim, bool kLongSequences>
void launch_hopper_forward(const ForwardParams& p, int multiprocessors, cudaStream_t stream);
}  // namespace hopper

}  // namespace flashattn::cuda
