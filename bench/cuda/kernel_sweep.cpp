// Tile-size sweeps for the CUDA kernels: a quick check against the CPU backend, then CUDA-event timings of
// the C++ API on the benchmark's shapes (batch x seqlen = 16k tokens, heads x head_dim = 2048, bf16).
// Built and run by bench/cuda/tile_sweep.sh, once per tile configuration; the full tests and the
// comparison with PyTorch are scripts/gpu_check.sh's and bench/gpu_attention.py's.
//
// usage: kernel_sweep HEAD_DIM [SEQLEN]   (prints "check ..." lines, then "time ..." lines)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "flashattn/flashattn.hpp"

namespace {

using flashattn::AttentionOptions;
using flashattn::Device;
using flashattn::DType;
using flashattn::TensorView;

constexpr int kTokens = 16384;
constexpr int kModelWidth = 2048;
constexpr int kWarmup = 3;
constexpr int kTimed = 20;

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(status));
    std::exit(2);
  }
}

std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<std::uint16_t>(u >> 16);
}
float from_bf16(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// A bf16 tensor of shape (b, s, h, d) on the host and on the device.
struct Tensor {
  std::int64_t b, s, h, d;
  std::vector<std::uint16_t> host;
  void* device = nullptr;

  Tensor(std::int64_t b_, std::int64_t s_, std::int64_t h_, std::int64_t d_, std::mt19937& rng)
      : b(b_), s(s_), h(h_), d(d_), host(static_cast<std::size_t>(b_ * s_ * h_ * d_)) {
    std::normal_distribution<float> normal;
    for (auto& x : host) x = to_bf16(normal(rng));
    check_cuda(cudaMalloc(&device, host.size() * 2), "cudaMalloc");
    check_cuda(cudaMemcpy(device, host.data(), host.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  ~Tensor() { cudaFree(device); }
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  TensorView on_device() const {
    return TensorView::contiguous(device, DType::kBFloat16, {b, s, h, d}, Device::cuda(0));
  }
  TensorView on_host() { return TensorView::contiguous(host.data(), DType::kBFloat16, {b, s, h, d}); }
  std::vector<std::uint16_t> device_values() const {
    std::vector<std::uint16_t> values(host.size());
    check_cuda(cudaMemcpy(values.data(), device, values.size() * 2, cudaMemcpyDeviceToHost), "cudaMemcpy");
    return values;
  }
};

// max |a - b| relative to max(1, max |b|) over bf16 values; NaN counts as infinitely far.
double relative_difference(const std::vector<std::uint16_t>& a, const std::vector<std::uint16_t>& b) {
  double worst = 0.0, scale = 1.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = from_bf16(a[i]), y = from_bf16(b[i]);
    if (std::isnan(x) || std::isnan(y)) return INFINITY;
    worst = std::max(worst, std::fabs(x - y));
    scale = std::max(scale, std::fabs(y));
  }
  return worst / scale;
}

// The CUDA backend against the CPU backend on one small problem, forward and backward.
bool check(int head_dim, bool causal, int window_left, float softcap) {
  std::mt19937 rng(static_cast<unsigned>(head_dim * 7 + causal));
  constexpr int kB = 2, kSq = 129, kSk = 200, kHq = 4, kHkv = 2;
  Tensor q(kB, kSq, kHq, head_dim, rng), k(kB, kSk, kHkv, head_dim, rng), v(kB, kSk, kHkv, head_dim, rng);
  Tensor out(kB, kSq, kHq, head_dim, rng), dout(kB, kSq, kHq, head_dim, rng);
  Tensor dq(kB, kSq, kHq, head_dim, rng), dk(kB, kSk, kHkv, head_dim, rng), dv(kB, kSk, kHkv, head_dim, rng);
  float* lse = nullptr;
  check_cuda(cudaMalloc(&lse, sizeof(float) * kB * kHq * kSq), "cudaMalloc");
  const TensorView lse_device = TensorView::contiguous(lse, DType::kFloat32, {kB, kHq, kSq}, Device::cuda(0));
  AttentionOptions options;
  options.causal = causal;
  options.window_left = window_left;
  options.softcap = softcap;
  flashattn::forward(q.on_device(), k.on_device(), v.on_device(), out.on_device(), lse_device, options);
  flashattn::backward(q.on_device(), k.on_device(), v.on_device(), out.on_device(), dout.on_device(), lse_device,
                      dq.on_device(), dk.on_device(), dv.on_device(), options);
  check_cuda(cudaDeviceSynchronize(), "CUDA calls");
  cudaFree(lse);

  std::vector<float> lse_host(static_cast<std::size_t>(kB * kHq * kSq));
  const TensorView lse_cpu = TensorView::contiguous(lse_host.data(), DType::kFloat32, {kB, kHq, kSq});
  flashattn::forward(q.on_host(), k.on_host(), v.on_host(), out.on_host(), lse_cpu, options);
  flashattn::backward(q.on_host(), k.on_host(), v.on_host(), out.on_host(), dout.on_host(), lse_cpu, dq.on_host(),
                      dk.on_host(), dv.on_host(), options);
  // A sanity bound for a sweep (bf16 inputs and products); the tests apply FlashAttention-3's rule.
  constexpr double kBound = 0.02;
  const double errors[] = {
      relative_difference(out.device_values(), out.host), relative_difference(dq.device_values(), dq.host),
      relative_difference(dk.device_values(), dk.host), relative_difference(dv.device_values(), dv.host)};
  const bool ok = std::all_of(std::begin(errors), std::end(errors), [](double e) { return e <= kBound; });
  std::printf("check d%d causal%d window%d softcap%g: out %.3g dq %.3g dk %.3g dv %.3g %s\n", head_dim, causal,
              window_left, softcap, errors[0], errors[1], errors[2], errors[3], ok ? "ok" : "FAIL");
  return ok;
}

void time_passes(int head_dim, int seqlen, bool causal) {
  std::mt19937 rng(1);
  const int b = kTokens / seqlen, h = kModelWidth / head_dim;
  Tensor q(b, seqlen, h, head_dim, rng), k(b, seqlen, h, head_dim, rng), v(b, seqlen, h, head_dim, rng);
  Tensor out(b, seqlen, h, head_dim, rng), dout(b, seqlen, h, head_dim, rng), dq(b, seqlen, h, head_dim, rng);
  Tensor dk(b, seqlen, h, head_dim, rng), dv(b, seqlen, h, head_dim, rng);
  float* lse = nullptr;
  check_cuda(cudaMalloc(&lse, sizeof(float) * b * h * seqlen), "cudaMalloc");
  const TensorView lse_view = TensorView::contiguous(lse, DType::kFloat32, {b, h, seqlen}, Device::cuda(0));
  AttentionOptions options;
  options.causal = causal;
  const double forward_flops = 4.0 * b * h * double(seqlen) * seqlen * head_dim * (causal ? 0.5 : 1.0);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (const bool backward : {false, true}) {
    std::vector<float> milliseconds;
    for (int i = 0; i < kWarmup + kTimed; ++i) {
      cudaEventRecord(start);
      if (backward) {
        flashattn::backward(q.on_device(), k.on_device(), v.on_device(), out.on_device(), dout.on_device(), lse_view,
                            dq.on_device(), dk.on_device(), dv.on_device(), options);
      } else {
        flashattn::forward(q.on_device(), k.on_device(), v.on_device(), out.on_device(), lse_view, options);
      }
      cudaEventRecord(stop);
      cudaEventSynchronize(stop);
      float ms = 0.0f;
      cudaEventElapsedTime(&ms, start, stop);
      if (i >= kWarmup) milliseconds.push_back(ms);
    }
    std::sort(milliseconds.begin(), milliseconds.end());
    const double median = milliseconds[milliseconds.size() / 2];
    const double flops = (backward ? 2.5 : 1.0) * forward_flops;
    std::printf("time %s d%d causal%d s%d: %.3f ms %.1f TFLOP/s\n", backward ? "bwd" : "fwd", head_dim, causal, seqlen,
                median, flops / median / 1e9);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(lse);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: kernel_sweep HEAD_DIM [SEQLEN]\n");
    return 2;
  }
  const int head_dim = std::atoi(argv[1]);
  const int seqlen = argc > 2 ? std::atoi(argv[2]) : 8192;
  bool ok = true;
  ok = check(head_dim, false, -1, 0.0f) && ok;
  ok = check(head_dim, true, -1, 0.0f) && ok;
  ok = check(head_dim, true, 16, 30.0f) && ok;
  for (const bool causal : {false, true}) time_passes(head_dim, seqlen, causal);
  return ok ? 0 : 1;
}
