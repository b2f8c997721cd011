// Times the Hopper GEMM of src/cuda/hopper (C = A * B^T, bf16 in and out, fp32 accumulation) against
// cublasGemmEx on the same problem, with CUDA events: warm-up runs, then each timed run on its own, the median
// reported. One JSON line per (implementation, shape) on stdout, with the largest difference between the two
// results relative to cuBLAS' largest element as a sanity check.
//
// usage: hopper_gemm [SIZE...]   (square M = N = K; default 4096 8192)
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "cuda/hopper/gemm_kernel.cuh"

namespace {

constexpr int kWarmupRuns = 5;
constexpr int kTimedRuns = 30;
constexpr int kDefaultSizes[] = {4096, 8192};
constexpr int kFillThreads = 256;
constexpr double kFlopsPerMultiplyAdd = 2.0;

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(status));
    std::exit(2);
  }
}

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "%s: %s\n", what, cublasGetStatusString(status));
    std::exit(2);
  }
}

// Uniform values in [-1, 1) from a hash of the index: fills hundreds of MiB without a host round trip.
__global__ void fill_uniform(__nv_bfloat16* values, std::size_t count, std::uint32_t seed) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  std::uint32_t h = static_cast<std::uint32_t>(i) * 0x9E3779B1u ^ seed;
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  constexpr float kToUnit = 1.0f / 4294967296.0f;
  values[i] = __float2bfloat16(2.0f * static_cast<float>(h) * kToUnit - 1.0f);
}

void fill(__nv_bfloat16* values, std::size_t count, std::uint32_t seed) {
  const auto blocks = static_cast<unsigned>((count + kFillThreads - 1) / kFillThreads);
  fill_uniform<<<blocks, kFillThreads>>>(values, count, seed);
  check_cuda(cudaGetLastError(), "fill_uniform");
}

// Median milliseconds of kTimedRuns runs of `run`, each between its own pair of events.
double median_ms(const std::function<void()>& run) {
  for (int i = 0; i < kWarmupRuns; ++i) run();
  cudaEvent_t start, stop;
  check_cuda(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> times;
  for (int i = 0; i < kTimedRuns; ++i) {
    check_cuda(cudaEventRecord(start), "cudaEventRecord");
    run();
    check_cuda(cudaEventRecord(stop), "cudaEventRecord");
    check_cuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0.0f;
    check_cuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::vector<float> to_host(const __nv_bfloat16* device_values, std::size_t count) {
  std::vector<__nv_bfloat16> raw(count);
  check_cuda(cudaMemcpy(raw.data(), device_values, count * sizeof(__nv_bfloat16), cudaMemcpyDeviceToHost),
             "cudaMemcpy");
  std::vector<float> values(count);
  std::transform(raw.begin(), raw.end(), values.begin(), [](__nv_bfloat16 v) { return __bfloat162float(v); });
  return values;
}

void print_point(const char* implementation, const cudaDeviceProp& device, int size, double ms,
                 double max_relative_difference) {
  const double flops = kFlopsPerMultiplyAdd * static_cast<double>(size) * size * size;
  std::printf(
      "{\"bench\": \"hopper_gemm\", \"impl\": \"%s\", \"device\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, "
      "\"dtype\": \"bf16\", \"warmup\": %d, \"reps\": %d, \"median_ms\": %.4f, \"tflops\": %.1f, "
      "\"max_rel_diff_vs_cublas\": %.2e}\n",
      implementation, device.name, size, size, size, kWarmupRuns, kTimedRuns, ms, flops / (ms * 1e-3) / 1e12,
      max_relative_difference);
  std::fflush(stdout);
}

void bench_size(int size, cublasHandle_t handle, const cudaDeviceProp& device) {
  const auto elements = static_cast<std::size_t>(size) * size;
  __nv_bfloat16 *a, *b, *c_ours, *c_cublas;
  check_cuda(cudaMalloc(&a, elements * sizeof(__nv_bfloat16)), "cudaMalloc A");
  check_cuda(cudaMalloc(&b, elements * sizeof(__nv_bfloat16)), "cudaMalloc B");
  check_cuda(cudaMalloc(&c_ours, elements * sizeof(__nv_bfloat16)), "cudaMalloc C");
  check_cuda(cudaMalloc(&c_cublas, elements * sizeof(__nv_bfloat16)), "cudaMalloc C (cuBLAS)");
  fill(a, elements, 1u);
  fill(b, elements, 2u);

  const flashattn::cuda::hopper::HopperGemm gemm(a, b, c_ours, size, size, size);
  const double ours_ms = median_ms([&] { gemm.run(nullptr); });

  // Row-major C = A * B^T is column-major C^T = B * A^T; B's buffer read column-major is B^T, hence op T.
  const float alpha = 1.0f;
  const float beta = 0.0f;
  const double cublas_ms = median_ms([&] {
    check_cublas(
        cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, size, size, size, &alpha, b, CUDA_R_16BF, size, a, CUDA_R_16BF,
                     size, &beta, c_cublas, CUDA_R_16BF, size, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx");
  });
  check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");

  const std::vector<float> ours = to_host(c_ours, elements);
  const std::vector<float> reference = to_host(c_cublas, elements);
  double reference_max = 0.0;
  double difference_max = 0.0;
  for (std::size_t i = 0; i < elements; ++i) {
    reference_max = std::max(reference_max, static_cast<double>(std::fabs(reference[i])));
    const double difference = std::fabs(static_cast<double>(ours[i]) - reference[i]);
    difference_max = std::isnan(difference) ? INFINITY : std::max(difference_max, difference);
  }
  const double relative = difference_max / reference_max;
  print_point("flashattn_hopper_wgmma", device, size, ours_ms, relative);
  print_point("cublasGemmEx", device, size, cublas_ms, 0.0);

  cudaFree(a);
  cudaFree(b);
  cudaFree(c_ours);
  cudaFree(c_cublas);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes(std::begin(kDefaultSizes), std::end(kDefaultSizes));
  if (argc > 1) sizes.clear();
  for (int i = 1; i < argc; ++i) sizes.push_back(std::atoi(argv[i]));

  cudaDeviceProp device{};
  check_cuda(cudaGetDeviceProperties(&device, 0), "cudaGetDeviceProperties");
  cublasHandle_t handle = nullptr;
  check_cublas(cublasCreate(&handle), "cublasCreate");
  try {
    for (const int size : sizes) bench_size(size, handle, device);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "hopper_gemm: %s\n", error.what());
    return 1;
  }
  cublasDestroy(handle);
  return 0;
}
