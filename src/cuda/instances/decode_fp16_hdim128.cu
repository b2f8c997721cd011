// Decoding kernel instance (KV-cache call): fp16, head_dim 128.
#include "cuda/decode/kernel.cuh"

template void flashattn::cuda::launch_decode<__half, 128>(const DecodeParams&, cudaStream_t);
