// Decoding kernel instance (KV-cache call): bf16, head_dim 128, the medium tile (paged caches in a few waves of units,
// tiles.hpp).
#include "cuda/decode/kernel.cuh"

namespace flashattn::cuda {
template DecodeKernel decode_instance<__nv_bfloat16, 128, DecodeWidth::kMedium>();
}
