// CPU kernels for AVX2 + FMA + F16C: 256-bit vectors, 16 registers (6 x 2 accumulators).
#define FLASHATTN_CPU_VECTOR_BYTES 32
#define FLASHATTN_CPU_GEMM_ROWS 6
#define FLASHATTN_CPU_GEMM_VECTORS 2

#include "backend.hpp"
#include "kernel/entry.hpp"

namespace flashattn::cpu {

const KernelSet kAvx2Kernels = {"avx2", false, &run_forward, &run_backward};

}  // namespace flashattn::cpu
