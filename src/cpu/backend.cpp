#include "backend.hpp"

#include <cstdlib>
#include <cstring>

#include "flashattn/errors.hpp"

namespace flashattn::cpu {
namespace {

const KernelSet& select_kernels() {
  const char* requested = std::getenv("FLASHATTN_CPU_ISA");
  const auto allowed = [&](const char* isa) { return requested == nullptr || std::strcmp(requested, isa) == 0; };
#if defined(FLASHATTN_X86_ISAS)
  __builtin_cpu_init();
  if (allowed("avx512") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    return kAvx512Kernels;
  }
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
  const ForwardPlan plan = plan_forward(problem);
  kernels().forward(problem, plan);
}

void backward(const detail::Problem& problem) {
  const BackwardPlan plan = plan_backward(problem);
  kernels().backward(problem, plan);
}

}  // namespace flashattn::cpu
