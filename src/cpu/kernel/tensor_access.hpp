// Typed addressing of the Problem's tensors for one sequence and head.
#pragma once

#include <cstdint>

#include "problem.hpp"

namespace flashattn::cpu {
namespace {

// Rows (tokens) of one head of one sequence: row t at base + t * token_stride.
template <typename T>
struct HeadRows {
  T* base;
  std::int64_t token_stride;
  T* row(std::int64_t t) const { return base + t * token_stride; }
};

template <typename T>
HeadRows<T> head_rows(const detail::TokenTensor& tensor, std::int64_t batch, std::int64_t token_begin,
                      std::int64_t head) {
  T* base = static_cast<T*>(tensor.data) + batch * tensor.batch_stride + token_begin * tensor.token_stride +
            head * tensor.head_stride;
  return {base, tensor.token_stride};
}

inline float* lse_row(const detail::Problem& p, std::int64_t batch, std::int64_t q_begin, std::int64_t head) {
  return p.lse.data + batch * p.lse.batch_stride + head * p.lse.head_stride + q_begin;
}

}  // namespace
}  // namespace flashattn::cpu
