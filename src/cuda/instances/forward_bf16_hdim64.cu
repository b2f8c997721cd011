// Forward kernel instance: bf16, head_dim 64.
#include "cuda/forward/kernel.cuh"

template void flashattn::cuda::launch_forward<__nv_bfloat16, 64>(const ForwardParams&, cudaStream_t);
