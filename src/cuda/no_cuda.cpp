// Device discovery for builds without CUDA (-DFLASHATTN_CUDA=OFF or no nvcc).
#include "cuda/device_info.hpp"

namespace flashattn::cuda {

std::vector<CudaDeviceInfo> list_devices() { return {}; }

}  // namespace flashattn::cuda
