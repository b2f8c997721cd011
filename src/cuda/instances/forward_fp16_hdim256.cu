// Forward kernel instance: fp16, head_dim 256.
#include "cuda/forward/kernel.cuh"

template void flashattn::cuda::launch_forward<__half, 256>(const ForwardParams&, cudaStream_t);
