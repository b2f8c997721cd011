// Decoding kernel instance (KV-cache call): fp16, head_dim 64.
#include "cuda/decode/kernel.cuh"

namespace flashattn::cuda {
template DecodeKernel decode_instance<__half, 64, DecodeWidth::kWide>();
}
