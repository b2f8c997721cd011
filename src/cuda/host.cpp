#include "cuda/host.hpp"

#include <algorithm>
#include <cstddef>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <tuple>

#include "cuda/backend.hpp"
#include "cuda/tiles.hpp"
#include "flashattn/errors.hpp"

namespace flashattn::cuda {
namespace {

constexpr int kMinComputeCapability = 80;

}  // namespace

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    cudaGetLastError();
    throw BackendError(std::string("cuda: ") + what + ": " + cudaGetErrorString(status));
  }
}

DeviceTraits device_traits(int device) {
  DeviceTraits traits;
  int major = 0;
  int minor = 0;
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "compute capability");
  check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "compute capability");
  check(cudaDeviceGetAttribute(&traits.multiprocessors, cudaDevAttrMultiProcessorCount, device), "SM count");
  traits.compute_capability = major * 10 + minor;
  return traits;
}

bool head_dim_compiled(int head_dim) {
  switch (head_dim) {
#if defined(FLASHATTN_CUDA_HDIM_64)
    case 64:
      return true;
#endif
#if defined(FLASHATTN_CUDA_HDIM_128)
    case 128:
      return true;
#endif
#if defined(FLASHATTN_CUDA_HDIM_256)
    case 256:
      return true;
#endif
    default:
      return false;
  }
}

// The smallest compiled kernel head dimension that holds both q's and v's head dimension.
int kernel_head_dim(std::int64_t head_dim, std::int64_t head_dim_v) {
  const std::int64_t needed = std::max(head_dim, head_dim_v);
  for (int d : kCompiledHeadDims) {
    if (d >= needed && head_dim_compiled(d)) return d;
  }
  throw NotSupported("q: head_dim " + std::to_string(head_dim) + " / head_dim_v " + std::to_string(head_dim_v) +
                     ": this build has no CUDA kernel that large (compiled head dims: " + compiled_head_dims() + ")");
}

void allow_dynamic_shared_memory(const void* kernel, int bytes) {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  static std::mutex mutex;
  static std::set<std::tuple<const void*, int, int>> allowed;  // (kernel, device, bytes)
  const std::lock_guard<std::mutex> lock(mutex);
  if (allowed.count({kernel, device, bytes}) != 0) return;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
        "cudaFuncSetAttribute (dynamic shared memory)");
  allowed.insert({kernel, device, bytes});
}

cudaLaunchAttribute cluster_dimension(int cluster_size) {
  cudaLaunchAttribute cluster{};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = static_cast<unsigned>(cluster_size);
  cluster.val.clusterDim.y = 1;
  cluster.val.clusterDim.z = 1;
  return cluster;
}

int max_active_clusters(const void* kernel, int threads, int shared_bytes, int cluster_size) {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  static std::mutex mutex;
  static std::map<std::tuple<const void*, int, int>, int> known;  // (kernel, device, cluster size) -> clusters
  const std::lock_guard<std::mutex> lock(mutex);
  const auto found = known.find({kernel, device, cluster_size});
  if (found != known.end()) return found->second;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>(cluster_size));
  config.blockDim = dim3(static_cast<unsigned>(threads));
  config.dynamicSmemBytes = static_cast<std::size_t>(shared_bytes);
  cudaLaunchAttribute cluster = cluster_dimension(cluster_size);
  config.attrs = &cluster;
  config.numAttrs = 1;
  int clusters = 0;
  check(cudaOccupancyMaxActiveClusters(&clusters, kernel, &config), "cudaOccupancyMaxActiveClusters");
  known[{kernel, device, cluster_size}] = clusters;
  return clusters;
}

void check_compute_capability(int device, const DeviceTraits& traits) {
  if (traits.compute_capability < kMinComputeCapability) {
    throw NotSupported("q: " + device_name(Device::cuda(device)) + " has compute capability " +
                       std::to_string(traits.compute_capability) + "; the CUDA kernels need 8.0 (Ampere) or newer");
  }
}

// The kernels move rows in 16-byte pieces (cp.async, vector stores): every token row must start on a
// 16-byte boundary, so pointers and the token, head and batch strides must be multiples of 8 elements.
void check_alignment(const char* name, const detail::TokenTensor& t, bool used) {
  constexpr std::int64_t kAlignElements = 8;
  constexpr std::uintptr_t kAlignBytes = 16;
  if (!used) return;
  const bool aligned = reinterpret_cast<std::uintptr_t>(t.data) % kAlignBytes == 0 &&
                       t.token_stride % kAlignElements == 0 && t.head_stride % kAlignElements == 0 &&
                       t.batch_stride % kAlignElements == 0;
  if (!aligned) {
    throw NotSupported(std::string(name) +
                       ": the CUDA kernels need 16-byte aligned rows: a 16-byte aligned pointer and batch, token "
                       "and head strides that are multiples of 8 elements (copy the tensor to make it contiguous)");
  }
}

}  // namespace flashattn::cuda
