#include "flashattn/info.hpp"

#include <omp.h>

#include "cpu/backend.hpp"
#include "cuda/device_info.hpp"
#if defined(FLASHATTN_WITH_CUDA)
#include "cuda/backend.hpp"
#endif
#include "flashattn/version.hpp"

namespace flashattn {

BuildInfo build_info() {
  BuildInfo info;
  info.version = FLASHATTN_VERSION;
  info.cpu_backend = true;
#if defined(FLASHATTN_WITH_CUDA)
  info.cuda_compiled = true;
  info.cuda_kernels = true;
  info.cuda_archs = cuda::compiled_archs();
  info.cuda_head_dims = cuda::compiled_head_dims();
#if defined(FLASHATTN_CUDA_HOPPER)
  info.cuda_path =
      "forward: Hopper sm_90a kernel (wgmma + TMA, warp-specialised, persistent) on compute capability 9.0 for "
      "batched calls, the portable kernel for variable-length and split-KV calls and elsewhere "
      "(FLASHATTN_CUDA_PATH=auto|portable|hopper); backward and KV-cache: portable sm_80+ kernels (mma.sync)";
#else
  info.cuda_path = "portable sm_80+ kernels (mma.sync, FlashAttention-2 algorithm)";
#endif
#endif
  info.cpu_isa = cpu::kernels().isa;
  info.cpu_threads = omp_get_max_threads();
  return info;
}

std::vector<CudaDeviceInfo> cuda_devices() { return cuda::list_devices(); }

}  // namespace flashattn
