// Decoding kernel instance (KV-cache call): fp16, head_dim 64.
#include "cuda/decode/kernel.cuh"

namespace flashattn::cuda {
template void launch_decode<__half, 64, DecodeWidth::kWide>(const DecodeParams&, cudaStream_t);
}
