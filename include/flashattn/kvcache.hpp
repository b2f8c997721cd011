// Attention against a KV cache, for inference (flash-attn's flash_attn_with_kvcache), and the merge of
// attention states computed over disjoint key sets.
//
// Layouts:
//   q (batch, seqlen_q, heads_q, head_dim)             out (batch, seqlen_q, heads_q, head_dim_v)
//   lse (batch, heads_q, seqlen_q), fp32
//   contiguous cache: k_cache (batch_cache, seqlen_cache, heads_kv, head_dim), v_cache (..., head_dim_v)
//   paged cache (block_table given): k_cache (num_pages, page_size, heads_kv, head_dim), any page_size >= 1;
//     token t of sequence b sits in page block_table[b, t / page_size] at row t % page_size.
//
// Sequence b holds cache_seqlens[b] tokens before the call. The new tokens k_new / v_new (if given) are
// written into the cache in place at positions cache_seqlens[b] ... cache_seqlens[b] + seqlen_new - 1
// (after the rotary embedding, when given), and q attends to the keys at positions
// [cache_leftpad[b], cache_seqlens[b] + seqlen_new): seqlen_k = cache_seqlens[b] + seqlen_new - leftpad.
// Masks follow AttentionOptions with that seqlen_k: causal with bottom-right alignment (flash-attn's) puts
// query i at key seqlen_k - seqlen_q + i, so chunked prefill and speculative verification work.
//
// Rotary embedding (rotary_cos / rotary_sin given, which needs k_new): the first rotary_dim channels of
// the new keys are rotated at their cache positions, and those of q at position cache_seqlens[b] + i when
// causal or windowed (a window side at least the cache's capacity counts as unbounded), else at
// cache_seqlens[b] for every query (flash-attn's convention). Interleaved
// rotates channel pairs (0, 1), (2, 3), ...; otherwise channel c pairs with c + rotary_dim / 2.
//
// Preconditions on device-resident values that the call cannot check without a host synchronisation
// (the CPU backend checks them): cache_seqlens[b] + seqlen_new <= the sequence's capacity (seqlen_cache,
// or block_table's width x page_size), 0 <= leftpad <= cache_seqlens[b], block_table entries in
// [0, num_pages), cache_batch_idx entries in [0, batch_cache), q's rotary positions below seqlen_ro. The CUDA
// kernels guard every access, so a broken precondition gives wrong values for that sequence but never a read
// or write outside the tensors. Not checked by either backend, as in flash-attn: with k_new, no two sequences
// may append into the same cache slots (repeated cache_batch_idx entries or shared pages race).
#pragma once

#include <cstdint>
#include <optional>

#include "flashattn/export.hpp"
#include "flashattn/options.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn {

struct KVCache {
  TensorView k_cache;
  TensorView v_cache;
  TensorView cache_seqlens;  // int32 (batch,)

  std::optional<TensorView> k_new;  // (batch, seqlen_new, heads_kv, head_dim), appended in place
  std::optional<TensorView> v_new;  // (batch, seqlen_new, heads_kv, head_dim_v); given with k_new

  std::optional<TensorView> cache_batch_idx;  // int32 (batch,): the cache row of each sequence (contiguous only)
  std::optional<TensorView> cache_leftpad;    // int32 (batch,): the first cache position that is attended
  std::optional<TensorView> block_table;      // int32 (batch, max_pages_per_sequence): makes the cache paged

  std::optional<TensorView> rotary_cos;  // (seqlen_ro, rotary_dim / 2), q's dtype; seqlen_ro >= capacity
  std::optional<TensorView> rotary_sin;
  bool rotary_interleaved = true;  // flash-attn's default
};

// How the keys are split across thread blocks on GPUs (flash-decoding); ignored by the CPU backend.
struct KVCacheSchedule {
  // 0 chooses from the problem's shape and the device; 1 runs unsplit; n > 1 splits each sequence's keys
  // into n even parts and combines them.
  int num_splits = 0;
  // fp32 scratch of at least kvcache_workspace_size() elements on q's device, 16-byte aligned (as every
  // allocator's blocks are), for split results. A split that needs one runs unsplit without it, so the call never
  // allocates (it can be captured in a CUDA graph). On Hopper, up to 8 splits merge on chip and need none.
  std::optional<TensorView> workspace;
};

// fp32 elements of workspace the call with these arguments uses (0 when it runs unsplit or its splits merge on
// chip). Host-only.
FLASHATTN_API std::int64_t kvcache_workspace_size(const TensorView& q, const KVCache& cache,
                                                  const AttentionOptions& options = {},
                                                  const KVCacheSchedule& schedule = {});

FLASHATTN_API void forward_kvcache(const TensorView& q, const KVCache& cache, const TensorView& out,
                                   const TensorView& lse, const AttentionOptions& options = {},
                                   const KVCacheSchedule& schedule = {});

// Attention over the union of two disjoint key sets from the attention over each:
//   lse = log(exp(lse_a) + exp(lse_b)), out = exp(lse_a - lse) out_a + exp(lse_b - lse) out_b.
// Batched: outs (batch, seqlen, heads, head_dim), lses (batch, heads, seqlen); packed: outs
// (tokens, heads, head_dim), lses (heads, tokens). lses are fp32; out_a, out_b and out are fp32, fp16 or
// bf16 (each its own). out may be out_a or out_b, and lse lse_a or lse_b (in place); other overlaps are not
// allowed. Both lses -inf (no
// key in either set) give out = 0 and lse = -inf. options: only backend and stream are read.
FLASHATTN_API void merge_attention_states(const TensorView& out_a, const TensorView& lse_a, const TensorView& out_b,
                                          const TensorView& lse_b, const TensorView& out, const TensorView& lse,
                                          const AttentionOptions& options = {});

}  // namespace flashattn
