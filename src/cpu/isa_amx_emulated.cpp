// The AMX kernel set with its tile instructions emulated in plain C++ (kernel/amx_tiles.hpp): slow, never
// picked on its own, only on request (FLASHATTN_CPU_ISA=amx-emulated), so that tests check the AMX
// kernels' logic on machines without AMX.
#define FLASHATTN_CPU_VECTOR_BYTES 64
#define FLASHATTN_CPU_GEMM_ROWS 6
#define FLASHATTN_CPU_GEMM_VECTORS 4
#define FLASHATTN_AMX_EMULATED

#include "backend.hpp"
#include "kernel/backward_amx.hpp"
#include "kernel/forward_amx.hpp"

namespace flashattn::cpu {

const KernelSet kAmxEmulatedKernels = {"amx-emulated", true, &run_forward_with_amx, &run_backward_with_amx};

}  // namespace flashattn::cpu
