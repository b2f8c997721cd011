// The bulk tensor copy engine (TMA): tiles described by a CUtensorMap (tensor_map.hpp) copied between global
// and shared memory without passing through registers. Loads complete on an mbarrier (its transaction count
// drops by the bytes that landed); stores are tracked per thread in bulk groups. Coordinates are in elements,
// innermost dimension first, as the tensor map lists them. The tensor map must live in the kernel's
// parameter space (a __grid_constant__ parameter) or in global memory.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "barrier.cuh"

namespace flashattn::cuda::hopper {

__device__ __forceinline__ std::uint64_t tensor_map_address(const CUtensorMap* tensor_map) {
  return reinterpret_cast<std::uint64_t>(tensor_map);
}

// Fetches the descriptor into the cache ahead of the first copy that uses it.
__device__ __forceinline__ void tma_prefetch_descriptor(const CUtensorMap* tensor_map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(tensor_map_address(tensor_map)) : "memory");
}

// A cache policy (createpolicy) under which the lines a copy reads stay in L2 longer than others: for data that
// is read again, such as an attention head's K and V (hopper/attention/producer.cuh).
__device__ __forceinline__ std::uint64_t l2_evict_last_policy() {
  std::uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(policy));
  return policy;
}

// Global -> shared, one box of the tensor map at (c0, c1[, c2[, c3]]); `barrier` must expect the box's bytes.
__device__ __forceinline__ void tma_load_2d(void* shared_destination, const CUtensorMap* tensor_map,
                                            std::uint64_t* barrier, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(
          shared_address(shared_destination)),
      "l"(tensor_map_address(tensor_map)), "r"(shared_address(barrier)), "r"(c0), "r"(c1)
      : "memory");
}

__device__ __forceinline__ void tma_load_3d(void* shared_destination, const CUtensorMap* tensor_map,
                                            std::uint64_t* barrier, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], "
      "[%2];\n" ::"r"(shared_address(shared_destination)),
      "l"(tensor_map_address(tensor_map)), "r"(shared_address(barrier)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

__device__ __forceinline__ void tma_load_4d(void* shared_destination, const CUtensorMap* tensor_map,
                                            std::uint64_t* barrier, int c0, int c1, int c2, int c3) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], "
      "[%2];\n" ::"r"(shared_address(shared_destination)),
      "l"(tensor_map_address(tensor_map)), "r"(shared_address(barrier)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
      : "memory");
}

// The same with an L2 cache policy (l2_evict_last_policy) for the lines it reads.
__device__ __forceinline__ void tma_load_4d(void* shared_destination, const CUtensorMap* tensor_map,
                                            std::uint64_t* barrier, int c0, int c1, int c2, int c3,
                                            std::uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%3, "
      "%4, %5, %6}], [%2], %7;\n" ::"r"(shared_address(shared_destination)),
      "l"(tensor_map_address(tensor_map)), "r"(shared_address(barrier)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "l"(policy)
      : "memory");
}

// Shared -> global, one box. The shared data must have been written before a fence_proxy_async_shared() in
// each writing thread and a barrier; the issuing thread then tracks the copy with the bulk-group calls below.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* tensor_map, const void* shared_source, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"(
                   tensor_map_address(tensor_map)),
               "r"(shared_address(shared_source)), "r"(c0), "r"(c1)
               : "memory");
}

__device__ __forceinline__ void tma_store_3d(const CUtensorMap* tensor_map, const void* shared_source, int c0, int c1,
                                             int c2) {
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n" ::"l"(
                   tensor_map_address(tensor_map)),
               "r"(shared_address(shared_source)), "r"(c0), "r"(c1), "r"(c2)
               : "memory");
}

__device__ __forceinline__ void tma_store_4d(const CUtensorMap* tensor_map, const void* shared_source, int c0, int c1,
                                             int c2, int c3) {
  asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n" ::"l"(
                   tensor_map_address(tensor_map)),
               "r"(shared_address(shared_source)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
               : "memory");
}

// Closes the bulk group of this thread's stores issued since the last commit.
__device__ __forceinline__ void tma_store_commit_group() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

// Waits until at most `Pending` of this thread's committed store groups have not yet finished reading their
// shared-memory source: after it, that shared memory may be overwritten.
template <int Pending>
__device__ __forceinline__ void tma_store_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(Pending) : "memory");
}

// Waits until at most `Pending` of this thread's committed store groups are incomplete (written to global).
template <int Pending>
__device__ __forceinline__ void tma_store_wait() {
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(Pending) : "memory");
}

}  // namespace flashattn::cuda::hopper
