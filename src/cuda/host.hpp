// Host-side pieces every CUDA entry point shares (backend.cpp, kvcache.cpp): error checks, the device
// scope, the device's traits, and the rules the kernels put on their arguments beyond validate*.cpp's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "token_tensor.hpp"

namespace flashattn::cuda {

// Throws BackendError naming `what` when status is an error (and clears CUDA's sticky last error).
void check(cudaError_t status, const char* what);

// Makes the tensors' device current for the call and restores the caller's afterwards.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(previous_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = 0;
};

struct DeviceTraits {
  int compute_capability = 0;
  int multiprocessors = 0;
};

DeviceTraits device_traits(int device);

// Lets `kernel` launch with `bytes` of dynamic shared memory on the current device; asks CUDA once per kernel,
// device and size. The attribute belongs to the device's context: a once-per-process flag left every device but
// the first without it, and their launches failed.
void allow_dynamic_shared_memory(const void* kernel, int bytes);

// The launch attribute of clusters of `cluster_size` blocks along x (Hopper and later).
cudaLaunchAttribute cluster_dimension(int cluster_size);

// Clusters of `cluster_size` blocks of `kernel` (`threads` threads, `shared_bytes` of dynamic shared memory, allowed
// already) the current device holds at once (cudaOccupancyMaxActiveClusters); asks CUDA once per kernel, device
// and cluster size. Hopper and later.
int max_active_clusters(const void* kernel, int threads, int shared_bytes, int cluster_size);

// The smallest compiled kernel head dimension that holds both head dimensions (NotSupported if none).
int kernel_head_dim(std::int64_t head_dim, std::int64_t head_dim_v);
// NotSupported below compute capability 8.0.
void check_compute_capability(int device, const DeviceTraits& traits);
// The kernels move rows in 16-byte pieces: NotSupported unless `t`'s rows are 16-byte aligned.
void check_alignment(const char* name, const detail::TokenTensor& t, bool used);

}  // namespace flashattn::cuda
