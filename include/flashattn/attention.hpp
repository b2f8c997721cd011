// Forward and backward attention.
//
// Layouts follow flash-attn. Batched:
//   q (batch, seqlen_q, heads_q, head_dim)      out (batch, seqlen_q, heads_q, head_dim_v)
//   k (batch, seqlen_k, heads_kv, head_dim)     lse (batch, heads_q, seqlen_q), fp32
//   v (batch, seqlen_k, heads_kv, head_dim_v)
// Variable length (sequences packed back to back):
//   q (total_q, heads_q, head_dim), k/v (total_k, heads_kv, ...), out (total_q, heads_q, head_dim_v),
//   lse (heads_q, total_q).
// heads_q must be a multiple of heads_kv (GQA / MQA); query head h reads KV head h / (heads_q / heads_kv).
// head_dim and head_dim_v: multiples of 8, at most 256. q, k, v, out, dout, dq, dk, dv share one dtype
// (fp32, fp16 or bf16); every tensor's last dimension is contiguous, other strides are free (>= 0).
//
// Rows that see no key (fully masked, or seqlen_k = 0) give out = 0 and lse = -inf, and zero gradients.
// Variable length: rows of out/dq past cu_seqlens_q[batch] are not written.
#pragma once

#include <cstdint>
#include <optional>

#include "flashattn/export.hpp"
#include "flashattn/options.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn {

struct VarlenSeqlens {
  TensorView cu_seqlens_q;  // int32 (batch + 1,), non-decreasing, on the device of q
  TensorView cu_seqlens_k;  // int32 (batch + 1,)
  std::int64_t max_seqlen_q = 0;
  std::int64_t max_seqlen_k = 0;
  // Optional int32 (batch,): keys used per sequence (<= its length in cu_seqlens_k); the rest of the
  // sequence's keys are ignored and the causal diagonal is aligned to the used length.
  std::optional<TensorView> seqused_k;
};

// out = softmax(scale * q k^T + masks) v, lse = log-sum-exp of each row of the masked, scaled scores.
FLASHATTN_API void forward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                           const TensorView& lse, const AttentionOptions& options = {});
FLASHATTN_API void forward_varlen(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                                  const TensorView& lse, const VarlenSeqlens& seqlens,
                                  const AttentionOptions& options = {});

// Gradients of the forward above. out and lse are the forward's outputs; dq, dk, dv have the shapes of
// q, k, v (dk, dv summed over the query heads that share a KV head).
FLASHATTN_API void backward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                            const TensorView& dout, const TensorView& lse, const TensorView& dq, const TensorView& dk,
                            const TensorView& dv, const AttentionOptions& options = {});
FLASHATTN_API void backward_varlen(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& out,
                                   const TensorView& dout, const TensorView& lse, const TensorView& dq,
                                   const TensorView& dk, const TensorView& dv, const VarlenSeqlens& seqlens,
                                   const AttentionOptions& options = {});

}  // namespace flashattn
