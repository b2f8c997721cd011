// The Hopper building blocks (src/cuda/hopper: TMA, mbarrier pipeline, wgmma, warp specialisation) proven
// through their GEMM, C = A * B^T in bf16 with fp32 accumulation, against cuBLAS on the same inputs. Every
// element is checked: max |C - C_cublas| / max |C_cublas| <= 1e-2 and no NaN (C is poisoned with NaN before
// the run, so an element the kernel never writes fails). Skips, printing why, without a compute capability
// 9.x device.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda/hopper/gemm_kernel.cuh"

namespace {

using flashattn::cuda::hopper::HopperGemm;

constexpr double kMaxRelativeError = 1e-2;
// cuBLAS' own result against a float64 product of the same bf16 inputs, on a sample of elements: it must be
// far closer than the tolerance above for the comparison to mean anything.
constexpr double kReferenceRelativeError = 1e-3;
constexpr int kReferenceSamples = 256;
// bf16 0xFFFF is a NaN: a byte-wise memset poisons every element.
constexpr int kNaNBytePattern = 0xFF;

// Why the Hopper GEMM cannot run here, or nullopt when it can.
std::optional<std::string> hopper_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return std::string("no CUDA device: ") + cudaGetErrorString(status);
  if (count == 0) return std::string("no CUDA device");
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, 0) != cudaSuccess) return std::string("cudaGetDeviceProperties failed");
  if (properties.major != 9) {
    std::ostringstream reason;
    reason << "device 0 (" << properties.name << ") has compute capability " << properties.major << "."
           << properties.minor << "; the Hopper GEMM needs 9.x (sm_90a)";
    return reason.str();
  }
  return std::nullopt;
}

void check_cuda(cudaError_t status, const char* what) {
  ASSERT_EQ(status, cudaSuccess) << what << ": " << cudaGetErrorString(status);
}

// Device memory released at scope exit.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t count) : count_(count) {
    if (cudaMalloc(&data_, count * sizeof(T)) != cudaSuccess) data_ = nullptr;
  }
  ~DeviceBuffer() { cudaFree(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return data_; }
  std::size_t bytes() const { return count_ * sizeof(T); }

 private:
  T* data_ = nullptr;
  std::size_t count_;
};

struct GemmShape {
  int m;
  int n;
  int k;
};

std::string shape_name(const testing::TestParamInfo<GemmShape>& info) {
  return "m" + std::to_string(info.param.m) + "_n" + std::to_string(info.param.n) + "_k" + std::to_string(info.param.k);
}

std::vector<__nv_bfloat16> random_bf16(std::size_t count, std::uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<__nv_bfloat16> values(count);
  for (auto& value : values) value = __float2bfloat16(uniform(generator));
  return values;
}

// C (row-major M x N) = A (row-major M x K) * B^T (B row-major N x K). cuBLAS is column-major: the same
// memory holds C^T (N x M) = B * A^T, where B's buffer read column-major is B^T (K x N, so op T) and A's is
// A^T (K x M, op N). fp32 output, the most precise reference cuBLAS offers for bf16 inputs.
void cublas_gemm(cublasHandle_t handle, const __nv_bfloat16* a, const __nv_bfloat16* b, float* c,
                 const GemmShape& shape) {
  const float alpha = 1.0f;
  const float beta = 0.0f;
  const cublasStatus_t status =
      cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, shape.n, shape.m, shape.k, &alpha, b, CUDA_R_16BF, shape.k, a,
                   CUDA_R_16BF, shape.k, &beta, c, CUDA_R_32F, shape.n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  ASSERT_EQ(status, CUBLAS_STATUS_SUCCESS) << "cublasGemmEx: " << cublasGetStatusString(status);
}

class HopperGemmTest : public testing::TestWithParam<GemmShape> {
 protected:
  void SetUp() override {
    if (const auto reason = hopper_unavailable_reason()) GTEST_SKIP() << *reason;
  }
};

