// CPU kernels for AVX-512 (F, BW, VL, DQ): 512-bit vectors, 32 registers (6 x 4 accumulators).
#define FLASHATTN_CPU_VECTOR_BYTES 64
#define FLASHATTN_CPU_GEMM_ROWS 6
#define FLASHATTN_CPU_GEMM_VECTORS 4

#include "backend.hpp"
#include "kernel/entry.hpp"

namespace flashattn::cpu {

const KernelSet kAvx512Kernels = {"avx512", false, &run_forward, &run_backward};

}  // namespace flashattn::cpu
