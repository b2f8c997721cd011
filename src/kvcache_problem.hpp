// The validated form of a KV-cache call (flashattn/kvcache.hpp) and of a merge of attention states. Built
// only by validate_kvcache.cpp. Kept free of other library headers except token_tensor.hpp so that CUDA
// kernels (C++17) can include it.
#pragma once

#include <cstdint>

#include "token_tensor.hpp"

namespace flashattn::detail {

enum class KVDType : unsigned char { kFloat32, kFloat16, kBFloat16 };

// Where the keys and values of each sequence live. Token t of sequence b:
//   contiguous: data + row * batch_stride + t * token_stride + h * head_stride, row = cache_batch_idx[b] or b;
//   paged:      data + block_table[b, t / page_size] * batch_stride + (t % page_size) * token_stride + ...
struct CacheLayout {
  TokenTensor k, v;
  std::int64_t rows = 0;       // batch_cache (contiguous) or num_pages (paged)
  std::int64_t page_size = 0;  // 0: contiguous
  std::int64_t capacity = 0;   // tokens a sequence can hold: seqlen_cache, or max_pages_per_sequence * page_size
  const std::int32_t* block_table = nullptr;  // (batch, max_pages_per_sequence)
  std::int64_t block_table_stride = 0;
  std::int64_t max_pages_per_sequence = 0;
  const std::int32_t* cache_batch_idx = nullptr;  // contiguous only; null = identity
};

struct RotaryEmbedding {
  const void* cos = nullptr;  // (seqlen_ro, rotary_dim / 2), the problem's dtype; null: no rotary
  const void* sin = nullptr;
  std::int64_t cos_stride = 0;  // elements between positions
  std::int64_t sin_stride = 0;
  std::int64_t rotary_dim = 0;
  std::int64_t seqlen_ro = 0;
  bool interleaved = false;
};

struct KVCacheProblem {
  KVDType dtype = KVDType::kFloat32;
  bool on_cuda = false;
  int device_index = 0;
  std::int64_t batch = 0;
  std::int64_t seqlen_q = 0;
  std::int64_t heads_q = 0;
  std::int64_t heads_kv = 0;
  std::int64_t head_dim = 0;
  std::int64_t head_dim_v = 0;

  TokenTensor q, out;  // (batch, seqlen_q, heads, channel)
  LseTensor lse;       // (batch, heads_q, seqlen_q)

  CacheLayout cache;
  const std::int32_t* cache_seqlens = nullptr;  // (batch,)
  const std::int32_t* cache_leftpad = nullptr;  // (batch,) or null

  TokenTensor k_new, v_new;  // (batch, seqlen_new, heads_kv, channel); data null when nothing is appended
  std::int64_t seqlen_new = 0;
  RotaryEmbedding rotary;

  float softmax_scale = 1.0f;
  bool causal = false;
  bool bottom_right = true;       // causal / window / ALiBi alignment
  std::int64_t window_left = -1;  // -1 unbounded; causal makes window_right 0
  std::int64_t window_right = -1;
  float softcap = 0.0f;
  const float* alibi_slopes = nullptr;  // (heads_q) or (batch, heads_q)
  std::int64_t alibi_batch_stride = 0;

  int num_splits = 0;          // as asked (0 = choose)
  float* workspace = nullptr;  // null: run unsplit
  std::int64_t workspace_size = 0;
  int num_threads = 0;
  void* stream = nullptr;

  constexpr std::int64_t group_size() const { return heads_q / heads_kv; }
  // The query rotated at each row's own position (causal or windowed), else all at cache_seqlens[b].
  constexpr bool rotary_per_row() const { return causal || window_left >= 0 || window_right >= 0; }
};

// out = merge of (out_a, lse_a) and (out_b, lse_b); see flashattn/kvcache.hpp. Rank-3 (packed) inputs are
// normalised to batch 1 with the token dimension as seqlen.
struct MergeProblem {
  bool on_cuda = false;
  int device_index = 0;
  std::int64_t batch = 0;
  std::int64_t seqlen = 0;
  std::int64_t heads = 0;
  std::int64_t head_dim = 0;
  TokenTensor out_a, out_b, out;
  KVDType dtype_a = KVDType::kFloat32, dtype_b = KVDType::kFloat32, dtype_out = KVDType::kFloat32;
  LseTensor lse_a, lse_b, lse;
  void* stream = nullptr;
};

}  // namespace flashattn::detail
