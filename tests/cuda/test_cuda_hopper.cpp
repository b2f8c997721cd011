// The Hopper forward (src/cuda/hopper/attention), selected with FLASHATTN_CUDA_PATH=hopper so that a case it
// cannot take fails instead of passing on the portable kernel. Its grid spans what the persistent kernel does
// differently: more work tiles than multiprocessors (each block walks several, its pipelines carried from one
// to the next), partial query and key tiles (the copy engine's zero fill and clipped stores), rows that see no
// key, GQA, both causal alignments, windows, softcap, ALiBi, head dims below the compiled ones. On other
// GPUs, or in a build without sm_90a kernels, the cases skip with the reason. The rules of the variable: a
// problem the kernel cannot take is NotSupported with the reason, an unknown value is InvalidArgument.
//
// The other GPU test grids run through the default dispatch, which takes the Hopper kernel on an H100 for
// every batched case it covers; tests/CMakeLists.txt runs them once more with FLASHATTN_CUDA_PATH=portable.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cuda_cases.hpp"
#include "flashattn/info.hpp"
#include "rejection.hpp"

namespace flashattn::test {
namespace {

constexpr auto kBf16 = DType::kBFloat16;
constexpr auto kFp16 = DType::kFloat16;
constexpr const char* kPathVariable = "FLASHATTN_CUDA_PATH";

// Sets FLASHATTN_CUDA_PATH for its lifetime and restores what was there.
class ScopedPath {
 public:
  explicit ScopedPath(const char* value) {
    if (const char* old = getenv(kPathVariable)) previous_ = old;
    setenv(kPathVariable, value, 1);
  }
  ~ScopedPath() {
    if (previous_) {
      setenv(kPathVariable, previous_->c_str(), 1);
    } else {
      unsetenv(kPathVariable);
    }
  }
  ScopedPath(const ScopedPath&) = delete;
  ScopedPath& operator=(const ScopedPath&) = delete;

