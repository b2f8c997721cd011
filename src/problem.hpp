// The validated, normalised form of an attention call that every backend consumes. Built only by
// validate.cpp: once a Problem exists, every index a backend derives from it stays inside the tensors.
#pragma once

#include <cstdint>

#include "flashattn/options.hpp"
#include "flashattn/tensor.hpp"
#include "token_tensor.hpp"

namespace flashattn::detail {

// One sequence of the batch: where its tokens start and how many there are.
struct SequenceSpan {
  std::int64_t q_begin = 0;  // token offset of the first query (0 for batched layouts)
  std::int64_t seqlen_q = 0;
  std::int64_t k_begin = 0;
  std::int64_t seqlen_k = 0;  // keys used (seqused_k when given)
};

struct Problem {
  DType dtype = DType::kFloat32;
  Device device{};
  std::int64_t batch = 0;
  std::int64_t heads_q = 0;
  std::int64_t heads_kv = 0;
  std::int64_t head_dim = 0;
  std::int64_t head_dim_v = 0;
  // Batched: the sequence lengths. Variable length: the caller's max_seqlen values.
  std::int64_t seqlen_q = 0;
  std::int64_t seqlen_k = 0;
  std::int64_t tokens_q = 0;  // variable length: q's packed token count (total_q)

  bool varlen = false;
  const std::int32_t* cu_seqlens_q = nullptr;  // on the tensors' device: host-readable only for the CPU backend
  const std::int32_t* cu_seqlens_k = nullptr;
  const std::int32_t* seqused_k = nullptr;

  TokenTensor q, k, v, out;
  LseTensor lse;
  // Backward only.
  TokenTensor dout, dq, dk, dv;

  float softmax_scale = 1.0f;
  bool causal = false;
  CausalAlignment alignment = CausalAlignment::kBottomRight;
  // After causal is folded in: -1 is unbounded, causal makes window_right 0.
  std::int64_t window_left = -1;
  std::int64_t window_right = -1;
  float softcap = 0.0f;
  const float* alibi_slopes = nullptr;  // (heads_q) or (batch, heads_q)
  std::int64_t alibi_batch_stride = 0;  // 0 when the slopes are per head only

  bool deterministic = false;
  int num_threads = 0;
  void* stream = nullptr;

  std::int64_t group_size() const { return heads_q / heads_kv; }

  // Host-side only (reads cu_seqlens): the CPU backend.
  SequenceSpan sequence(std::int64_t b) const {
    if (!varlen) return {0, seqlen_q, 0, seqlen_k};
    SequenceSpan s;
    s.q_begin = cu_seqlens_q[b];
    s.seqlen_q = cu_seqlens_q[b + 1] - cu_seqlens_q[b];
    s.k_begin = cu_seqlens_k[b];
    s.seqlen_k = seqused_k != nullptr ? seqused_k[b] : cu_seqlens_k[b + 1] - cu_seqlens_k[b];
    return s;
  }
  float alibi_slope(std::int64_t b, std::int64_t h) const {
    return alibi_slopes == nullptr ? 0.0f : alibi_slopes[b * alibi_batch_stride + h];
  }
};

}  // namespace flashattn::detail
