// device_memory.hpp for flashattn_tests, which is built without the CUDA runtime and runs CPU cases only:
// none of its cases has a device copy, so these are reached only by a CUDA case put in the wrong binary.
#include <stdexcept>

#include "device_memory.hpp"

namespace flashattn::test {
namespace {

[[noreturn]] void no_cuda_runtime() {
  throw std::logic_error("CUDA test case in a test binary built without the CUDA runtime (see flashattn_cuda_tests)");
}

}  // namespace

void copy_to_device(Storage&, Device) { no_cuda_runtime(); }
void upload(Storage&, void*) { no_cuda_runtime(); }
void download(Storage&, void*) { no_cuda_runtime(); }
void finish(void*) { no_cuda_runtime(); }
TensorView device_view(const Tensor&) { no_cuda_runtime(); }
testing::AssertionResult device_guards_intact(const Storage&) { no_cuda_runtime(); }

}  // namespace flashattn::test
