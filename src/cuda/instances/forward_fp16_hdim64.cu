// Forward kernel instance: fp16, head_dim 64.
#include "cuda/forward/kernel.cuh"

template void flashattn::cuda::launch_forward<__half, 64>(const ForwardParams&, cudaStream_t);
