#include "backend.hpp"

#include <cstdlib>
#include <cstring>

#if defined(FLASHATTN_X86_ISAS)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "flashattn/errors.hpp"

namespace flashattn::cpu {
namespace {

#if defined(FLASHATTN_X86_ISAS)
bool avx512_supported() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

// AMX-TILE and AMX-BF16 (CPUID leaf 7, EDX bits 24 and 22), and the kernel's permission to use the tile
// registers, which Linux grants per process on request.
bool amx_usable() {
  constexpr unsigned kAmxBf16 = 1u << 22;
  constexpr unsigned kAmxTile = 1u << 24;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0 || (edx & kAmxBf16) == 0 || (edx & kAmxTile) == 0) {
    return false;
  }
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
#endif

const KernelSet& select_kernels() {
  const char* requested = std::getenv("FLASHATTN_CPU_ISA");
  const auto allowed = [&](const char* isa) { return requested == nullptr || std::strcmp(requested, isa) == 0; };
#if defined(FLASHATTN_X86_ISAS)
  __builtin_cpu_init();
  if (requested != nullptr && std::strcmp(requested, "amx-emulated") == 0 && avx512_supported()) {
    return kAmxEmulatedKernels;
  }
  if (allowed("avx512-amx") && avx512_supported() && amx_usable()) return kAvx512AmxKernels;
  if (allowed("avx512") && avx512_supported()) return kAvx512Kernels;
  if (allowed("avx2") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    return kAvx2Kernels;
  }
#endif
  return kGenericKernels;
}

}  // namespace

const KernelSet& kernels() {
  static const KernelSet& selected = select_kernels();
  return selected;
}

void forward(const detail::Problem& problem) {
  const KernelSet& set = kernels();
  const ForwardPlan plan = plan_forward(problem, set.amx_bf16 && problem.dtype == DType::kBFloat16);
  set.forward(problem, plan);
}

void backward(const detail::Problem& problem) {
  const KernelSet& set = kernels();
  const BackwardPlan plan = plan_backward(problem, set.amx_bf16 && problem.dtype == DType::kBFloat16);
  set.backward(problem, plan);
}

}  // namespace flashattn::cpu
