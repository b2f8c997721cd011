// Warpgroup matrix multiply-accumulate (wgmma, sm_90a): D(64 x N, fp32, registers) += A(64 x 16) * B(16 x N),
// both operands read from shared memory through matrix descriptors, issued asynchronously by the four warps of
// a warpgroup together. The descriptors here describe the layout TMA writes with the 128-byte swizzle, K-major
// (each row of A and each column of B is contiguous along K), which is how Q, K and the GEMM's A and B arrive.
//
// Accumulator fragment of m64nN (PTX ISA, "wgmma .m64nNk16 register fragment layout for D"): warp w of the
// warpgroup holds rows 16w .. 16w + 15; for each 8-column block j, lane l holds d[4j + 0..1] at row
// 16w + l / 4, columns 8j + 2 (l % 4) + 0..1, and d[4j + 2..3] eight rows further down.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "barrier.cuh"

namespace flashattn::cuda::hopper {

inline constexpr int kWgmmaM = 64;
inline constexpr int kWgmmaK = 16;
// Bytes of one row of a 128B-swizzled tile (64 16-bit elements along K), and of one swizzle atom (8 rows): the
// XOR pattern repeats every atom, so tiles must start on an atom boundary.
inline constexpr std::uint32_t kSwizzle128RowBytes = 128;
inline constexpr std::uint32_t kSwizzle128AtomBytes = 8 * kSwizzle128RowBytes;

// Matrix descriptor fields (PTX ISA, "Matrix Descriptor Format"): addresses and offsets in 16-byte units.
inline constexpr int kDescriptorUnitShift = 4;
inline constexpr std::uint32_t kDescriptorFieldMask = 0x3FFF;
inline constexpr int kDescriptorLeadingOffsetBit = 16;
inline constexpr int kDescriptorStrideOffsetBit = 32;
inline constexpr int kDescriptorSwizzleBit = 62;
inline constexpr std::uint64_t kDescriptorSwizzle128B = 1;
// With K-major swizzled layouts one wgmma's K extent (32 bytes) stays inside a row, so the leading-dimension
// offset is not used; 1 (16 bytes) is the conventional placeholder.
inline constexpr std::uint64_t kUnusedLeadingOffset = 1;

// Descriptor of a K-major tile written by TMA with the 128-byte swizzle: rows of 128 bytes, consecutive 8-row
// groups 1024 bytes apart (the stride-dimension offset). `tile` must be 1024-byte aligned.
__device__ __forceinline__ std::uint64_t make_k_major_sw128_descriptor(const void* tile) {
  const std::uint32_t address = shared_address(tile);
  return static_cast<std::uint64_t>((address >> kDescriptorUnitShift) & kDescriptorFieldMask) |
         (kUnusedLeadingOffset << kDescriptorLeadingOffsetBit) |
         (static_cast<std::uint64_t>(kSwizzle128AtomBytes >> kDescriptorUnitShift) << kDescriptorStrideOffsetBit) |
         (kDescriptorSwizzle128B << kDescriptorSwizzleBit);
}

// Descriptor of an MN-major tile written by TMA with the 128-byte swizzle, as V arrives for O += P V: each
// 128-byte row holds 64 consecutive N elements (channels) of one K index (key), consecutive 8-key groups are
// 1024 bytes apart (stride-dimension offset), and the next 64 channels start `panel_bytes` further (the
// leading-dimension offset; PTX ISA canonical layout ((8T, m), (8, k)) : ((1, LBO), (8T, SBO)) for this swizzle).
// `tile` must be 1024-byte aligned.
__device__ __forceinline__ std::uint64_t make_mn_major_sw128_descriptor(const void* tile, std::uint32_t panel_bytes) {
  const std::uint32_t address = shared_address(tile);
  return static_cast<std::uint64_t>((address >> kDescriptorUnitShift) & kDescriptorFieldMask) |
         (static_cast<std::uint64_t>((panel_bytes >> kDescriptorUnitShift) & kDescriptorFieldMask)
          << kDescriptorLeadingOffsetBit) |
         (static_cast<std::uint64_t>(kSwizzle128AtomBytes >> kDescriptorUnitShift) << kDescriptorStrideOffsetBit) |
         (kDescriptorSwizzle128B << kDescriptorSwizzleBit);
}

// The same tile, `k_elements` (a multiple of 16) further along K. The hardware applies the swizzle to the
// address it computes, so moving inside the 128-byte row is a plain offset of the start address.
template <class T>
__device__ __forceinline__ std::uint64_t advance_descriptor_along_k(std::uint64_t descriptor, int k_elements) {
  return descriptor + (static_cast<std::uint64_t>(k_elements) * sizeof(T) >> kDescriptorUnitShift);
}

// The descriptor of the operand `bytes` (a multiple of 16) further on: how the MN-major V tile steps to its next
// 16 keys (two 8-key swizzle atoms, so the swizzle phase is unchanged).
__device__ __forceinline__ std::uint64_t advance_descriptor_bytes(std::uint64_t descriptor, std::uint32_t bytes) {
  return descriptor + (bytes >> kDescriptorUnitShift);
}

// Orders earlier register accesses (accumulators written by ordinary instructions) before the next wgmma.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }

// Closes the group of wgmma operations this warpgroup issued since the last commit.
__device__ __forceinline__ void wgmma_commit_group() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// Waits until at most `Pending` committed groups are unfinished; their accumulators and shared-memory operands
// are only then safe to touch.
template <int Pending>
__device__ __forceinline__ void wgmma_wait_group() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
}

