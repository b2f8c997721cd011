// Validation of the KV-cache call and of merge_attention_states (flashattn/kvcache.hpp): turns the
// public arguments into a KVCacheProblem / MergeProblem or throws naming the argument and the rule.
#pragma once

#include "flashattn/kvcache.hpp"
#include "kvcache_problem.hpp"

namespace flashattn::detail {

KVCacheProblem validate_kvcache(const TensorView& q, const KVCache& cache, const TensorView& out, const TensorView& lse,
                                const AttentionOptions& options, const KVCacheSchedule& schedule);

MergeProblem validate_merge(const TensorView& out_a, const TensorView& lse_a, const TensorView& out_b,
                            const TensorView& lse_b, const TensorView& out, const TensorView& lse,
                            const AttentionOptions& options);

}  // namespace flashattn::detail
