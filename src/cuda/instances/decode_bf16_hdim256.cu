// Decoding kernel instance (KV-cache call): bf16, head_dim 256.
#include "cuda/decode/kernel.cuh"

namespace flashattn::cuda {
template DecodeKernel decode_instance<__nv_bfloat16, 256, DecodeWidth::kWide>();
}
