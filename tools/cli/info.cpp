#include "info.hpp"

#include <cstdio>
#include <iostream>
#include <span>
#include <vector>

#include "args.hpp"
#include "flashattn/info.hpp"

namespace flashattn::cli {
namespace {

constexpr double kBytesPerGiB = 1024.0 * 1024.0 * 1024.0;
constexpr int kComputeCapabilityMajorScale = 10;  // compute_capability = major * 10 + minor

const char* kInfoUsage =
    "usage: flashattn info\n"
    "\n"
    "Prints the library version, the backends compiled into this build (the CPU backend's instruction set\n"
    "and default thread count; whether CUDA is linked and has attention kernels) and the CUDA devices found.\n";

const char* yes_no(bool value) { return value ? "yes" : "no"; }

}  // namespace

int run_info_command(int argc, char* const* argv) {
  FlagParser flags("flashattn info");
  flags.parse(std::span<char* const>(argv, static_cast<std::size_t>(argc)));
  if (flags.help_requested()) {
    std::cout << kInfoUsage;
    return kExitOk;
  }
  const BuildInfo info = build_info();
  std::cout << "flashattn " << info.version << "\n"
            << "backends:\n"
            << "  cpu   " << yes_no(info.cpu_backend) << ": ISA " << info.cpu_isa << ", " << info.cpu_threads
            << " threads by default (OpenMP)\n"
            << "  cuda  compiled in: " << yes_no(info.cuda_compiled)
            << ", attention kernels: " << yes_no(info.cuda_kernels) << "\n";
  if (info.cuda_kernels) {
    std::cout << "        " << info.cuda_path << "; architectures " << info.cuda_archs << "; head dims "
              << info.cuda_head_dims << "\n";
  }
  const std::vector<CudaDeviceInfo> devices = cuda_devices();
  if (devices.empty()) {
    std::cout << "CUDA devices: no CUDA device found" << (info.cuda_compiled ? "" : " (built without CUDA)") << "\n";
  } else {
    std::cout << "CUDA devices:\n";
    for (const CudaDeviceInfo& device : devices) {
      char memory[32];
      std::snprintf(memory, sizeof memory, "%.1f GiB", static_cast<double>(device.memory_bytes) / kBytesPerGiB);
      std::cout << "  " << device.index << ": " << device.name << ", compute capability "
                << device.compute_capability / kComputeCapabilityMajorScale << "."
                << device.compute_capability % kComputeCapabilityMajorScale << ", " << device.multiprocessors
                << " multiprocessors, " << memory << "\n";
    }
  }
  return kExitOk;
}

}  // namespace flashattn::cli
