#include "cuda/device_info.hpp"

#include <cuda_runtime_api.h>

namespace flashattn::cuda {

std::vector<CudaDeviceInfo> list_devices() {
  int count = 0;
  // No driver or no device is not an error for discovery: it means "none found".
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return {};
  }
  std::vector<CudaDeviceInfo> devices;
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    devices.push_back({i, prop.name, prop.major * 10 + prop.minor, prop.multiProcessorCount, prop.totalGlobalMem});
  }
  return devices;
}

}  // namespace flashattn::cuda
