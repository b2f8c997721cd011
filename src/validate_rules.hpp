// The rules that every public call's validation shares (validate.cpp, validate_kvcache.cpp). Each check
// throws InvalidArgument naming the argument and the rule it broke.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "flashattn/options.hpp"
#include "flashattn/tensor.hpp"
#include "token_tensor.hpp"

namespace flashattn::detail {

inline constexpr std::int64_t kHeadDimMultiple = 8;
inline constexpr std::int64_t kMaxHeadDim = 256;

std::string str(std::int64_t value);
[[noreturn]] void fail(const std::string& argument, const std::string& rule);

// Rank, non-negative extents, non-null data, non-negative strides, a contiguous last dimension.
void check_layout(const char* name, const TensorView& t, int rank, const char* layout);
// Outputs must not map two elements onto one address.
void check_no_broadcast(const char* name, const TensorView& t);
void check_shape(const char* name, const TensorView& t, std::initializer_list<std::int64_t> expected,
                 const char* layout);
void check_same_dtype(const char* name, const TensorView& t, const TensorView& q);
void check_same_device(const char* name, const TensorView& t, const Device& device);
void check_head_dim(const char* name, const char* what, std::int64_t head_dim);
// fp32, fp16 or bf16; fp8 is NotSupported.
void check_attention_dtype(const TensorView& q);
void check_options(const AttentionOptions& options);
// int32, rank 1, `entries` long.
void check_index_tensor(const char* name, const TensorView& t, std::int64_t entries, const char* layout);

struct AlibiSlopes {
  const float* data = nullptr;
  std::int64_t batch_stride = 0;  // 0 when the slopes are per head only
};
AlibiSlopes check_alibi(const TensorView& slopes, const Device& device, std::int64_t batch, std::int64_t heads_q);

// A (batch, token, head, channel) view, or (token, head, channel) packed when `varlen`.
TokenTensor token_tensor(const TensorView& t, bool varlen);
// The backend option against the tensors' device, and CUDA tensors in a build without CUDA; `tensor` names
// the argument whose device decides (q, or out for a merge).
void select_backend(const AttentionOptions& options, const Device& device, const char* tensor = "q");
// The options of an attention call on q's device: check_options, the ALiBi slopes (none when not given) and
// select_backend, in that order.
AlibiSlopes check_call_options(const AttentionOptions& options, const Device& device, std::int64_t batch,
                               std::int64_t heads_q);

}  // namespace flashattn::detail
