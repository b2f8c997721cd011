// What the CUDA kernels receive: the Problem's tensors and options in a form device code can read, plus
// the work buffers the host side allocated. Plain data, shared by the host (g++) and the kernels (nvcc).
#pragma once

#include <cstdint>

#include "token_tensor.hpp"

namespace flashattn::cuda {

// Per-(batch, head, query row) fp32 buffers (split partials, lse in log2 units, rowsum(dO * O)): element
// (b, h, t) at b * batch_stride + h * head_stride + token_begin(b) + t, as the lse output.
struct RowBuffer {
  float* data = nullptr;
  std::int64_t batch_stride = 0;
  std::int64_t head_stride = 0;
};

struct AttentionParams {
  detail::TokenTensor q, k, v, out;
  detail::LseTensor lse;

  int batch = 0;
  int heads_q = 0;
  int heads_kv = 0;
  int head_dim = 0;
  int head_dim_v = 0;
  int seqlen_q = 0;  // batched: the lengths; variable length: the maxima
  int seqlen_k = 0;
  const std::int32_t* cu_seqlens_q = nullptr;  // device pointers, null when batched
  const std::int32_t* cu_seqlens_k = nullptr;
  const std::int32_t* seqused_k = nullptr;

  // Mask: window bounds after causal is folded in (-1 unbounded) and the diagonal's alignment.
  int window_left = -1;
  int window_right = -1;
  bool bottom_right = true;

  // Scores: x = scale * q.k, capped, minus the ALiBi bias, in log2 units for exp2.
  float scale = 1.0f;
  float scale_log2 = 1.0f;  // scale * log2(e)
  float softcap = 0.0f;     // 0: off
  const float* alibi_slopes = nullptr;
  std::int64_t alibi_batch_stride = 0;

  int group_size() const { return heads_q / heads_kv; }
};

struct ForwardParams : AttentionParams {
  // Split-KV: each split writes its normalised partial output (fp32, head_dim_v wide) and lse; the
  // combine kernel merges them. num_splits == 1 writes out and lse directly.
  int num_splits = 1;
  float* out_partial = nullptr;           // (split, row of lse_partial layout, head_dim_v)
  RowBuffer lse_partial{};                // one per split, split_stride apart
  std::int64_t partial_split_stride = 0;  // rows of one split
};

struct BackwardParams : AttentionParams {
  detail::TokenTensor dout, dq, dk, dv;
  RowBuffer lse_log2{};         // lse * log2(e); +inf for rows that see no key, so that P = exp2(x - lse) = 0
  RowBuffer dot_do_o{};         // rowsum(dO * O)
  float* dq_accum = nullptr;    // fp32 sums of dQ, the atomics' target: rows of the RowBuffer layout, in
                                // 8 x 8 blocks of dq_accum_stride columns (dq_sum_index)
  int dq_accum_stride = 0;      // the compiled head dim, so that the kernel's offsets are constants
  std::int64_t rows_total = 0;  // rows of the RowBuffer layout per head (batched: seqlen_q; varlen: total_q)
};

// Where dQ sum (row, col) lives: rows in groups of 8, each group as 8 x 8 blocks (64 floats, row-major)
// side by side. The 32 lanes' pairs of one mma fragment (8 rows x 8 columns) are then 256 contiguous bytes,
// so one two-element red instruction touches 2 cache lines; row-major rows touched 8 lines, and the
// atomics stalled the warps on the global-memory queue (ncu, H100, d = 256: 17 % of the stall samples).
// Rows 8 apart are 8 * stride floats apart wherever the group starts, so a lane's offsets stay constants.
// (constexpr: device code calls it through --expt-relaxed-constexpr, as it does the tile table.)
constexpr std::int64_t dq_sum_index(std::int64_t row, int col, int stride) {
  return (row / 8) * (8 * stride) + (col / 8) * 64 + (row % 8) * 8 + col % 8;
}
// Floats the sums of `rows` rows take in that layout: whole groups of 8 rows, up to where the next would start.
constexpr std::int64_t dq_sum_count(std::int64_t rows, int stride) {
  return dq_sum_index((rows + 7) / 8 * 8, 0, stride);
}

}  // namespace flashattn::cuda
