// Portable SIMD vocabulary of the CPU kernels: GCC vector extensions sized by the translation unit
// (FLASHATTN_CPU_VECTOR_BYTES), so one source compiles to SSE2, AVX2 or AVX-512 code. Everything here has
// internal linkage: each instruction-set translation unit keeps its own copy (no ODR merging of code
// compiled for different instruction sets).
#pragma once

#include <cstdint>
#include <cstring>

#ifndef FLASHATTN_CPU_VECTOR_BYTES
#error "FLASHATTN_CPU_VECTOR_BYTES must be set by the instruction-set translation unit"
#endif

namespace flashattn::cpu {
namespace {

inline constexpr int kLanes = FLASHATTN_CPU_VECTOR_BYTES / 4;
using VecF = float __attribute__((vector_size(FLASHATTN_CPU_VECTOR_BYTES)));
using VecI = std::int32_t __attribute__((vector_size(FLASHATTN_CPU_VECTOR_BYTES)));

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;
inline constexpr float kNegInf = -__builtin_inff();

inline VecF load(const float* p) {
  VecF v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, VecF v) { std::memcpy(p, &v, sizeof v); }
// A shuffle of lane 0 into every lane. Not VecF{} + x: adding +0.0 is not an identity for -0.0, so that
// form costs an add and a register shuffle per broadcast (and a lane-by-lane loop spills to the stack);
// this one compiles to a broadcast load (checked in the disassembly of the AVX-512 micro-tile).
inline VecF splat(float x) { return __builtin_shuffle(VecF{x}, VecI{}); }

// A local loop rather than std::fill: a standard template instantiated here would be compiled for this
// translation unit's instruction set and could be merged with (and called from) another one's copy.
inline void fill(float* dst, std::int64_t count, float value) {
  for (std::int64_t i = 0; i < count; ++i) dst[i] = value;
}

inline VecF vmax(VecF a, VecF b) { return a > b ? a : b; }

inline float reduce_max(VecF v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = v[i] > m ? v[i] : m;
  return m;
}
inline float reduce_sum(VecF v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// Column indices j0, j0 + 1, ... as floats and ints.
inline VecI lane_index() {
  VecI v;
  for (int i = 0; i < kLanes; ++i) v[i] = i;
  return v;
}

// 2^x for x <= 128, with relative error below 2e-7 (the float rounding dominates): x = n + f with n the
// nearest integer and |f| <= 1/2; 2^f by its Taylor series to degree 7 (truncation ln2^8/8! 2^-8 ~ 5e-9),
// 2^n by building the exponent bits. Results below 2^-126 flush to 0, so exp2(-inf) = 0.
inline VecF exp2(VecF x) {
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to the nearest integer
  constexpr float kMinExponent = -126.0f;
  constexpr float kC1 = 0.6931471805599453f, kC2 = 0.2402265069591007f, kC3 = 0.05550410866482158f,
                  kC4 = 0.009618129107628477f, kC5 = 0.0013333558146428443f, kC6 = 0.00015403530393381608f,
                  kC7 = 1.525273380405984e-05f;
  const VecF clamped = vmax(x, splat(kMinExponent));
  const VecF n = (clamped + kRoundMagic) - kRoundMagic;
  const VecF f = clamped - n;
  VecF p = splat(kC7);
  p = p * f + kC6;
  p = p * f + kC5;
  p = p * f + kC4;
  p = p * f + kC3;
  p = p * f + kC2;
  p = p * f + kC1;
  p = p * f + 1.0f;
  const VecI bits = (__builtin_convertvector(n, VecI) + 127) << 23;
  VecF scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const VecF result = p * scale;
  return x < kMinExponent ? VecF{} : result;
}

}  // namespace
}  // namespace flashattn::cpu
