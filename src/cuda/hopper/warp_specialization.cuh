// Warp specialisation for the Hopper kernels: the block is split into warpgroups (4 consecutive warps, the unit
// that issues wgmma), warpgroup 0 produces (one of its threads issues the TMA copies) and the others consume
// (wgmma and the epilogue). Registers move from the producer to the consumers with setmaxnreg, and the
// shared-memory stages between them form a circular buffer guarded by full / empty mbarriers.
#pragma once

#include <cstdint>

namespace flashattn::cuda::hopper {

inline constexpr int kWarpSize = 32;
inline constexpr int kWarpsPerWarpgroup = 4;
inline constexpr int kWarpgroupThreads = kWarpsPerWarpgroup * kWarpSize;
// Registers of one multiprocessor (and so of a block that owns it alone), and the setmaxnreg range and step.
inline constexpr int kRegistersPerMultiprocessor = 65536;
inline constexpr int kMinRegistersPerThread = 24;
inline constexpr int kMaxRegistersPerThread = 256;
inline constexpr int kRegisterGranularity = 8;

enum class WarpRole { kProducer, kConsumer };

// The role of warpgroup `warpgroup`: the first one loads, the others compute.
__host__ __device__ constexpr WarpRole warp_role(int warpgroup) {
  return warpgroup == 0 ? WarpRole::kProducer : WarpRole::kConsumer;
}

// The shape of a warp-specialised kernel: a BlockM x BlockN output tile, split by rows among the consumer
// warpgroups, accumulated over BlockK-deep slices held in Stages shared-memory stages; register budgets that
// setmaxnreg hands the producer and the consumers (the producer only issues copies, the consumers hold the
// accumulators).
template <int BlockM, int BlockN, int BlockK, int Stages, int ConsumerWarpgroups, int ProducerRegisters,
          int ConsumerRegisters>
struct TileConfig {
  static constexpr int kBlockM = BlockM;
  static constexpr int kBlockN = BlockN;
  static constexpr int kBlockK = BlockK;
  static constexpr int kStages = Stages;
  static constexpr int kConsumerWarpgroups = ConsumerWarpgroups;
  static constexpr int kConsumerWarps = ConsumerWarpgroups * kWarpsPerWarpgroup;
  static constexpr int kThreads = (1 + ConsumerWarpgroups) * kWarpgroupThreads;
  // Rows of the output tile that one consumer warpgroup computes.
  static constexpr int kConsumerRows = BlockM / ConsumerWarpgroups;
  static constexpr int kProducerRegisters = ProducerRegisters;
  static constexpr int kConsumerRegisters = ConsumerRegisters;

  static_assert(Stages >= 2, "TileConfig: the circular buffer needs at least two stages");
  static_assert(BlockM % ConsumerWarpgroups == 0, "TileConfig: BlockM must split evenly among the consumers");
  static_assert(ProducerRegisters % kRegisterGranularity == 0 && ConsumerRegisters % kRegisterGranularity == 0,
                "TileConfig: setmaxnreg takes multiples of 8");
  static_assert(ProducerRegisters >= kMinRegistersPerThread && ConsumerRegisters <= kMaxRegistersPerThread,
                "TileConfig: setmaxnreg takes 24 to 256 registers");
  static_assert((ProducerRegisters + ConsumerWarpgroups * ConsumerRegisters) * kWarpgroupThreads <=
                    kRegistersPerMultiprocessor,
                "TileConfig: the register budgets exceed the multiprocessor's register file");
};

// Gives registers back (the producer's warpgroup) or takes them (the consumers'): every thread of the
// warpgroup executes it. It takes effect only when the kernel has a register cap at entry
// (__launch_bounds__(threads, 1)), or ptxas ignores it with warning C7508.
template <int Registers>
__device__ __forceinline__ void warpgroup_release_registers() {
  static_assert(Registers % kRegisterGranularity == 0 && Registers >= kMinRegistersPerThread, "setmaxnreg range");
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Registers));
}

template <int Registers>
__device__ __forceinline__ void warpgroup_claim_registers() {
  static_assert(Registers % kRegisterGranularity == 0 && Registers <= kMaxRegistersPerThread, "setmaxnreg range");
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Registers));
}

// This thread's warpgroup, read through a shuffle so that the compiler knows it is uniform across the warp
// (role branches then stay warp-uniform, which setmaxnreg and wgmma's .aligned forms require).
__device__ __forceinline__ int warpgroup_index() {
  return __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x) / kWarpgroupThreads, 0);
}

// Position in the circular buffer of Stages stages: the stage, and the parity of the mbarrier phase that
// completes when that stage is next filled (full barriers) or emptied (empty barriers).
template <int Stages>
struct PipelineState {
  int stage = 0;
  std::uint32_t phase = 0;

  __device__ __forceinline__ void advance() {
    if (++stage == Stages) {
      stage = 0;
      phase ^= 1u;
    }
  }
};

}  // namespace flashattn::cuda::hopper
