// Hopper forward kernel instance (sm_90a): fp16, head_dim 128.
#include "cuda/hopper/attention/kernel.cuh"

template void flashattn::cuda::hopper::launch_hopper_forward<__half, 128, false>(const ForwardParams&, int,
                                                                                 cudaStream_t);
