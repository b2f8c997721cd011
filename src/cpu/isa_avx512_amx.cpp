// CPU kernels for AVX-512 machines with AMX (Sapphire Rapids and later): the AVX-512 kernels, with the
// bf16 forward on AMX tiles.
#define FLASHATTN_CPU_VECTOR_BYTES 64
#define FLASHATTN_CPU_GEMM_ROWS 6
#define FLASHATTN_CPU_GEMM_VECTORS 4

#include "backend.hpp"
#include "kernel/backward_amx.hpp"
#include "kernel/forward_amx.hpp"

namespace flashattn::cpu {

const KernelSet kAvx512AmxKernels = {"avx512-amx", true, &run_forward_with_amx, &run_backward_with_amx};

}  // namespace flashattn::cpu
