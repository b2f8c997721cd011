// Forward kernel instance: bf16, head_dim 256.
#include "cuda/forward/kernel.cuh"

template void flashattn::cuda::launch_forward<__nv_bfloat16, 256>(const ForwardParams&, cudaStream_t);
