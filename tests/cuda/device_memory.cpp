// device_memory.hpp with the CUDA runtime, for flashattn_cuda_tests.
#include "device_memory.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace flashattn::test {

// A storage's copy in device memory: one allocation of [guard | the storage's bytes | guard].
struct DeviceCopy {
  Device device;
  std::byte* allocation = nullptr;
  std::size_t guard_bytes = 0;
  std::size_t storage_bytes = 0;

  std::byte* data() const { return allocation + guard_bytes; }
  ~DeviceCopy() {
    if (allocation != nullptr) cudaFree(allocation);
  }
};

namespace {

// Each guard is as large as the storage and at least this large, so that a write up to a whole tensor past
// either end still lands in a guard; a multiple of 256 bytes keeps the copy as aligned as cudaMalloc's
// memory, like a PyTorch tensor's.
constexpr std::size_t kMinGuardBytes = 4096;
constexpr std::size_t kAllocationAlignment = 256;
// Bytes of 0xFF are NaN in fp32, fp16 and bf16 alike: the guards carry the same poison as the outputs.
constexpr unsigned char kPoisonByte = 0xFF;

void check(cudaError_t status, const std::string& what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(what + ": " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
  }
}

cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

const DeviceCopy& copy_of(const Storage& storage) {
  if (!storage.device_copy) throw std::logic_error("the storage has no device copy (copy_to_device)");
  return *storage.device_copy;
}

// The first byte of a guard that no longer holds the poison, or -1.
std::ptrdiff_t first_overwritten(const std::byte* device_guard, std::size_t bytes) {
  std::vector<unsigned char> host(bytes);
  check(cudaMemcpy(host.data(), device_guard, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy (guard)");
  const auto it = std::find_if(host.begin(), host.end(), [](unsigned char b) { return b != kPoisonByte; });
  return it == host.end() ? -1 : it - host.begin();
}

}  // namespace

void copy_to_device(Storage& storage, Device device) {
  if (storage.device_copy) return;
  check(cudaSetDevice(device.index), "cudaSetDevice");
  auto copy = std::make_shared<DeviceCopy>();
  copy->device = device;
  copy->storage_bytes = storage.bytes.size();
  const std::size_t guard = std::max(kMinGuardBytes, copy->storage_bytes);
  copy->guard_bytes = (guard + kAllocationAlignment - 1) / kAllocationAlignment * kAllocationAlignment;
  const std::size_t total = copy->storage_bytes + 2 * copy->guard_bytes;
  void* allocation = nullptr;
  check(cudaMalloc(&allocation, total), "cudaMalloc of " + std::to_string(total) + " bytes");
  copy->allocation = static_cast<std::byte*>(allocation);
  check(cudaMemset(allocation, kPoisonByte, total), "cudaMemset");
  storage.device_copy = std::move(copy);
  upload(storage, nullptr);
}

void upload(Storage& storage, void* stream) {
  const DeviceCopy& copy = copy_of(storage);
  if (copy.storage_bytes > 0) {
    check(cudaMemcpyAsync(copy.data(), storage.bytes.data(), copy.storage_bytes, cudaMemcpyHostToDevice,
                          as_stream(stream)),
          "cudaMemcpyAsync (to the device)");
  }
  // Pageable host memory: the copy may still be in flight when cudaMemcpyAsync returns.
  check(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize after an upload");
}

void download(Storage& storage, void* stream) {
  const DeviceCopy& copy = copy_of(storage);
  if (copy.storage_bytes > 0) {
    check(cudaMemcpyAsync(storage.bytes.data(), copy.data(), copy.storage_bytes, cudaMemcpyDeviceToHost,
                          as_stream(stream)),
          "cudaMemcpyAsync (to the host)");
  }
  check(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize after a download");
}

void finish(void* stream) {
  check(cudaStreamSynchronize(as_stream(stream)), "the library's work on the stream");
  check(cudaGetLastError(), "cudaGetLastError after the library's call");
}

TensorView device_view(const Tensor& t) {
  const DeviceCopy& copy = copy_of(*t.storage);
  const std::ptrdiff_t offset = static_cast<const std::byte*>(t.view.data) - t.storage->bytes.data();
  TensorView view = t.view;
  view.data = copy.data() + offset;
  view.device = copy.device;
  return view;
}

testing::AssertionResult device_guards_intact(const Storage& storage) {
  const DeviceCopy& copy = copy_of(storage);
  const std::ptrdiff_t before = first_overwritten(copy.allocation, copy.guard_bytes);
  if (before >= 0) {
    return testing::AssertionFailure() << "device memory " << copy.guard_bytes - before
                                       << " bytes before the tensor's storage was written";
  }
  const std::ptrdiff_t after = first_overwritten(copy.data() + copy.storage_bytes, copy.guard_bytes);
  if (after >= 0) {
    return testing::AssertionFailure() << "device memory " << after
                                       << " bytes past the end of the tensor's storage was written";
  }
  return testing::AssertionSuccess();
}

}  // namespace flashattn::test
