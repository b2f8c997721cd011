// What this build contains and which devices it sees.
#pragma once

#include <string>
#include <vector>

#include "flashattn/export.hpp"

namespace flashattn {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int compute_capability = 0;  // major * 10 + minor
  int multiprocessors = 0;
  std::size_t memory_bytes = 0;
};

struct BuildInfo {
  std::string version;
  bool cpu_backend = true;
  bool cuda_compiled = false;  // the CUDA runtime is linked in (device discovery)
  bool cuda_kernels = false;   // attention kernels for CUDA devices exist in this build
  std::string cuda_archs;      // GPU architectures the kernels were compiled for, e.g. "80, 90a"
  std::string cuda_head_dims;  // compiled kernel head dimensions, e.g. "64, 128, 256"
  std::string cuda_path;       // which kernel family CUDA calls run on
  std::string cpu_isa;         // the instruction set the CPU kernels dispatch to on this machine
  int cpu_threads = 0;         // OpenMP's default thread count
};

FLASHATTN_API BuildInfo build_info();
// CUDA devices visible to this process; empty without CUDA or without a driver.
FLASHATTN_API std::vector<CudaDeviceInfo> cuda_devices();

}  // namespace flashattn
