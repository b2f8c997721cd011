// Conversions between the storage dtypes and the fp32 the kernels compute in.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernel/simd.hpp"

namespace flashattn::cpu {
namespace {

// bf16 storage: the upper half of an IEEE float.
struct BFloat16 {
  std::uint16_t bits;
};

inline float to_float(float x) { return x; }
inline float to_float(_Float16 x) { return static_cast<float>(x); }
inline float to_float(BFloat16 x) {
  const std::uint32_t bits = std::uint32_t{x.bits} << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename T>
T from_float(float x);
template <>
inline float from_float<float>(float x) {
  return x;
}
template <>
inline _Float16 from_float<_Float16>(float x) {
  return static_cast<_Float16>(x);
}
// Round to nearest even; NaN stays a (quiet) NaN.
template <>
inline BFloat16 from_float<BFloat16>(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return BFloat16{static_cast<std::uint16_t>((bits >> 16) | 0x40u)};
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return BFloat16{static_cast<std::uint16_t>(bits >> 16)};
}

// dst[0, n) = src as fp32; dst[n, padded) = 0.
template <typename T>
inline void load_row(const T* src, float* dst, std::int64_t n, std::int64_t padded) {
  for (std::int64_t c = 0; c < n; ++c) dst[c] = to_float(src[c]);
  for (std::int64_t c = n; c < padded; ++c) dst[c] = 0.0f;
}

template <typename T>
inline void store_row(const float* src, T* dst, std::int64_t n, float scale) {
  for (std::int64_t c = 0; c < n; ++c) dst[c] = from_float<T>(src[c] * scale);
}

template <typename T>
inline void store_zero_row(T* dst, std::int64_t n) {
  for (std::int64_t c = 0; c < n; ++c) dst[c] = from_float<T>(0.0f);
}

inline std::int64_t round_up(std::int64_t x, std::int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

}  // namespace
}  // namespace flashattn::cpu
