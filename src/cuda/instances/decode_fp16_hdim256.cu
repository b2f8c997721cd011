// Decoding kernel instance (KV-cache call): fp16, head_dim 256.
#include "cuda/decode/kernel.cuh"

namespace flashattn::cuda {
template void launch_decode<__half, 256, DecodeWidth::kWide>(const DecodeParams&, cudaStream_t);
}
