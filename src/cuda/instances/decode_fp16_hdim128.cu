// Decoding kernel instance (KV-cache call): fp16, head_dim 128.
#include "cuda/decode/kernel.cuh"

namespace flashattn::cuda {
template DecodeKernel decode_instance<__half, 128, DecodeWidth::kWide>();
}
