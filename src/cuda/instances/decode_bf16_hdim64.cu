// Decoding kernel instance (KV-cache call): bf16, head_dim 64.
#include "cuda/decode/kernel.cuh"

template void flashattn::cuda::launch_decode<__nv_bfloat16, 64>(const DecodeParams&, cudaStream_t);
