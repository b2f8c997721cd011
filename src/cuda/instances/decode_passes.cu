// The KV-cache call's small kernels, both dtypes: the in-place append, the split combine, and
// merge_attention_states.
#include "cuda/decode/append.cuh"
#include "cuda/decode/merge.cuh"

namespace flashattn::cuda {

template void launch_append<__nv_bfloat16>(const detail::KVCacheProblem&, cudaStream_t);
template void launch_append<__half>(const detail::KVCacheProblem&, cudaStream_t);
template void launch_combine_splits<__nv_bfloat16>(const DecodeParams&, cudaStream_t);
template void launch_combine_splits<__half>(const DecodeParams&, cudaStream_t);

void launch_merge_states(const detail::MergeProblem& p, cudaStream_t stream) {
  const std::int64_t rows = p.batch * p.seqlen * p.heads;
  const auto blocks = static_cast<unsigned>((rows + device::kMergeWarps - 1) / device::kMergeWarps);
  device::merge_states_kernel<<<blocks, device::kMergeThreads, 0, stream>>>(p);
}

}  // namespace flashattn::cuda
