#include "flashattn/info.hpp"

#include <omp.h>

#include "cpu/backend.hpp"
#include "cuda/device_info.hpp"
#include "flashattn/version.hpp"

namespace flashattn {

BuildInfo build_info() {
  BuildInfo info;
  info.version = FLASHATTN_VERSION;
  info.cpu_backend = true;
#if defined(FLASHATTN_WITH_CUDA)
  info.cuda_compiled = true;
#endif
  info.cuda_kernels = false;
  info.cpu_isa = cpu::kernels().isa;
  info.cpu_threads = omp_get_max_threads();
  return info;
}

std::vector<CudaDeviceInfo> cuda_devices() { return cuda::list_devices(); }

}  // namespace flashattn