// Keeps the compiler from moving ordinary reads or writes of the accumulators across the asynchronous window
// (wgmma writes them behind its back until wgmma_wait_group): call after the wait and before the fence.
template <int Count>
__device__ __forceinline__ void pin_accumulators(float (&accumulators)[Count]) {
#pragma unroll
  for (int i = 0; i < Count; ++i) asm volatile("" : "+f"(accumulators[i])::"memory");
}

// The same for A fragments in registers: the asm that issues a wgmma reads them when it is issued, as far as the
// compiler knows, so without this it could give their registers to new values while the wgmma still reads them.
// Call after the wgmma_wait_group that completes the reader.
template <int Count>
__device__ __forceinline__ void pin_fragments(std::uint32_t (&fragments)[Count][4]) {
#pragma unroll
  for (int i = 0; i < Count; ++i) {
#pragma unroll
    for (int j = 0; j < 4; ++j) asm volatile("" : "+r"(fragments[i][j])::"memory");
  }
}

// Accumulator operand lists of the asm statements below: the N / 2 registers of a 64 x N tile per thread,
// as asm operands ("+f") and as the PTX text that names them.
#define FLASHATTN_WGMMA_F8(d, i)                                                                                  \
  "+f"(d[i + 0]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
      "+f"(d[i + 7])
#define FLASHATTN_WGMMA_F32(d, i) \
  FLASHATTN_WGMMA_F8(d, i), FLASHATTN_WGMMA_F8(d, i + 8), FLASHATTN_WGMMA_F8(d, i + 16), FLASHATTN_WGMMA_F8(d, i + 24)
#define FLASHATTN_WGMMA_F64(d, i) FLASHATTN_WGMMA_F32(d, i), FLASHATTN_WGMMA_F32(d, i + 32)
#define FLASHATTN_WGMMA_OPERANDS_64(d) FLASHATTN_WGMMA_F32(d, 0)
#define FLASHATTN_WGMMA_OPERANDS_80(d) FLASHATTN_WGMMA_F32(d, 0), FLASHATTN_WGMMA_F8(d, 32)
#define FLASHATTN_WGMMA_OPERANDS_128(d) FLASHATTN_WGMMA_F64(d, 0)
#define FLASHATTN_WGMMA_OPERANDS_256(d) FLASHATTN_WGMMA_F64(d, 0), FLASHATTN_WGMMA_F64(d, 64)

#define FLASHATTN_WGMMA_D64_TEXT                                                                          \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
  "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define FLASHATTN_WGMMA_D80_TEXT                                                                          \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
  "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39}"
#define FLASHATTN_WGMMA_D128_TEXT                                                                         \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
  "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, "  \
  "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, "  \
  "%62, %63}"
#define FLASHATTN_WGMMA_D256_TEXT                                                                         \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
  "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, "  \
  "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, "  \
  "%62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, "  \
  "%82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, "      \
  "%101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, "      \
  "%117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"

// The PTX of one wgmma, D (+)= A * B with fp32 D, accumulating when operand %acc is non-zero. _SS: A and B
// from shared memory (descriptor operands a, b), both K-major. _RS: A from the four registers a0..a3, B from
// shared memory MN-major (the transpose flag set: V stored [key][channel] is B = V with N along channels).
#define FLASHATTN_WGMMA_SS_TEXT(n, type, a, b, acc)                                               \
  "{\n.reg .pred accumulate;\nsetp.ne.b32 accumulate, %" acc                                      \
  ", 0;\n"                                                                                        \
  "wgmma.mma_async.sync.aligned.m64n" #n "k16.f32." type "." type " " FLASHATTN_WGMMA_D##n##_TEXT \
      ", %" a ", %" b ", accumulate, 1, 1, 0, 0;\n}\n"
#define FLASHATTN_WGMMA_RS_TEXT(n, type, a0, a1, a2, a3, b, acc)                                  \
  "{\n.reg .pred accumulate;\nsetp.ne.b32 accumulate, %" acc                                      \
  ", 0;\n"                                                                                        \
  "wgmma.mma_async.sync.aligned.m64n" #n "k16.f32." type "." type " " FLASHATTN_WGMMA_D##n##_TEXT \
      ", {%" a0 ", %" a1 ", %" a2 ", %" a3 "}, %" b ", accumulate, 1, 1, 1;\n}\n"
// One asm statement of each form for N and the PTX type name; the operand numbers follow the N / 2 accumulators.
#define FLASHATTN_WGMMA_SS(n, type, a, b, acc)             \
  asm volatile(FLASHATTN_WGMMA_SS_TEXT(n, type, a, b, acc) \
               : FLASHATTN_WGMMA_OPERANDS_##n(d)           \
               : "l"(descriptor_a), "l"(descriptor_b), "r"(accumulate))
#define FLASHATTN_WGMMA_RS(n, type, a0, a1, a2, a3, b, acc)             \
  asm volatile(FLASHATTN_WGMMA_RS_TEXT(n, type, a0, a1, a2, a3, b, acc) \
               : FLASHATTN_WGMMA_OPERANDS_##n(d)                        \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(descriptor_b), "r"(accumulate))

template <class T>
inline constexpr bool kIsWgmmaType = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

// D = A * B (+ D when `accumulate`), 64 x N x 16, both operands K-major in shared memory.
// N is 64, 80, 128 or 256; T is __nv_bfloat16 or __half.
template <int N, class T>
__device__ __forceinline__ void wgmma_m64k16_ss(float (&d)[N / 2], std::uint64_t descriptor_a,
                                                std::uint64_t descriptor_b, bool accumulate_flag) {
  static_assert(N == 64 || N == 80 || N == 128 || N == 256, "wgmma_m64k16_ss: N must be 64, 80, 128 or 256");
  static_assert(kIsWgmmaType<T>, "wgmma_m64k16_ss: T must be __nv_bfloat16 or __half");
  const std::uint32_t accumulate = accumulate_flag ? 1u : 0u;
  constexpr bool kBFloat16 = std::is_same_v<T, __nv_bfloat16>;
  if constexpr (N == 64 && kBFloat16) {
    FLASHATTN_WGMMA_SS(64, "bf16", "32", "33", "34");
  } else if constexpr (N == 64) {
    FLASHATTN_WGMMA_SS(64, "f16", "32", "33", "34");
  } else if constexpr (N == 80 && kBFloat16) {
    FLASHATTN_WGMMA_SS(80, "bf16", "40", "41", "42");
  } else if constexpr (N == 80) {
    FLASHATTN_WGMMA_SS(80, "f16", "40", "41", "42");
  } else if constexpr (N == 128 && kBFloat16) {
    FLASHATTN_WGMMA_SS(128, "bf16", "64", "65", "66");
  } else if constexpr (N == 128) {
    FLASHATTN_WGMMA_SS(128, "f16", "64", "65", "66");
  } else if constexpr (kBFloat16) {
    FLASHATTN_WGMMA_SS(256, "bf16", "128", "129", "130");
  } else {
    FLASHATTN_WGMMA_SS(256, "f16", "128", "129", "130");
  }
}

// D = A * B (+ D when `accumulate`), 64 x N x 16, A (64 x 16) in registers as the accumulator-shaped fragment
// of the PTX ISA's "wgmma register fragment layout for A" (the m16n8k16 mma's A fragment per warp), B MN-major
// in shared memory. N is 64, 128 or 256.
template <int N, class T>
__device__ __forceinline__ void wgmma_m64k16_rs(float (&d)[N / 2], const std::uint32_t (&a)[4],
                                                std::uint64_t descriptor_b, bool accumulate_flag) {
  static_assert(N == 64 || N == 128 || N == 256, "wgmma_m64k16_rs: N must be 64, 128 or 256");
  static_assert(kIsWgmmaType<T>, "wgmma_m64k16_rs: T must be __nv_bfloat16 or __half");
  const std::uint32_t accumulate = accumulate_flag ? 1u : 0u;
  constexpr bool kBFloat16 = std::is_same_v<T, __nv_bfloat16>;
  if constexpr (N == 64 && kBFloat16) {
    FLASHATTN_WGMMA_RS(64, "bf16", "32", "33", "34", "35", "36", "37");
  } else if constexpr (N == 64) {
    FLASHATTN_WGMMA_RS(64, "f16", "32", "33", "34", "35", "36", "37");
  } else if constexpr (N == 128 && kBFloat16) {
    FLASHATTN_WGMMA_RS(128, "bf16", "64", "65", "66", "67", "68", "69");
  } else if constexpr (N == 128) {
    FLASHATTN_WGMMA_RS(128, "f16", "64", "65", "66", "67", "68", "69");
  } else if constexpr (kBFloat16) {
    FLASHATTN_WGMMA_RS(256, "bf16", "128", "129", "130", "131", "132", "133");
  } else {
    FLASHATTN_WGMMA_RS(256, "f16", "128", "129", "130", "131", "132", "133");
  }
}

#undef FLASHATTN_WGMMA_RS
#undef FLASHATTN_WGMMA_SS
#undef FLASHATTN_WGMMA_RS_TEXT
#undef FLASHATTN_WGMMA_SS_TEXT
#undef FLASHATTN_WGMMA_D64_TEXT
#undef FLASHATTN_WGMMA_D80_TEXT
#undef FLASHATTN_WGMMA_D128_TEXT
#undef FLASHATTN_WGMMA_D256_TEXT
#undef FLASHATTN_WGMMA_OPERANDS_64
#undef FLASHATTN_WGMMA_OPERANDS_80
#undef FLASHATTN_WGMMA_OPERANDS_128
#undef FLASHATTN_WGMMA_OPERANDS_256
#undef FLASHATTN_WGMMA_F64
#undef FLASHATTN_WGMMA_F32
#undef FLASHATTN_WGMMA_F8

}  // namespace flashattn::cuda::hopper
