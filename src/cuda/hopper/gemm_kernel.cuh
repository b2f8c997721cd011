// C = A * B^T on Hopper: bf16 A (M x K) and B (N x K), both row-major with K contiguous (the layout of Q and K
// in attention), fp32 accumulation, bf16 C (M x N, row-major). Test and benchmark code that proves the
// building blocks of this directory (TMA, mbarrier pipeline, wgmma, warp specialisation) against cuBLAS; it is
// not part of libflashattn's API.
//
// Each block is persistent: it walks the 128 x 256 output tiles blockIdx.x, blockIdx.x + gridDim.x, ... The
// producer warpgroup's first thread streams 128 x 64 slices of A and 256 x 64 slices of B into a 3-stage
// circular buffer; each of the two consumer warpgroups multiplies its 64 rows of the A slice with the whole B
// slice (four m64n256k16 wgmma per stage), keeping one wgmma group in flight while it waits for the next
// stage, then stages its 64 x 256 bf16 result in shared memory and writes it with TMA stores. While the
// consumers finish a tile, the producer already fills the stages with the next one.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "barrier.cuh"
#include "flashattn/errors.hpp"
#include "tensor_map.hpp"
#include "tma.cuh"
#include "warp_specialization.cuh"
#include "wgmma.cuh"

namespace flashattn::cuda::hopper {

// 128 x 256 x 64 tiles, 3 stages, two consumer warpgroups of 64 rows each; producer 40 and consumer 232
// registers per thread fill the register file (40 + 2 * 232 = 504 of 512 per warpgroup lane).
using GemmConfig = TileConfig<128, 256, 64, 3, 2, 40, 232>;

template <class Config>
struct GemmLayout {
  using Element = __nv_bfloat16;
  static constexpr int kElementBytes = sizeof(Element);
  // TMA writes 128B-swizzled tiles whose rows are the slice's 64 K elements: one row is one swizzle row.
  static_assert(Config::kBlockK * kElementBytes == kSwizzle128RowBytes, "a K slice must be one swizzled row");
  // C goes out in boxes of 64 columns, the widest the 128-byte swizzle allows, which keeps the consumers'
  // 4-byte shared-memory stores free of bank conflicts.
  static constexpr int kStoreBoxCols = static_cast<int>(kSwizzle128RowBytes) / kElementBytes;
  static constexpr int kStoreBoxes = Config::kBlockN / kStoreBoxCols;
  static constexpr int kStoreBoxBytes = Config::kConsumerRows * static_cast<int>(kSwizzle128RowBytes);

  static constexpr int kATileBytes = Config::kBlockM * Config::kBlockK * kElementBytes;
  static constexpr int kBTileBytes = Config::kBlockN * Config::kBlockK * kElementBytes;
  static constexpr int kStageBytes = kATileBytes + kBTileBytes;  // what one full barrier waits for
  static constexpr int kConsumerOutputBytes = kStoreBoxes * kStoreBoxBytes;
  static constexpr int kBarrierBytes = sizeof(std::uint64_t);

  // Byte offsets from the 1024-byte aligned start of dynamic shared memory.
  static constexpr int kAOffset = 0;
  static constexpr int kBOffset = kAOffset + Config::kStages * kATileBytes;
  static constexpr int kOutputOffset = kBOffset + Config::kStages * kBTileBytes;
  static constexpr int kFullBarrierOffset = kOutputOffset + Config::kConsumerWarpgroups * kConsumerOutputBytes;
  static constexpr int kEmptyBarrierOffset = kFullBarrierOffset + Config::kStages * kBarrierBytes;
  static constexpr int kUsedBytes = kEmptyBarrierOffset + Config::kStages * kBarrierBytes;
  // Dynamic shared memory is only guaranteed 16-byte alignment; the slack lets the kernel round up.
  static constexpr int kAllocationBytes = kUsedBytes + static_cast<int>(kSwizzle128AtomBytes);

