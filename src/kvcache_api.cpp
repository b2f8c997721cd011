// The KV-cache entry points: validate, then hand the problem to the backend that owns the tensors' device.
#include "cpu/kvcache.hpp"
#include "flashattn/kvcache.hpp"
#include "validate_kvcache.hpp"
#if defined(FLASHATTN_WITH_CUDA)
#include "cuda/kvcache.hpp"
#endif

namespace flashattn {

std::int64_t kvcache_workspace_size(const TensorView& q, const KVCache& cache, const AttentionOptions& options,
                                    const KVCacheSchedule& schedule) {
  // Validation needs output views; their shapes follow from q and the cache, and they are never touched.
  const std::int64_t batch = q.rank == 4 ? q.shape[0] : 0;
  const std::int64_t seqlen_q = q.rank == 4 ? q.shape[1] : 0;
  const std::int64_t heads_q = q.rank == 4 ? q.shape[2] : 0;
  const std::int64_t head_dim_v = cache.v_cache.rank == 4 ? cache.v_cache.shape[3] : 0;
  float placeholder = 0.0f;
  const TensorView out =
      TensorView::contiguous(&placeholder, q.dtype, {batch, seqlen_q, heads_q, head_dim_v}, q.device);
  const TensorView lse = TensorView::contiguous(&placeholder, DType::kFloat32, {batch, heads_q, seqlen_q}, q.device);
  detail::KVCacheProblem problem = detail::validate_kvcache(q, cache, out, lse, options, schedule);
#if defined(FLASHATTN_WITH_CUDA)
  if (problem.on_cuda) return cuda::kvcache_workspace_size(problem);
#endif
  (void)problem;
  return 0;
}

void forward_kvcache(const TensorView& q, const KVCache& cache, const TensorView& out, const TensorView& lse,
                     const AttentionOptions& options, const KVCacheSchedule& schedule) {
  const detail::KVCacheProblem problem = detail::validate_kvcache(q, cache, out, lse, options, schedule);
#if defined(FLASHATTN_WITH_CUDA)
  if (problem.on_cuda) return cuda::forward_kvcache(problem);
#endif
  cpu::forward_kvcache(problem);
}

void merge_attention_states(const TensorView& out_a, const TensorView& lse_a, const TensorView& out_b,
                            const TensorView& lse_b, const TensorView& out, const TensorView& lse,
                            const AttentionOptions& options) {
  const detail::MergeProblem problem = detail::validate_merge(out_a, lse_a, out_b, lse_b, out, lse, options);
#if defined(FLASHATTN_WITH_CUDA)
  if (problem.on_cuda) return cuda::merge_attention_states(problem);
#endif
  cpu::merge_attention_states(problem);
}

}  // namespace flashattn