TEST_P(HopperGemmTest, MatchesCublas) {
  const GemmShape shape = GetParam();
  const auto m = static_cast<std::size_t>(shape.m);
  const auto n = static_cast<std::size_t>(shape.n);
  const auto k = static_cast<std::size_t>(shape.k);
  const std::uint32_t seed = static_cast<std::uint32_t>(shape.m * 131 + shape.n * 17 + shape.k);
  const std::vector<__nv_bfloat16> a_host = random_bf16(m * k, seed);
  const std::vector<__nv_bfloat16> b_host = random_bf16(n * k, seed + 1);

  DeviceBuffer<__nv_bfloat16> a(m * k), b(n * k), c(m * n);
  DeviceBuffer<float> reference(m * n);
  ASSERT_TRUE(a.get() && b.get() && c.get() && reference.get()) << "cudaMalloc failed";
  check_cuda(cudaMemcpy(a.get(), a_host.data(), a.bytes(), cudaMemcpyHostToDevice), "copy A");
  check_cuda(cudaMemcpy(b.get(), b_host.data(), b.bytes(), cudaMemcpyHostToDevice), "copy B");
  check_cuda(cudaMemset(c.get(), kNaNBytePattern, c.bytes()), "poison C");
  check_cuda(cudaMemset(reference.get(), kNaNBytePattern, reference.bytes()), "poison the reference");

  const HopperGemm gemm(a.get(), b.get(), c.get(), shape.m, shape.n, shape.k);
  gemm.run(nullptr);
  check_cuda(cudaDeviceSynchronize(), "HopperGemm");
  ASSERT_FALSE(HasFatalFailure()) << "the kernel failed; the comparison would only repeat it";

  cublasHandle_t handle = nullptr;
  ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  cublas_gemm(handle, a.get(), b.get(), reference.get(), shape);
  cublasDestroy(handle);
  check_cuda(cudaDeviceSynchronize(), "cublasGemmEx");
  ASSERT_FALSE(HasFatalFailure());

  std::vector<__nv_bfloat16> c_host(m * n);
  std::vector<float> reference_host(m * n);
  check_cuda(cudaMemcpy(c_host.data(), c.get(), c.bytes(), cudaMemcpyDeviceToHost), "copy C");
  check_cuda(cudaMemcpy(reference_host.data(), reference.get(), reference.bytes(), cudaMemcpyDeviceToHost),
             "copy the reference");

  double reference_max = 0.0;
  for (const float value : reference_host) {
    ASSERT_FALSE(std::isnan(value)) << "cuBLAS left a NaN: the reference call is broken";
    reference_max = std::max(reference_max, std::fabs(static_cast<double>(value)));
  }
  ASSERT_GT(reference_max, 0.0);

  // cuBLAS against float64 on a sample, so that a wrong reference call cannot pass or fail the kernel.
  std::mt19937 sampler(seed + 2);
  for (int sample = 0; sample < kReferenceSamples; ++sample) {
    const std::size_t row = sampler() % m;
    const std::size_t col = sampler() % n;
    double exact = 0.0;
    for (std::size_t i = 0; i < k; ++i) {
      exact += static_cast<double>(__bfloat162float(a_host[row * k + i])) *
               static_cast<double>(__bfloat162float(b_host[col * k + i]));
    }
    ASSERT_NEAR(reference_host[row * n + col], exact, kReferenceRelativeError * reference_max)
        << "cuBLAS at (" << row << ", " << col << ")";
  }

  std::size_t nan_count = 0;
  std::size_t worst = 0;
  double worst_error = 0.0;
  for (std::size_t i = 0; i < m * n; ++i) {
    const double value = __bfloat162float(c_host[i]);
    if (std::isnan(value)) {
      if (nan_count++ == 0) worst = i;
      continue;
    }
    const double error = std::fabs(value - static_cast<double>(reference_host[i]));
    if (error > worst_error) {
      worst_error = error;
      if (nan_count == 0) worst = i;
    }
  }
  EXPECT_EQ(nan_count, 0u) << "NaN (unwritten or corrupt) elements, the first at (" << worst / n << ", " << worst % n
                           << ")";
  EXPECT_LE(worst_error / reference_max, kMaxRelativeError)
      << "max |C - C_cublas| = " << worst_error << " at (" << worst / n << ", " << worst % n
      << "): C = " << __bfloat162float(c_host[worst]) << ", cuBLAS = " << reference_host[worst]
      << "; max |C_cublas| = " << reference_max;
}

INSTANTIATE_TEST_SUITE_P(Shapes, HopperGemmTest,
                         testing::Values(GemmShape{256, 256, 64},      // one K slice, two tiles
                                         GemmShape{1024, 512, 192},    // K slices fewer than stages x 2
                                         GemmShape{2048, 2048, 2048},  // 128 tiles: one per block
                                         GemmShape{384, 1536, 320},    // non-square, odd tile counts
                                         GemmShape{3072, 1536, 704},   // 144 tiles: a second round on some blocks
                                         GemmShape{4096, 4096, 256}),  // 512 tiles: every block loops
                         shape_name);

// Shapes that are not tile multiples are refused on the host, before anything touches the device, so this runs
// (and must pass) on any machine.
TEST(HopperGemmValidation, RejectsShapesThatAreNotTileMultiples) {
  const struct {
    GemmShape shape;
    const char* argument;
  } cases[] = {
      {{100, 256, 64}, "m"}, {{128, 128, 64}, "n"}, {{128, 256, 32}, "k"}, {{0, 256, 64}, "m"}, {{128, 256, -64}, "k"}};
  for (const auto& bad : cases) {
    try {
      const HopperGemm gemm(nullptr, nullptr, nullptr, bad.shape.m, bad.shape.n, bad.shape.k);
      ADD_FAILURE() << "no exception for " << bad.shape.m << " x " << bad.shape.n << " x " << bad.shape.k;
    } catch (const flashattn::InvalidArgument& error) {
      EXPECT_EQ(error.argument(), bad.argument) << error.what();
      EXPECT_NE(std::string(error.what()).find("multiple of the GEMM tile"), std::string::npos) << error.what();
    }
  }
}

}  // namespace