  static_assert(kATileBytes % kSwizzle128AtomBytes == 0 && kBTileBytes % kSwizzle128AtomBytes == 0 &&
                    kStoreBoxBytes % kSwizzle128AtomBytes == 0,
                "every swizzled tile must start on a 1024-byte boundary");
  static_assert(Config::kConsumerRows == kWgmmaM, "each consumer warpgroup issues m64 wgmma");
};

// Named barrier ids of the consumer warpgroups' epilogues (0 is __syncthreads').
inline constexpr std::uint32_t kFirstEpilogueBarrier = 1;
// Output tiles are visited in groups of this many tile rows, column after column inside a group, so that the
// blocks running at the same time share A and B slices in L2 (16 x 8 tiles ~ one wave of 132 SMs).
inline constexpr int kTileGroupRows = 16;

struct TilePosition {
  int m_block;
  int n_block;
};

__device__ __forceinline__ TilePosition tile_position(int tile, int m_blocks, int n_blocks) {
  const int tiles_per_group = kTileGroupRows * n_blocks;
  const int group = tile / tiles_per_group;
  const int first_m_block = group * kTileGroupRows;
  const int group_rows = min(m_blocks - first_m_block, kTileGroupRows);
  const int tile_in_group = tile - group * tiles_per_group;
  return {first_m_block + tile_in_group % group_rows, tile_in_group / group_rows};
}

template <class Config>
struct GemmSharedMemory {
  using Layout = GemmLayout<Config>;
  unsigned char* base;

  __device__ __forceinline__ unsigned char* a_tile(int stage) const {
    return base + Layout::kAOffset + stage * Layout::kATileBytes;
  }
  __device__ __forceinline__ unsigned char* b_tile(int stage) const {
    return base + Layout::kBOffset + stage * Layout::kBTileBytes;
  }
  __device__ __forceinline__ unsigned char* output(int consumer) const {
    return base + Layout::kOutputOffset + consumer * Layout::kConsumerOutputBytes;
  }
  __device__ __forceinline__ std::uint64_t* full_barrier(int stage) const {
    return reinterpret_cast<std::uint64_t*>(base + Layout::kFullBarrierOffset) + stage;
  }
  __device__ __forceinline__ std::uint64_t* empty_barrier(int stage) const {
    return reinterpret_cast<std::uint64_t*>(base + Layout::kEmptyBarrierOffset) + stage;
  }
};

struct GemmGrid {
  int m_blocks;
  int n_blocks;
  int k_blocks;
};

// One thread: waits for each stage to be released, then has TMA fill it with the next slices of A and B.
template <class Config>
__device__ __forceinline__ void produce_tiles(const GemmSharedMemory<Config>& smem, const CUtensorMap* a_map,
                                              const CUtensorMap* b_map, const GemmGrid& grid) {
  tma_prefetch_descriptor(a_map);
  tma_prefetch_descriptor(b_map);
  PipelineState<Config::kStages> write;
  const int tiles = grid.m_blocks * grid.n_blocks;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const TilePosition position = tile_position(tile, grid.m_blocks, grid.n_blocks);
    for (int k_block = 0; k_block < grid.k_blocks; ++k_block) {
      mbarrier_wait(smem.empty_barrier(write.stage), write.phase ^ 1u);
      std::uint64_t* full = smem.full_barrier(write.stage);
      mbarrier_arrive_expect_tx(full, GemmLayout<Config>::kStageBytes);
      const int k = k_block * Config::kBlockK;
      tma_load_2d(smem.a_tile(write.stage), a_map, full, k, position.m_block * Config::kBlockM);
      tma_load_2d(smem.b_tile(write.stage), b_map, full, k, position.n_block * Config::kBlockN);
      write.advance();
    }
  }
}

