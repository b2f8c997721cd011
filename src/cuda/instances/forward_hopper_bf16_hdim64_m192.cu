// Hopper forward kernel instance (sm_90a): bf16, head_dim 64, the long-sequence tile (192 query rows).
#include "cuda/hopper/attention/kernel.cuh"

template void flashattn::cuda::hopper::launch_hopper_forward<__nv_bfloat16, 64, true>(const ForwardParams&, int,
                                                                                      cudaStream_t);
