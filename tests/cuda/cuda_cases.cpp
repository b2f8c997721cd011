#include "cuda_cases.hpp"

#include <cuda_runtime_api.h>

#include <cmath>
#include <set>

#include "device_memory.hpp"
#include "reference/reference.hpp"

namespace flashattn::test {

std::optional<std::string> cuda_unavailable_reason() {
  // Asked once per process: the answer cannot change, and a failed query is not retried by the runtime.
  static const std::optional<std::string> reason = []() -> std::optional<std::string> {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      return std::string("no CUDA device: cudaGetDeviceCount failed with ") + cudaGetErrorName(status) + " (" +
             cudaGetErrorString(status) + ")";
    }
    if (count == 0) return std::string("no CUDA device: cudaGetDeviceCount found none");
    return std::nullopt;
  }();
  return reason;
}

std::vector<Config> on_cuda(const std::vector<Config>& grid) {
  std::vector<Config> cases;
  std::set<std::string> names;
  bool next_is_fp16 = true;
  for (Config c : grid) {
    if (c.dtype == DType::kFloat32) {
      c.dtype = next_is_fp16 ? DType::kFloat16 : DType::kBFloat16;
      next_is_fp16 = !next_is_fp16;
    }
    c.device = Device::cuda(0);
    // The CUDA kernels reject rows that are not 16-byte aligned (tests/cuda/test_cuda_validation.cpp).
    if (c.layout == Layout::kPadded) c.layout = Layout::kPaddedAligned;
    if (names.insert(c.name()).second) cases.push_back(c);
  }
  return cases;
}

Config cuda_case(DType dtype, std::int64_t batch, std::int64_t seqlen_q, std::int64_t seqlen_k, std::int64_t heads_q,
                 std::int64_t heads_kv, std::int64_t head_dim) {
  Config c;
  c.device = Device::cuda(0);
  c.dtype = dtype;
  c.batch = batch;
  c.seqlen_q = seqlen_q;
  c.seqlen_k = seqlen_k;
  c.heads_q = heads_q;
  c.heads_kv = heads_kv;
  c.head_dim = head_dim;
  c.head_dim_v = head_dim;
  return c;
}

testing::AssertionResult still_poisoned(const std::string& what, const Tensor& t) {
  const Storage& storage = *t.storage;
  for (std::int64_t e = 0; e < storage.elements(); ++e) {
    if (!std::isnan(reference::load_element(storage.at(e), storage.dtype))) {
      return testing::AssertionFailure() << what << " was written before the call was rejected";
    }
  }
  return device_guards_intact(storage);
}

}  // namespace flashattn::test