 private:
  std::optional<std::string> previous_;
};

std::optional<std::string> hopper_unavailable_reason() {
  if (auto reason = cuda_unavailable_reason()) return reason;
  if (build_info().cuda_archs.find("90a") == std::string::npos) {
    return "this build has no sm_90a kernels (FLASHATTN_CUDA_ARCHS: " + build_info().cuda_archs + ")";
  }
  int major = 0;
  int minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  if (major != 9 || minor != 0) {
    return "CUDA device 0 has compute capability " + std::to_string(major) + "." + std::to_string(minor) +
           "; the Hopper kernel needs 9.0";
  }
  return std::nullopt;
}

std::vector<Config> hopper_grid() {
  std::vector<Config> configs;
  // 3 x 8 heads x 9 query tiles = 216 work tiles on 132 blocks.
  Config c = cuda_case(kBf16, 3, 1100, 1100, 8, 2, 128);
  c.causal = true;
  configs.push_back(c);
  c = cuda_case(kFp16, 3, 1100, 1100, 8, 8, 128);
  configs.push_back(c);
  c = cuda_case(kFp16, 2, 1000, 1537, 4, 4, 64);
  c.causal = true;
  c.alignment = CausalAlignment::kTopLeft;
  configs.push_back(c);
  c = cuda_case(kBf16, 2, 700, 900, 6, 3, 64);
  c.softmax_scale = 0.3f;
  configs.push_back(c);
  c = cuda_case(kBf16, 1, 1537, 1023, 4, 2, 96);  // more queries than keys: the top rows see no key
  c.head_dim_v = 64;
  c.causal = true;
  configs.push_back(c);
  c = cuda_case(kFp16, 2, 777, 900, 4, 1, 256);
  c.window_left = 300;
  c.window_right = 100;
  c.softcap = 5.0f;
  c.alibi = Alibi::kPerBatch;
  configs.push_back(c);
  c = cuda_case(kBf16, 2, 600, 600, 4, 4, 256);
  c.causal = true;
  configs.push_back(c);
  c = cuda_case(kBf16, 1, 1, 513, 8, 1, 128);  // one query row: 127 rows of the tile past the sequence
  configs.push_back(c);
  c = cuda_case(kFp16, 2, 300, 1, 4, 2, 64);  // one key
  c.causal = true;
  configs.push_back(c);
  c = cuda_case(kBf16, 3, 129, 257, 2, 2, 128);
  c.softmax_scale = -0.3f;  // a negative scale turns the maximum around
  c.window_left = 40;
  c.window_right = -1;
  configs.push_back(c);
  c = cuda_case(kFp16, 1, 2048, 2048, 4, 1, 32);  // head_dim 32 in the 64 kernel: zero-filled channels
  c.alibi = Alibi::kPerHead;
  c.causal = true;
  configs.push_back(c);
  c = cuda_case(kBf16, 2, 333, 2111, 4, 2, 128);
  c.layout = Layout::kPaddedAligned;
  c.softcap = 2.0f;
  configs.push_back(c);
  // d = 64 runs on the long-sequence tile (192 rows, three consumer warpgroups, one product at a time) from 1024
  // queries (tiles.hpp).
  configs.push_back(cuda_case(kBf16, 1, 8192, 600, 2, 1, 64));
  c = cuda_case(kFp16, 2, 1100, 1300, 4, 2, 64);  // a last query tile of 140 rows
  c.softcap = 3.0f;
  configs.push_back(c);
  c = cuda_case(kFp16, 1, 8200, 700, 2, 2, 48);  // bottom-right: the first 7500 rows see no key
  c.causal = true;
  configs.push_back(c);
  // Under a causal mask the partial query tile comes first, by whole consumer warpgroups (tile_order.hpp): 128 rows of
  // the first 192-row tile before the sequence's start, the rows of two of its three consumers; 17 tiles, so an empty
  // one goes before them.
  c = cuda_case(kFp16, 2, 3136, 3136, 2, 1, 64);
  c.causal = true;
  c.alignment = CausalAlignment::kTopLeft;
  configs.push_back(c);
  c = cuda_case(kBf16, 1, 129, 200, 2, 1, 64);  // 64 of the first 128-row tile before the start, 63 past the end
  c.causal = true;
  configs.push_back(c);
  // d = 256 writes O from registers (hopper/attention/epilogue.cuh): channels past head_dim_v 136 left alone, rows that
  // see no key (the first 400, bottom-right) written as zeros, a last tile of 76 rows, padded rows.
  c = cuda_case(kBf16, 2, 1100, 700, 4, 2, 200);
  c.head_dim_v = 136;
  c.causal = true;
  c.layout = Layout::kPaddedAligned;
  configs.push_back(c);
  c = cuda_case(kBf16, 1, 4200, 4300, 2, 2, 64);
  c.window_left = 500;
  c.window_right = 64;
  c.alibi = Alibi::kPerHead;
  configs.push_back(c);
  return configs;
}

class HopperForward : public CudaParamTest<Config> {
 protected:
  void SetUp() override {
    if (const auto reason = hopper_unavailable_reason()) GTEST_SKIP() << *reason;
  }
};

TEST_P(HopperForward, MatchesReference) {
  const ScopedPath path("hopper");
  run_case(GetParam());
}
INSTANTIATE_TEST_SUITE_P(Gpu, HopperForward, testing::ValuesIn(hopper_grid()), ConfigName());

class HopperPath : public CudaTest {
 protected:
  void SetUp() override {
    if (const auto reason = hopper_unavailable_reason()) GTEST_SKIP() << *reason;
  }
};

TEST_F(HopperPath, VariableLengthIsNotSupported) {
  Config c = cuda_case(kBf16, 0, 0, 0, 2, 2, 64);
  c.varlen_label = "hopper_path";
  c.sequences = {{3, 4}, {5, 6}};
  const Instance instance = make_instance(c);
  const ScopedPath path("hopper");
  expect_rejected([&] { call_forward(instance); }, RejectionKind::kNotSupported, "q", {"variable-length"});
}

TEST_F(HopperPath, NoKeysIsNotSupported) {
  const Instance instance = make_instance(cuda_case(kFp16, 2, 5, 0, 2, 2, 64));
  const ScopedPath path("hopper");
  expect_rejected([&] { call_forward(instance); }, RejectionKind::kNotSupported, "q", {"seqlen_k is 0"});
}

// Unlike the two above, needs no Hopper device: the variable is read before the kernel is chosen.
class CudaPathVariable : public CudaTest {};

TEST_F(CudaPathVariable, UnknownValueIsInvalid) {
  const Instance instance = make_instance(cuda_case(kFp16, 1, 5, 5, 2, 2, 64));
  const ScopedPath path("fastest");
  expect_rejected([&] { call_forward(instance); }, RejectionKind::kInvalidArgument, kPathVariable,
                  {"not auto, portable or hopper"});
}

TEST_F(CudaPathVariable, PortableRunsEverywhere) {
  const ScopedPath path("portable");
  run_case(cuda_case(kBf16, 2, 200, 300, 4, 2, 128));
}

}  // namespace
}  // namespace flashattn::test
