// What the CUDA tests share: the skip where no CUDA device is usable, and moving a grid of cases onto the GPU.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "test_case.hpp"

namespace flashattn::test {

// Why CUDA cases cannot run in this process ("no CUDA device: ..."), or nullopt when they can.
std::optional<std::string> cuda_unavailable_reason();

// Bases of every CUDA test: they skip, printing the reason, where no CUDA device is usable (CI builds the
// tests with nvcc but has no GPU), so that ctest reports them as skipped rather than passed.
class CudaTest : public testing::Test {
 protected:
  void SetUp() override {
    if (const auto reason = cuda_unavailable_reason()) GTEST_SKIP() << *reason;
  }
};

template <class Param>
class CudaParamTest : public testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (const auto reason = cuda_unavailable_reason()) GTEST_SKIP() << *reason;
  }
};

using CudaCaseTest = CudaParamTest<Config>;

// The CUDA backend's dtypes: fp16 and bf16 (fp32 on CUDA is NotSupported, test_cuda_validation.cpp).
// on_cuda moves a grid onto CUDA device 0: its fp32 cases become fp16 and bf16 in turn, and a case that then
// repeats one of the grid's is left out.
std::vector<Config> on_cuda(const std::vector<Config>& grid);

// What a rejected call must leave of an output: every element of t's storage (read back from the device by the
// caller) still the NaN it was poisoned with, and the device guards around it intact. `what` names it.
testing::AssertionResult still_poisoned(const std::string& what, const Tensor& t);

// A batched case on CUDA device 0, head_dim_v = head_dim, every option at its default.
Config cuda_case(DType dtype, std::int64_t batch, std::int64_t seqlen_q, std::int64_t seqlen_k, std::int64_t heads_q,
                 std::int64_t heads_kv, std::int64_t head_dim);

}  // namespace flashattn::test
