// Hopper forward kernel instance (sm_90a): bf16, head_dim 128.
#include "cuda/hopper/attention/kernel.cuh"

template void flashattn::cuda::hopper::launch_hopper_forward<__nv_bfloat16, 128, false>(const ForwardParams&, int,
                                                                                        cudaStream_t);
