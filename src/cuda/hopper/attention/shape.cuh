// The Hopper forward's compile-time shape (from the tile table, tiles.hpp), its shared-memory layout and the
// named barriers its warpgroups use.
//
// Every operand tile is stored as TMA writes it with the 128-byte swizzle: panels of 64 channels (one
// 128-byte row per token), one panel after the other. Q and K are K-major operands of Q K^T as stored; V is
// the MN-major B operand of P V, read through the same panels (wgmma.cuh).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda/hopper/barrier.cuh"
#include "cuda/hopper/warp_specialization.cuh"
#include "cuda/hopper/wgmma.cuh"
#include "cuda/tiles.hpp"

namespace flashattn::cuda::hopper {

// Consumer warpgroups a block may have: the named barriers (NamedBarrier) give each its own.
inline constexpr int kMaxConsumers = 3;

template <class T, int kHeadDim_, bool kLongSequences = false>
struct AttentionShape {
  using Element = T;
  static constexpr HopperForwardTile kTile = hopper_forward_tile(kHeadDim_, kLongSequences);
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlockM = kTile.block_m;
  static constexpr int kBlockN = kTile.block_n;
  static constexpr int kStages = kTile.stages;
  static constexpr int kConsumers = kBlockM / kWgmmaM;  // consumer warpgroups, 64 rows each
  static constexpr int kConsumerWarps = kConsumers * kWarpsPerWarpgroup;
  static constexpr int kThreads = (1 + kConsumers) * kWarpgroupThreads;
  static constexpr int kProducerRegisters = kTile.producer_registers;
  static constexpr int kConsumerRegisters = kTile.consumer_registers;

  static constexpr int kElementBytes = sizeof(T);
  static constexpr int kPanelColumns = static_cast<int>(kSwizzle128RowBytes) / kElementBytes;  // 64
  static constexpr int kPanels = kHeadDim / kPanelColumns;
  static constexpr int kQPanelBytes = kBlockM * static_cast<int>(kSwizzle128RowBytes);
  static constexpr int kKvPanelBytes = kBlockN * static_cast<int>(kSwizzle128RowBytes);
  static constexpr int kQBytes = kPanels * kQPanelBytes;    // what the Q barrier waits for
  static constexpr int kKvBytes = kPanels * kKvPanelBytes;  // one K or V stage
  // Where shared memory allows, O leaves through a buffer of its own, in boxes of 64 rows x 64 channels, each
  // consumer its own rows, and Q has two buffers: the next work tile's Q then loads during this one, the
  // consumers issue the next tile's first Q K^T with this one's last P V and write this one's output while it
  // runs (mainloop.cuh), and the output copies overlap the next tile's products. Otherwise (d = 256) Q has one
  // buffer, which frees with a tile's last Q K^T, and the consumers write O from registers (epilogue.cuh).
  static constexpr int kOutputBoxBytes = kWgmmaM * static_cast<int>(kSwizzle128RowBytes);
  static constexpr int kOutputBytes = kConsumers * kPanels * kOutputBoxBytes;
  static constexpr int kBarrierBytes = sizeof(std::uint64_t);
  static constexpr int kMaxBlockSharedBytes = 227 * 1024;
  static constexpr int kReservedBytes = static_cast<int>(kSwizzle128AtomBytes) + 256;  // alignment, barriers
  static constexpr bool kOutputBuffer =
      2 * kQBytes + 2 * kStages * kKvBytes + kOutputBytes + kReservedBytes <= kMaxBlockSharedBytes;
  static constexpr int kQStages = kOutputBuffer ? 2 : 1;

  // Byte offsets from the 1024-byte aligned start of dynamic shared memory.
  static constexpr int kQOffset = 0;
  static constexpr int kKOffset = kQOffset + kQStages * kQBytes;
  static constexpr int kVOffset = kKOffset + kStages * kKvBytes;
  static constexpr int kOutputOffset = kVOffset + kStages * kKvBytes;
  static constexpr int kBarrierOffset = kOutputOffset + (kOutputBuffer ? kOutputBytes : 0);
  // q_full and q_empty per Q stage, then k_full, k_empty, v_full, v_empty per K / V stage.
  static constexpr int kBarrierCount = 2 * kQStages + 4 * kStages;
  static constexpr int kUsedBytes = kBarrierOffset + kBarrierCount * kBarrierBytes;
  // Dynamic shared memory is only guaranteed 16-byte alignment; the slack lets the kernel round up.
  static constexpr int kAllocationBytes = kUsedBytes + static_cast<int>(kSwizzle128AtomBytes);