// The consumer warpgroup's 64 x 256 accumulators -> bf16 in its shared-memory boxes (laid out as the 128-byte
// swizzle of the C tensor map expects) -> TMA stores. The previous tile's stores must have finished reading the
// boxes first.
template <class Config>
__device__ __forceinline__ void store_tile(float (&accumulators)[Config::kBlockN / 2], unsigned char* boxes,
                                           const CUtensorMap* c_map, const TilePosition& position, int consumer) {
  using Layout = GemmLayout<Config>;
  constexpr int kColumnsPerFragment = 8;
  constexpr int kChunkBytes = 16;
  constexpr int kChunksPerRow = static_cast<int>(kSwizzle128RowBytes) / kChunkBytes;
  constexpr int kRowsPerSwizzleAtom = 8;
  const int thread = static_cast<int>(threadIdx.x) % kWarpgroupThreads;
  const int lane = thread % kWarpSize;
  const int warp_row = (thread / kWarpSize) * 16 + lane / 4;
  const int byte_in_chunk = (lane % 4) * 4;
  const std::uint32_t barrier_id = kFirstEpilogueBarrier + static_cast<std::uint32_t>(consumer);

  if (thread == 0) tma_store_wait_read<0>();
  named_barrier_sync(barrier_id, kWarpgroupThreads);
#pragma unroll
  for (int fragment = 0; fragment < Config::kBlockN / kColumnsPerFragment; ++fragment) {
    const int box = fragment / kChunksPerRow;
    const int chunk = fragment % kChunksPerRow;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = warp_row + 8 * half;
      const int swizzled_chunk = chunk ^ (row % kRowsPerSwizzleAtom);
      unsigned char* destination = boxes + box * Layout::kStoreBoxBytes + row * kSwizzle128RowBytes +
                                   swizzled_chunk * kChunkBytes + byte_in_chunk;
      *reinterpret_cast<__nv_bfloat162*>(destination) =
          __floats2bfloat162_rn(accumulators[4 * fragment + 2 * half], accumulators[4 * fragment + 2 * half + 1]);
    }
  }
  fence_proxy_async_shared();
  named_barrier_sync(barrier_id, kWarpgroupThreads);
  if (thread == 0) {
    const int row = position.m_block * Config::kBlockM + consumer * Config::kConsumerRows;
#pragma unroll
    for (int box = 0; box < Layout::kStoreBoxes; ++box) {
      tma_store_2d(c_map, boxes + box * Layout::kStoreBoxBytes,
                   position.n_block * Config::kBlockN + box * Layout::kStoreBoxCols, row);
    }
    tma_store_commit_group();
  }
}

// One consumer warpgroup: for every tile, accumulate its 64 rows over all K slices, releasing each stage as
// soon as the wgmma reading it has completed, then store.
template <class Config>
__device__ __forceinline__ void consume_tiles(const GemmSharedMemory<Config>& smem, const CUtensorMap* c_map,
                                              const GemmGrid& grid, int consumer) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  // Written by the tile's first wgmma (accumulate off); zeroed once so that no register is read undefined.
  float accumulators[Config::kBlockN / 2] = {};
  PipelineState<Config::kStages> read;
  const int tiles = grid.m_blocks * grid.n_blocks;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const TilePosition position = tile_position(tile, grid.m_blocks, grid.n_blocks);
    PipelineState<Config::kStages> release = read;
    for (int k_block = 0; k_block < grid.k_blocks; ++k_block) {
      mbarrier_wait(smem.full_barrier(read.stage), read.phase);
      const std::uint64_t a_descriptor = make_k_major_sw128_descriptor(
          smem.a_tile(read.stage) + consumer * Config::kConsumerRows * kSwizzle128RowBytes);
      const std::uint64_t b_descriptor = make_k_major_sw128_descriptor(smem.b_tile(read.stage));
      wgmma_fence();
#pragma unroll
      for (int k = 0; k < Config::kBlockK; k += kWgmmaK) {
        // The tile's first product overwrites the accumulators: no zeroing pass.
        wgmma_m64k16_ss<Config::kBlockN, __nv_bfloat16>(
            accumulators, advance_descriptor_along_k<__nv_bfloat16>(a_descriptor, k),
            advance_descriptor_along_k<__nv_bfloat16>(b_descriptor, k), k_block > 0 || k > 0);
      }
      wgmma_commit_group();
      // The previous slice's group is complete once at most this one is pending: its stage can be refilled.
      wgmma_wait_group<1>();
      if (k_block > 0) {
        if (lane == 0) mbarrier_arrive(smem.empty_barrier(release.stage));
        release.advance();
      }
      read.advance();
    }
    wgmma_wait_group<0>();
    pin_accumulators(accumulators);
    if (lane == 0) mbarrier_arrive(smem.empty_barrier(release.stage));
    store_tile<Config>(accumulators, smem.output(consumer), c_map, position, consumer);
  }
  // The block's shared memory must outlive the last stores' reads of it.
  if (static_cast<int>(threadIdx.x) % kWarpgroupThreads == 0) tma_store_wait<0>();
}

