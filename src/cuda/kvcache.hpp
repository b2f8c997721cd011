// The CUDA backend of the KV-cache call (decoding kernels: split-KV over the key range, paged caches,
// in-place append with rotary) and of merge_attention_states. Nothing synchronises or allocates.
#pragma once

#include <cstdint>

#include "kvcache_problem.hpp"

namespace flashattn::cuda {

// fp32 elements of workspace forward_kvcache uses for this problem when given one (0: it runs unsplit, or its
// splits merge in thread-block clusters).
std::int64_t kvcache_workspace_size(const detail::KVCacheProblem& problem);

void forward_kvcache(const detail::KVCacheProblem& problem);

void merge_attention_states(const detail::MergeProblem& problem);

}  // namespace flashattn::cuda
