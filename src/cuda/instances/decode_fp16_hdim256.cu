// Decoding kernel instance (KV-cache call): fp16, head_dim 256.
#include "cuda/decode/kernel.cuh"

template void flashattn::cuda::launch_decode<__half, 256>(const DecodeParams&, cudaStream_t);
