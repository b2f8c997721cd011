// Backward kernel instances: bf16, head_dim 64 (the main kernel and the deterministic dQ pass).
#include "cuda/backward/dq_kernel.cuh"
#include "cuda/backward/kernel.cuh"

template void flashattn::cuda::launch_backward<__nv_bfloat16, 64>(const BackwardParams&, bool, cudaStream_t);
template void flashattn::cuda::launch_backward_dq<__nv_bfloat16, 64>(const BackwardParams&, cudaStream_t);
