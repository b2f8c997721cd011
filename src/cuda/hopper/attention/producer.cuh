// The producer warpgroup's load loop: one thread has the copy engine fill Q once per work tile and K and V
// tile after tile into their circular buffers, each copy completing on its stage's full barrier, each stage
// refilled once the consumers have released it (empty barrier). K of a work tile's first key tile goes out
// before its Q, which waits for the previous tile's output to leave Q's panels.
#pragma once

#include <cuda.h>

#include "cuda/hopper/attention/scheduler.cuh"
#include "cuda/hopper/attention/shape.cuh"
#include "cuda/hopper/tma.cuh"

namespace flashattn::cuda::hopper {

template <class Shape>
class AttentionProducer {
 public:
  __device__ __forceinline__ AttentionProducer(const AttentionStorage<Shape>& smem, const HopperForwardParams& p)
      : smem_(smem), p_(p) {}

  __device__ __forceinline__ void run(const TileScheduler& scheduler) {
    tma_prefetch_descriptor(&p_.q_map);
    tma_prefetch_descriptor(&p_.k_map);
    tma_prefetch_descriptor(&p_.v_map);
    for (int index = scheduler.first(); scheduler.valid(index); index = scheduler.next(index)) {
      const TileWork work = describe<Shape::kBlockM, Shape::kBlockN>(p_.attention, scheduler.at(index));
      const int head_kv = work.tile.head / (p_.attention.heads_q / p_.attention.heads_kv);
      const int batch = work.tile.batch;
      const int begin = work.key_tile_begin;
      if (work.key_tiles() > 0) load_kv(&p_.k_map, k_write_, true, begin, head_kv, batch);
      load_q(work);
      if (work.key_tiles() > 0) load_kv(&p_.v_map, v_write_, false, begin, head_kv, batch);
      for (int key_tile = begin + 1; key_tile < work.key_tile_end; ++key_tile) {
        load_kv(&p_.k_map, k_write_, true, key_tile, head_kv, batch);
        load_kv(&p_.v_map, v_write_, false, key_tile, head_kv, batch);
      }
    }
  }

 private:
  __device__ __forceinline__ void load_q(const TileWork& work) {
    mbarrier_wait(smem_.q_empty(), q_phase_ ^ 1u);
    std::uint64_t* full = smem_.q_full();
    mbarrier_arrive_expect_tx(full, Shape::kQBytes);
#pragma unroll
    for (int panel = 0; panel < Shape::kPanels; ++panel) {
      tma_load_4d(smem_.q() + panel * Shape::kQPanelBytes, &p_.q_map, full, panel * Shape::kPanelColumns, work.m0,
                  work.tile.head, work.tile.batch);
    }
    q_phase_ ^= 1u;
  }

  __device__ __forceinline__ void load_kv(const CUtensorMap* map, PipelineState<Shape::kStages>& write, bool keys,
                                          int key_tile, int head_kv, int batch) {
    mbarrier_wait(keys ? smem_.k_empty(write.stage) : smem_.v_empty(write.stage), write.phase ^ 1u);
    std::uint64_t* full = keys ? smem_.k_full(write.stage) : smem_.v_full(write.stage);
    unsigned char* tile = keys ? smem_.k(write.stage) : smem_.v(write.stage);
    mbarrier_arrive_expect_tx(full, Shape::kKvBytes);
#pragma unroll
    for (int panel = 0; panel < Shape::kPanels; ++panel) {
      tma_load_4d(tile + panel * Shape::kKvPanelBytes, map, full, panel * Shape::kPanelColumns,
                  key_tile * Shape::kBlockN, head_kv, batch);
    }
    write.advance();
  }

  const AttentionStorage<Shape>& smem_;
  const HopperForwardParams& p_;
  PipelineState<Shape::kStages> k_write_;
  PipelineState<Shape::kStages> v_write_;
  std::uint32_t q_phase_ = 0;
};

}  // namespace flashattn::cuda::hopper
