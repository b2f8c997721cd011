// The CPU backend of the KV-cache call and of merge_attention_states (flashattn/kvcache.hpp).
#pragma once

#include "kvcache_problem.hpp"

namespace flashattn::cpu {

// Appends the new tokens (rotated when asked) into the cache, then attends q (rotated) to each sequence's
// keys. Host memory only; the problem's host-side index checks have passed.
void forward_kvcache(const detail::KVCacheProblem& problem);

void merge_attention_states(const detail::MergeProblem& problem);

}  // namespace flashattn::cpu
