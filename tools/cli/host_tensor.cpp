#include "host_tensor.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

namespace flashattn::cli {
namespace {

// Cache-line alignment, so that vector loads in the kernels start on a line as they would with any
// sensible allocator.
constexpr std::size_t kAlignment = 64;
// Elements drawn from one generator; fixed so that the values do not depend on the thread count.
constexpr std::int64_t kFillChunk = std::int64_t{1} << 16;

constexpr std::uint32_t kFloatAbsMask = 0x7fffffffu;
constexpr std::uint32_t kFloatInfinity = 0x7f800000u;
constexpr std::uint32_t kHalfOverflow = 0x477ff000u;        // 65520.0f: rounds to half infinity
constexpr std::uint32_t kHalfMinNormal = 0x38800000u;       // 2^-14 as a float
constexpr std::uint32_t kHalfExponentRebias = 0x38000000u;  // (127 - 15) << 23
constexpr float kHalfSubnormalScale = 16777216.0f;          // 2^24: subnormal halves count units of 2^-24

// splitmix64: decorrelates the generator seeds of neighbouring chunks.
std::uint64_t mix_seed(std::uint64_t value) {
  value += 0x9e3779b97f4a7c15ull;
  value = (value ^ (value >> 30)) * 0xbf58476d1ce4e5b9ull;
  value = (value ^ (value >> 27)) * 0x94d049bb133111ebull;
  return value ^ (value >> 31);
}

void store(DType dtype, void* data, std::int64_t index, float value) {
  switch (dtype) {
    case DType::kFloat32:
      static_cast<float*>(data)[index] = value;
      return;
    case DType::kFloat16:
      static_cast<std::uint16_t*>(data)[index] = float_to_half(value);
      return;
    case DType::kBFloat16:
      static_cast<std::uint16_t*>(data)[index] = float_to_bfloat16(value);
      return;
    default:
      throw std::logic_error("HostTensor holds fp32, fp16 or bf16 only");
  }
}

}  // namespace

std::uint16_t float_to_half(float value) noexcept {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  std::uint32_t magnitude = bits & kFloatAbsMask;
  if (magnitude > kFloatInfinity) return sign | 0x7e00u;  // quiet NaN
  if (magnitude >= kHalfOverflow) return sign | 0x7c00u;  // infinity
  if (magnitude < kHalfMinNormal) {
    // Scaling by 2^24 is exact, and nearbyint rounds to nearest even in the default rounding mode.
    const float units = std::nearbyint(std::bit_cast<float>(magnitude) * kHalfSubnormalScale);
    return sign | static_cast<std::uint16_t>(units);
  }
  magnitude += 0xfffu + ((magnitude >> 13) & 1u);  // round the 13 dropped bits to nearest even
  return sign | static_cast<std::uint16_t>((magnitude - kHalfExponentRebias) >> 13);
}

float half_to_float(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) / kHalfSubnormalScale;
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 0x1fu) return std::bit_cast<float>(sign | kFloatInfinity | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent << 23) + kHalfExponentRebias) | (mantissa << 13));
}

std::uint16_t float_to_bfloat16(float value) noexcept {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & kFloatAbsMask) > kFloatInfinity) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}

float bfloat16_to_float(std::uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

void HostTensor::FreeDeleter::operator()(void* memory) const noexcept { std::free(memory); }

HostTensor::HostTensor(DType dtype, std::initializer_list<std::int64_t> shape) {
  if (dtype != DType::kFloat32 && dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    throw std::logic_error("HostTensor holds fp32, fp16 or bf16 only");
  }
  view_ = TensorView::contiguous(nullptr, dtype, shape);
  const std::size_t bytes = static_cast<std::size_t>(view_.numel()) * dtype_size(dtype);
  const std::size_t rounded = std::max(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
  memory_.reset(std::aligned_alloc(kAlignment, rounded));
  if (!memory_) throw std::bad_alloc();
  view_.data = memory_.get();
}

void HostTensor::fill_normal(std::uint64_t seed) {
  const std::int64_t count = numel();
  const std::int64_t chunks = (count + kFillChunk - 1) / kFillChunk;
  std::atomic<std::int64_t> next_chunk{0};
  auto fill_chunks = [&] {
    for (std::int64_t chunk = next_chunk++; chunk < chunks; chunk = next_chunk++) {
      std::mt19937_64 generator(mix_seed(seed ^ mix_seed(static_cast<std::uint64_t>(chunk))));
      std::normal_distribution<float> normal;
      const std::int64_t end = std::min(count, (chunk + 1) * kFillChunk);
      for (std::int64_t index = chunk * kFillChunk; index < end; ++index) {
        store(view_.dtype, view_.data, index, normal(generator));
      }
    }
  };
  const auto workers = static_cast<std::int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::jthread> helpers;
  for (std::int64_t helper = 1; helper < std::min(workers, chunks); ++helper) helpers.emplace_back(fill_chunks);
  fill_chunks();
}

double HostTensor::at(std::int64_t flat_index) const {
  switch (view_.dtype) {
    case DType::kFloat32:
      return static_cast<const float*>(view_.data)[flat_index];
    case DType::kFloat16:
      return half_to_float(static_cast<const std::uint16_t*>(view_.data)[flat_index]);
    case DType::kBFloat16:
      return bfloat16_to_float(static_cast<const std::uint16_t*>(view_.data)[flat_index]);
    default:
      throw std::logic_error("HostTensor holds fp32, fp16 or bf16 only");
  }
}

}  // namespace flashattn::cli
