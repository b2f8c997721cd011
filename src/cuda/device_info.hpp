// CUDA device discovery through the CUDA runtime, when the build has it.
#pragma once

#include <vector>

#include "flashattn/info.hpp"

namespace flashattn::cuda {

// Empty when the build has no CUDA, or no driver / device is present.
std::vector<CudaDeviceInfo> list_devices();

}  // namespace flashattn::cuda
