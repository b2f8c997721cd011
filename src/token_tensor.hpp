// Strided token tensors as backends index them. Kept free of other headers so that the CUDA kernels,
// compiled as C++17 by nvcc, can include it.
#pragma once

#include <cstdint>

namespace flashattn::detail {

// A (batch, token, head, channel) tensor; the channel stride is 1. Element (b, t, h, c) of batch b sits at
// data + b * batch_stride + (token_begin(b) + t) * token_stride + h * head_stride + c, where token_begin is
// 0 for batched layouts and cu_seqlens[b] for variable-length ones (then batch_stride is 0).
struct TokenTensor {
  void* data = nullptr;
  std::int64_t batch_stride = 0;
  std::int64_t token_stride = 0;
  std::int64_t head_stride = 0;
};

// The fp32 log-sum-exp: element (b, h, t) at data + b * batch_stride + h * head_stride + token_begin(b) + t.
struct LseTensor {
  float* data = nullptr;
  std::int64_t batch_stride = 0;
  std::int64_t head_stride = 0;
};

}  // namespace flashattn::detail
