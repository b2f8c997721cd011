// The CUDA backend: the portable (sm_80+) FlashAttention-2-class kernels. Entry points take a validated
// Problem whose tensors live on one CUDA device and launch on problem.stream; nothing synchronises.
#pragma once

#include "problem.hpp"

namespace flashattn::cuda {

void forward(const detail::Problem& problem);
void backward(const detail::Problem& problem);

// The head dimensions this build has kernels for (FLASHATTN_HEAD_DIMS), and the GPU architectures it was
// compiled for (FLASHATTN_CUDA_ARCHS), as text for `flashattn info`.
const char* compiled_head_dims();
const char* compiled_archs();

}  // namespace flashattn::cuda