  static_assert(kConsumers <= kMaxConsumers, "at most three consumer warpgroups (named barriers)");
  static_assert(kHeadDim % kPanelColumns == 0, "the head dimension must be whole 64-channel panels");
  static_assert(kBlockM % kWgmmaM == 0 && kBlockN % kWgmmaK == 0, "tiles must be whole wgmma shapes");
  static_assert(kBlockN == 64 || kBlockN == 80 || kBlockN == 128 || kBlockN == 256,
                "Q K^T is one wgmma N of 64, 80, 128 or 256");
  static_assert(kHeadDim == 64 || kHeadDim == 128 || kHeadDim == 256, "P V is one wgmma N of 64, 128 or 256");
  static_assert(kQPanelBytes % kSwizzle128AtomBytes == 0 && kKvPanelBytes % kSwizzle128AtomBytes == 0 &&
                    kOutputOffset % kSwizzle128AtomBytes == 0 && kOutputBoxBytes % kSwizzle128AtomBytes == 0,
                "every swizzled panel and output box must start on a 1024-byte boundary");
  static_assert(kProducerRegisters + kConsumers * kConsumerRegisters <= kRegistersPerMultiprocessor / kWarpgroupThreads,
                "the register budgets exceed the multiprocessor's register file");
  static_assert(kAllocationBytes <= kMaxBlockSharedBytes, "shared memory above the 227 KiB a block may have");
};

// Hardware barriers other than __syncthreads' 0: one per consumer for its epilogue, one per consumer for its
// turn to issue products (ping-pong).
enum class NamedBarrier : std::uint32_t {
  kEpilogue0 = 1,
  kPingPong0 = kEpilogue0 + static_cast<std::uint32_t>(kMaxConsumers),
};

__device__ __forceinline__ std::uint32_t epilogue_barrier(int consumer) {
  return static_cast<std::uint32_t>(NamedBarrier::kEpilogue0) + static_cast<std::uint32_t>(consumer);
}
__device__ __forceinline__ std::uint32_t ping_pong_barrier(int consumer) {
  return static_cast<std::uint32_t>(NamedBarrier::kPingPong0) + static_cast<std::uint32_t>(consumer);
}

// The shared-memory tiles and mbarriers of one block.
template <class Shape>
struct AttentionStorage {
  unsigned char* base;

  __device__ __forceinline__ unsigned char* q(int stage) const {
    return base + Shape::kQOffset + stage * Shape::kQBytes;
  }
  __device__ __forceinline__ unsigned char* k(int stage) const {
    return base + Shape::kKOffset + stage * Shape::kKvBytes;
  }
  __device__ __forceinline__ unsigned char* v(int stage) const {
    return base + Shape::kVOffset + stage * Shape::kKvBytes;
  }

  // The box of O (64 rows x 64 channels) that consumer `consumer` writes channels of `panel` into.
  __device__ __forceinline__ unsigned char* output_box(int consumer, int panel) const {
    return base + Shape::kOutputOffset + (consumer * Shape::kPanels + panel) * Shape::kOutputBoxBytes;
  }

  __device__ __forceinline__ std::uint64_t* barrier(int index) const {
    return reinterpret_cast<std::uint64_t*>(base + Shape::kBarrierOffset) + index;
  }
  __device__ __forceinline__ std::uint64_t* q_full(int stage) const { return barrier(stage); }
  __device__ __forceinline__ std::uint64_t* q_empty(int stage) const { return barrier(Shape::kQStages + stage); }
  __device__ __forceinline__ std::uint64_t* kv_barrier(int kind, int stage) const {
    return barrier(2 * Shape::kQStages + kind * Shape::kStages + stage);
  }
  __device__ __forceinline__ std::uint64_t* k_full(int stage) const { return kv_barrier(0, stage); }
  __device__ __forceinline__ std::uint64_t* k_empty(int stage) const { return kv_barrier(1, stage); }
  __device__ __forceinline__ std::uint64_t* v_full(int stage) const { return kv_barrier(2, stage); }
  __device__ __forceinline__ std::uint64_t* v_empty(int stage) const { return kv_barrier(3, stage); }

  // One thread, before the block barrier that publishes them: full barriers complete on the producer's
  // expect_tx arrival and the copies' bytes; Q, K and V stages are released by lane 0 of every consumer warp.
  __device__ __forceinline__ void init_barriers() const {
    for (int stage = 0; stage < Shape::kQStages; ++stage) {
      mbarrier_init(q_full(stage), 1);
      mbarrier_init(q_empty(stage), Shape::kConsumerWarps);
    }
    for (int stage = 0; stage < Shape::kStages; ++stage) {
      mbarrier_init(k_full(stage), 1);
      mbarrier_init(k_empty(stage), Shape::kConsumerWarps);
      mbarrier_init(v_full(stage), 1);
      mbarrier_init(v_empty(stage), Shape::kConsumerWarps);
    }
    fence_mbarrier_init();
  }
};

}  // namespace flashattn::cuda::hopper
