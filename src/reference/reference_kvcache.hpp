// A plain reference for the KV-cache call and for merge_attention_states (flashattn/kvcache.hpp), for the
// tests. It shares no code with the backends: it follows the header's semantics step by step (append, rotary,
// the attended key range), builds each sequence's keys and values as ordinary dense tensors and hands them to
// reference::forward with that sequence's seqlen_k, so the masks are those of the normal forward.
#pragma once

#include <vector>

#include "flashattn/kvcache.hpp"
#include "reference.hpp"

namespace flashattn::reference {

// One cache tensor (k_cache or v_cache) after the append, element by element in the row-major order of its
// view (every element: those the append writes and those it must leave as they were).
struct CacheContents {
  std::vector<double> exact;    // the new keys rotated in float64; everything else as read from the view
  std::vector<double> rounded;  // exact rounded to the cache's dtype: what an exact rotation would store
  std::vector<bool> written;    // the append writes this element
  std::vector<bool> rotated;    // a written element of the rotated channels (the only inexact ones)
  // |x0 cos| + |x1 sin| (or |x0 sin| + |x1 cos|) of a rotated element: the size of the terms whose fp32
  // difference a backend rounds, which bounds its rounding error when the terms cancel.
  std::vector<double> term_magnitude;
};

struct KVCacheResult {
  // out (batch, seqlen_q, heads_q, head_dim_v) and lse (batch, heads_q, seqlen_q), dense.
  ForwardResult attention;
  CacheContents k_cache, v_cache;
};

// Reads the views as they are before the call (host memory): the cache's old contents, q, the new tokens,
// cos / sin and the index tensors. kFloat64 rotates q and the new keys in float64 and attends in float64;
// the rotated values are held in fp32 tensors on their way to reference::forward, an error of 2^-24
// relative, far below every tolerance the tests use. kInputDType is the tolerance yardstick: the rotations
// in fp32 rounded to the input dtype (as stored in the cache), then reference::forward's naive attention
// in the input precision. The cache contents are the float64 ones in both.
KVCacheResult forward_kvcache(const TensorView& q, const KVCache& cache, const AttentionOptions& options,
                              Precision precision);

// The merge in float64: lse = log(exp(lse_a) + exp(lse_b)), out = exp(lse_a - lse) out_a + exp(lse_b - lse)
// out_b, a side with lse -inf left out, both -inf giving out 0 and lse -inf. out in the row-major order of
// out_a's view, lse in that of lse_a's: batched (batch, seqlen, heads, head_dim) and (batch, heads, seqlen),
// or packed (tokens, heads, head_dim) and (heads, tokens).
ForwardResult merge_attention_states(const TensorView& out_a, const TensorView& lse_a, const TensorView& out_b,
                                     const TensorView& lse_b);

}  // namespace flashattn::reference
