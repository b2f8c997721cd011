// The Hopper forward (sm_90a): FlashAttention-3's structure on this library's building blocks. One
// persistent block per multiprocessor: warpgroup 0 produces (AttentionProducer: TMA copies of Q, K, V), the
// others consume (AttentionConsumer: wgmma, softmax, epilogue), registers moved to the consumers with
// setmaxnreg. The host side builds the tensor maps and the tile order and launches.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "cuda/hopper/attention/mainloop.cuh"
#include "cuda/hopper/attention/params.hpp"
#include "cuda/hopper/attention/producer.cuh"
#include "cuda/hopper/attention/scheduler.cuh"
#include "cuda/hopper/attention/shape.cuh"
#include "cuda/hopper/attention/tile_order.hpp"
#include "cuda/hopper/tensor_map.hpp"
#include "cuda/host.hpp"

namespace flashattn::cuda::hopper {

template <class T, int kHeadDim, bool kLongSequences>
__global__ void __launch_bounds__(AttentionShape<T, kHeadDim, kLongSequences>::kThreads, 1)
    hopper_forward_kernel(const __grid_constant__ HopperForwardParams p) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using Shape = AttentionShape<T, kHeadDim, kLongSequences>;
  extern __shared__ unsigned char dynamic_shared_memory[];
  const std::uint32_t misalignment = shared_address(dynamic_shared_memory) % kSwizzle128AtomBytes;
  const AttentionStorage<Shape> smem{dynamic_shared_memory +
                                     (misalignment == 0 ? 0 : kSwizzle128AtomBytes - misalignment)};
  if (threadIdx.x == 0) smem.init_barriers();
  __syncthreads();

  const TileScheduler scheduler{p.order, Shape::kBlockM};
  const int warpgroup = warpgroup_index();
  if (warp_role(warpgroup) == WarpRole::kProducer) {
    warpgroup_release_registers<Shape::kProducerRegisters>();
    if (threadIdx.x == 0) AttentionProducer<Shape>(smem, p).run(scheduler);
  } else {
    warpgroup_claim_registers<Shape::kConsumerRegisters>();
    AttentionConsumer<Shape>(smem, p, warpgroup - 1).run(scheduler);
  }
#else
  // Built for a GPU without wgmma / setmaxnreg: the dispatch (backend.cpp) never launches it there.
  __trap();
#endif
}

// A (channel, token, head, batch) map of a token tensor; extents of 1 get a placeholder stride (TMA wants
// every stride a multiple of 16 bytes, and a dimension of one index never uses it).
inline CUtensorMap token_tensor_map(const flashattn::detail::TokenTensor& t, TensorMapElement element, int channels,
                                    int tokens, int heads, int batch, int box_rows) {
  auto stride = [](std::int64_t elements, int extent) {
    return extent == 1 ? kTensorMapStrideAlignment : static_cast<std::uint64_t>(elements) * kTensorMapElementBytes;
  };
  TensorMapLayout layout;
  layout.rank = 4;
  layout.extents = {static_cast<std::uint64_t>(channels), static_cast<std::uint64_t>(tokens),
                    static_cast<std::uint64_t>(heads), static_cast<std::uint64_t>(batch)};
  layout.strides_bytes = {stride(t.token_stride, tokens), stride(t.head_stride, heads), stride(t.batch_stride, batch)};
  layout.box = {kSwizzle128RowBytes / kTensorMapElementBytes, static_cast<std::uint32_t>(box_rows), 1, 1};
  return make_tensor_map(t.data, element, layout);
}

// The forward of a batched problem (no variable lengths, no split) on an sm_90a device with
// `multiprocessors` multiprocessors; the dispatch (backend.cpp) checks what the copy engine needs first.
template <class T, int kHeadDim, bool kLongSequences>
void launch_hopper_forward(const ForwardParams& a, int multiprocessors, cudaStream_t stream) {
  using Shape = AttentionShape<T, kHeadDim, kLongSequences>;
  const TensorMapElement element =
      std::is_same_v<T, __nv_bfloat16> ? TensorMapElement::kBFloat16 : TensorMapElement::kFloat16;
  HopperForwardParams p;
  p.attention = a;
  p.q_map = token_tensor_map(a.q, element, a.head_dim, a.seqlen_q, a.heads_q, a.batch, Shape::kBlockM);
  p.k_map = token_tensor_map(a.k, element, a.head_dim, a.seqlen_k, a.heads_kv, a.batch, Shape::kBlockN);
  p.v_map = token_tensor_map(a.v, element, a.head_dim_v, a.seqlen_k, a.heads_kv, a.batch, Shape::kBlockN);
  p.o_map = token_tensor_map(a.out, element, a.head_dim_v, a.seqlen_q, a.heads_q, a.batch, kWgmmaM);

  p.order = plan_tile_order(a, Shape::kBlockM, kWgmmaM, sizeof(T), multiprocessors);
  auto* kernel = &hopper_forward_kernel<T, kHeadDim, kLongSequences>;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), Shape::kAllocationBytes);
  const int blocks = std::min(p.order.units, multiprocessors);
  kernel<<<blocks, Shape::kThreads, Shape::kAllocationBytes, stream>>>(p);
}

}  // namespace flashattn::cuda::hopper
