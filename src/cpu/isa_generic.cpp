// CPU kernels for baseline x86-64 / any CPU: 128-bit vectors.
#define FLASHATTN_CPU_VECTOR_BYTES 16
#define FLASHATTN_CPU_GEMM_ROWS 6
#define FLASHATTN_CPU_GEMM_VECTORS 2

#include "backend.hpp"
#include "kernel/entry.hpp"

namespace flashattn::cpu {

const KernelSet kGenericKernels = {"generic", false, &run_forward, &run_backward};

}  // namespace flashattn::cpu
