// The CPU backend: kernels compiled once per instruction set, the best one picked at run time.
#pragma once

#include "plan.hpp"
#include "problem.hpp"

namespace flashattn::cpu {

struct KernelSet {
  const char* isa;
  bool amx_bf16;  // the bf16 forward runs on AMX tiles (its plan asks for the VNNI layout)
  void (*forward)(const detail::Problem&, const ForwardPlan&);
  void (*backward)(const detail::Problem&, const BackwardPlan&);
};

// One per instruction-set translation unit (isa_*.cpp).
extern const KernelSet kGenericKernels;
#if defined(FLASHATTN_X86_ISAS)
extern const KernelSet kAvx2Kernels;
extern const KernelSet kAvx512Kernels;
extern const KernelSet kAvx512AmxKernels;
extern const KernelSet kAmxEmulatedKernels;
#endif

// The kernels for this machine: the widest instruction set it supports, unless the environment variable
// FLASHATTN_CPU_ISA (generic, avx2, avx512, avx512-amx) asks for a narrower one (tests run every path
// that way; amx-emulated, the AMX kernels with emulated tiles, runs only when asked for).
const KernelSet& kernels();

void forward(const detail::Problem& problem);
void backward(const detail::Problem& problem);

}  // namespace flashattn::cpu
