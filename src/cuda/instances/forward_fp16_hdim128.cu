// Forward kernel instance: fp16, head_dim 128.
#include "cuda/forward/kernel.cuh"

template void flashattn::cuda::launch_forward<__half, 128>(const ForwardParams&, cudaStream_t);