template <class Config>
__global__ void __launch_bounds__(Config::kThreads, 1)
    gemm_bf16_tn_kernel(const __grid_constant__ CUtensorMap a_map, const __grid_constant__ CUtensorMap b_map,
                        const __grid_constant__ CUtensorMap c_map, GemmGrid grid) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ unsigned char dynamic_shared_memory[];
  const std::uint32_t misalignment = shared_address(dynamic_shared_memory) % kSwizzle128AtomBytes;
  const GemmSharedMemory<Config> smem{dynamic_shared_memory +
                                      (misalignment == 0 ? 0 : kSwizzle128AtomBytes - misalignment)};

  if (threadIdx.x == 0) {
    for (int stage = 0; stage < Config::kStages; ++stage) {
      mbarrier_init(smem.full_barrier(stage), 1);                        // the producer's arrive_expect_tx
      mbarrier_init(smem.empty_barrier(stage), Config::kConsumerWarps);  // lane 0 of each consumer warp
    }
    fence_mbarrier_init();
  }
  __syncthreads();

  const int warpgroup = warpgroup_index();
  if (warp_role(warpgroup) == WarpRole::kProducer) {
    warpgroup_release_registers<Config::kProducerRegisters>();
    if (threadIdx.x == 0) produce_tiles(smem, &a_map, &b_map, grid);
  } else {
    warpgroup_claim_registers<Config::kConsumerRegisters>();
    consume_tiles(smem, &c_map, grid, warpgroup - 1);
  }
#else
  // Built for a GPU without wgmma / setmaxnreg: TiledGemm refuses to launch there.
  __trap();
#endif
}

// A GEMM of fixed pointers and shape: the constructor validates them and encodes the tensor maps once, run()
// launches. M, N and K must be multiples of the tile (Config::kBlockM, kBlockN, kBlockK); the pointers 16-byte
// aligned device memory.
template <class Config>
class TiledGemm {
 public:
  using Layout = GemmLayout<Config>;

  TiledGemm(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* c, int m, int n, int k) {
    require_tile_multiple("m", m, Config::kBlockM);
    require_tile_multiple("n", n, Config::kBlockN);
    require_tile_multiple("k", k, Config::kBlockK);
    grid_ = {m / Config::kBlockM, n / Config::kBlockN, k / Config::kBlockK};

    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    cudaDeviceProp properties{};
    check(cudaGetDeviceProperties(&properties, device), "cudaGetDeviceProperties");
    if (properties.major != 9) {
      throw NotSupported("TiledGemm: device " + std::to_string(device) + " (" + properties.name +
                         ") has compute capability " + std::to_string(properties.major) + "." +
                         std::to_string(properties.minor) + "; the kernel needs 9.x (sm_90a)");
    }
    if (properties.sharedMemPerBlockOptin < static_cast<std::size_t>(Layout::kAllocationBytes)) {
      throw NotSupported("TiledGemm: the kernel needs " + std::to_string(Layout::kAllocationBytes) +
                         " bytes of shared memory per block, the device offers " +
                         std::to_string(properties.sharedMemPerBlockOptin));
    }
    blocks_ = std::min(grid_.m_blocks * grid_.n_blocks, properties.multiProcessorCount);

    const auto element = TensorMapElement::kBFloat16;
    const auto box_k = static_cast<std::uint32_t>(Config::kBlockK);
    a_map_ = make_matrix_tensor_map(a, element, m, k, k, Config::kBlockM, box_k);
    b_map_ = make_matrix_tensor_map(b, element, n, k, k, Config::kBlockN, box_k);
    c_map_ = make_matrix_tensor_map(c, element, m, n, n, Config::kConsumerRows, Layout::kStoreBoxCols);
    check(cudaFuncSetAttribute(gemm_bf16_tn_kernel<Config>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               Layout::kAllocationBytes),
          "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
  }

  void run(cudaStream_t stream) const {
    gemm_bf16_tn_kernel<Config>
        <<<blocks_, Config::kThreads, Layout::kAllocationBytes, stream>>>(a_map_, b_map_, c_map_, grid_);
    check(cudaGetLastError(), "gemm_bf16_tn_kernel launch");
  }

  int blocks() const { return blocks_; }

 private:
  static void require_tile_multiple(const char* name, int value, int tile) {
    if (value <= 0 || value % tile != 0) {
      throw InvalidArgument(
          name, std::to_string(value) + " is not a positive multiple of the GEMM tile's " + std::to_string(tile));
    }
  }

  static void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) {
      throw BackendError(std::string(what) + ": " + cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
    }
  }

  CUtensorMap a_map_{};
  CUtensorMap b_map_{};
  CUtensorMap c_map_{};
  GemmGrid grid_{};
  int blocks_ = 0;
};

// The configuration the tests and the benchmark use.
using HopperGemm = TiledGemm<GemmConfig>;

}  // namespace flashattn::cuda::hopper
