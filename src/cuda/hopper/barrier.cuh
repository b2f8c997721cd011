// Synchronisation primitives of the Hopper kernels: shared-memory mbarriers (with the transaction counts the
// bulk tensor copies complete on), named barriers for a subset of the block's warps, and the proxy fences that
// order ordinary shared-memory accesses against the tensor cores and the copy engine. One instruction each;
// the semantics are the PTX ISA's ("mbarrier", "bar.sync", "membar/fence").
#pragma once

#include <cstdint>

namespace flashattn::cuda::hopper {

// The 32-bit shared-window address that PTX's .shared instructions take.
__device__ __forceinline__ std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

// An mbarrier whose phase completes after `arrivals` arrivals (and, once expect_tx was called in the phase,
// after that many bytes of asynchronous copies have landed).
__device__ __forceinline__ void mbarrier_init(std::uint64_t* barrier, std::uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(barrier)), "r"(arrivals) : "memory");
}

// Makes the initialisations above visible to the other threads and to the copy engine; a block barrier must
// follow before anyone else uses the mbarriers.
__device__ __forceinline__ void fence_mbarrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

// One arrival that also announces `bytes` more bytes of asynchronous copies completing on this phase.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(std::uint64_t* barrier, std::uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(shared_address(barrier)), "r"(bytes)
               : "memory");
}

__device__ __forceinline__ void mbarrier_arrive(std::uint64_t* barrier) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(shared_address(barrier)) : "memory");
}

// True once the phase of parity `phase_parity` has completed. A freshly initialised barrier is in phase 0, so
// waiting on parity 1 returns at once: producers wait on the opposite parity of consumers for that reason.
__device__ __forceinline__ bool mbarrier_try_wait(std::uint64_t* barrier, std::uint32_t phase_parity) {
  std::uint32_t completed;
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%1], %2;\n"
      "selp.u32 %0, 1, 0, done;\n"
      "}\n"
      : "=r"(completed)
      : "r"(shared_address(barrier)), "r"(phase_parity)
      : "memory");
  return completed != 0;
}

// try_wait suspends the thread for a hardware-chosen time before it gives up, so the loop does not spin hot.
__device__ __forceinline__ void mbarrier_wait(std::uint64_t* barrier, std::uint32_t phase_parity) {
  while (!mbarrier_try_wait(barrier, phase_parity)) {
  }
}

// Orders this thread's earlier generic-proxy shared-memory accesses before later async-proxy ones (wgmma
// operand reads, bulk tensor stores): each thread that wrote shared memory the copy engine reads runs it
// before the barrier that hands the data over.
__device__ __forceinline__ void fence_proxy_async_shared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Barrier among `thread_count` threads (a multiple of 32) using hardware barrier `barrier_id` (0 is the one
// __syncthreads uses; 1..15 are free for groups of warps such as one warpgroup).
__device__ __forceinline__ void named_barrier_sync(std::uint32_t barrier_id, std::uint32_t thread_count) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(barrier_id), "r"(thread_count) : "memory");
}

// Arrives at barrier `barrier_id` without waiting: the threads that bar.sync on it continue once the arrivals
// and their own add up to `thread_count`. How one warpgroup lets another go ahead.
__device__ __forceinline__ void named_barrier_arrive(std::uint32_t barrier_id, std::uint32_t thread_count) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(barrier_id), "r"(thread_count) : "memory");
}

}  // namespace flashattn::cuda::hopper
