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

// The bytes of K and V in a group of (batch, head) pairs (params.hpp, TileOrder): at most kL2GroupBytes (H100's L2
// holds 50 MB), and at most kL2SmallGroupBytes where that still leaves kMinGroupHeads heads (kernel below).
inline constexpr std::int64_t kL2GroupBytes = std::int64_t{24} << 20;
inline constexpr std::int64_t kL2SmallGroupBytes = std::int64_t{8} << 20;
inline constexpr std::int64_t kMinGroupHeads = 4;

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

  TileOrder& order = p.order;
  order.m_blocks = (a.seqlen_q + Shape::kBlockM - 1) / Shape::kBlockM;
  // Where the keys are bounded on the right (causal) the partial query tile goes first, since the first tile sees
  // the fewest keys there, by whole consumers' rows: a consumer's rows are then all in the sequence or all before
  // its start, whose output it does not write (epilogue.cuh); TMA fills their Q with zeros. (Shifted by 127 rows,
  // so that a consumer's output box began 63 rows before the sequence, the kernel stopped with an illegal instruction
  // on an H100.) d = 64's 192-row tile at seqlen 4k, H100, same call, 2026-11-26: +4.5 % causal (363 key tiles per
  // head against 384).
  const int spare_rows = order.m_blocks * Shape::kBlockM - a.seqlen_q;
  order.row_shift = a.window_right >= 0 && order.m_blocks > 1 ? spare_rows / kWgmmaM * kWgmmaM : 0;
  order.heads = a.batch * a.heads_q;
  // Later query tiles see more keys when the window's right side is bounded and its left side is not (causal).
  order.paired = a.window_right >= 0 && a.window_left < 0;
  order.units_per_head = order.paired ? (order.m_blocks + 1) / 2 : order.m_blocks;
  order.units = order.units_per_head * order.heads;
  // A group is about one wave of units, and at least kMinGroupHeads heads: the blocks running at the same time
  // then work on few heads and read each head's K and V from L2 once it is there, without all of them reading
  // the same tiles at once. H100, bf16, same call: at d = 128, groups of 24 MB of K and V (48 heads at seqlen
  // 1k) gave 520 / 595 / 633 TFLOP/s at seqlen 1k / 2k / 4k, 8 MB (16 heads, one wave) 549 / 613 / 644, 96 MB
  // 330 / 449 / 601; one wave of one head at seqlen 16k (every block on the same K and V) cost 3 % at d = 128
  // and 11 % at d = 64 against 3 and 6 heads. Smaller groups keep a head's units closer together in the walk, so
  // that they read its K and V from L2 before it is evicted: groups of at most 8 MiB instead of 24 MiB (H100, same
  // call, 2026-11-27 01:07 UTC) gave d = 256 +9.3 % causal at 1k (8 heads against 24), +3.3 % at 2k, +2.0 % without
  // a mask at 1k, d = 128 +1.4 % causal at 2k; where they left fewer than kMinGroupHeads heads (1 or 2 from seqlen
  // 8k at d = 128) they cost 0.6-1.3 %, hence the floor.
  const std::int64_t kv_bytes_per_head =
      static_cast<std::int64_t>(a.seqlen_k) * (a.head_dim + a.head_dim_v) * static_cast<std::int64_t>(sizeof(T));
  const auto heads_within = [&](std::int64_t bytes) {
    return bytes * a.group_size() / std::max<std::int64_t>(kv_bytes_per_head, 1);
  };
  const std::int64_t wave_heads =
      std::max<std::int64_t>(multiprocessors / std::max(order.units_per_head, 1), kMinGroupHeads);
  const std::int64_t l2_heads =
      std::min(heads_within(kL2GroupBytes), std::max(heads_within(kL2SmallGroupBytes), kMinGroupHeads));
  order.heads_per_group = static_cast<int>(std::clamp<std::int64_t>(std::min(wave_heads, l2_heads), 1, order.heads));
  order.group_units = InvariantDivisor::of(order.heads_per_group * order.units_per_head);
  order.group_heads = InvariantDivisor::of(order.heads_per_group);
  order.last_group_heads =
      InvariantDivisor::of(order.heads - (order.heads - 1) / order.heads_per_group * order.heads_per_group);
  order.heads_q = InvariantDivisor::of(a.heads_q);

  auto* kernel = &hopper_forward_kernel<T, kHeadDim, kLongSequences>;
  allow_dynamic_shared_memory(reinterpret_cast<const void*>(kernel), Shape::kAllocationBytes);
  const int blocks = std::min(order.units, multiprocessors);
  kernel<<<blocks, Shape::kThreads, Shape::kAllocationBytes, stream>>>(p);
}

}  // namespace flashattn::cuda::hopper
