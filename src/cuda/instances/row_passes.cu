// The small per-row kernels, both dtypes: the split-KV combine and the backward's passes around its
// main kernel.
#include "cuda/backward/prepare.cuh"
#include "cuda/forward/combine.cuh"

namespace flashattn::cuda {

template void launch_combine<__nv_bfloat16>(const ForwardParams&, cudaStream_t);
template void launch_combine<__half>(const ForwardParams&, cudaStream_t);
template void launch_backward_prepare<__nv_bfloat16>(const BackwardParams&, cudaStream_t);
template void launch_backward_prepare<__half>(const BackwardParams&, cudaStream_t);
template void launch_backward_dq_store<__nv_bfloat16>(const BackwardParams&, cudaStream_t);
template void launch_backward_dq_store<__half>(const BackwardParams&, cudaStream_t);

}  // namespace flashattn::cuda
