// Thread-block clusters (sm_90): a block's rank in its cluster, the cluster-wide barrier, and loads from another
// block's shared memory (distributed shared memory). One instruction each; the semantics are the PTX ISA's
// ("barrier.cluster", "mapa", "ld.shared::cluster").
#pragma once

#include <cstdint>

#include "cuda/hopper/barrier.cuh"

namespace flashattn::cuda::hopper {

__device__ __forceinline__ std::uint32_t cluster_rank() {
  std::uint32_t rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  return rank;
}

// Every thread of every block of the cluster, convergent: the release / acquire pair makes each block's
// shared-memory writes before the barrier visible to every block's reads after it.
__device__ __forceinline__ void cluster_sync() {
  asm volatile(
      "barrier.cluster.arrive.release.aligned;\n"
      "barrier.cluster.wait.acquire.aligned;\n" ::
          : "memory");
}

// The address of `pointer` (in this block's shared memory) in block `rank`'s shared memory, for the
// ld.shared::cluster loads below.
__device__ __forceinline__ std::uint32_t cluster_address(const void* pointer, std::uint32_t rank) {
  std::uint32_t address;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(address) : "r"(shared_address(pointer)), "r"(rank));
  return address;
}

__device__ __forceinline__ float load_cluster_float(std::uint32_t address) {
  float value;
  asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(value) : "r"(address) : "memory");
  return value;
}

__device__ __forceinline__ float4 load_cluster_float4(std::uint32_t address) {
  float4 value;
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
               : "=f"(value.x), "=f"(value.y), "=f"(value.z), "=f"(value.w)
               : "r"(address)
               : "memory");
  return value;
}

}  // namespace flashattn::cuda::hopper
