// The one matrix-product shape the CPU kernels use:
//   C[m][n] (+)= sum_k A(m, k) * B[k][n]    for m < M, n < N,
// with B row-major (rows of N floats, N a multiple of kLanes, ld_b apart), C row-major (ld_c), and A read
// through two strides, A(m, k) = a[m * a_row + k * a_col], so that both A and its transpose serve
// (S = Q K^T with K packed transposed; O += P V; dV += P^T dO; dK += dS^T Q; dQ += dS K).
// The micro-tile keeps kGemmRows x kGemmVectors accumulator vectors in registers across the whole k loop.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernel/simd.hpp"

#ifndef FLASHATTN_CPU_GEMM_ROWS
#error "FLASHATTN_CPU_GEMM_ROWS (micro-tile rows) must be set by the instruction-set translation unit"
#endif
#ifndef FLASHATTN_CPU_GEMM_VECTORS
#error "FLASHATTN_CPU_GEMM_VECTORS (micro-tile width in vectors) must be set by the instruction-set translation unit"
#endif

namespace flashattn::cpu {
namespace {

inline constexpr int kGemmRows = FLASHATTN_CPU_GEMM_ROWS;
inline constexpr int kGemmVectors = FLASHATTN_CPU_GEMM_VECTORS;

struct MatrixA {
  const float* data;
  std::ptrdiff_t row_stride;  // between A(m, k) and A(m + 1, k)
  std::ptrdiff_t k_stride;    // between A(m, k) and A(m, k + 1)
};

template <int Rows, int Vectors>
inline void gemm_micro_tile(std::int64_t depth, MatrixA a, const float* b, std::ptrdiff_t ld_b, float* c,
                            std::ptrdiff_t ld_c, bool accumulate) {
  VecF acc[Rows][Vectors];
  for (int r = 0; r < Rows; ++r) {
    for (int v = 0; v < Vectors; ++v) acc[r][v] = accumulate ? load(c + r * ld_c + v * kLanes) : VecF{};
  }
  for (std::int64_t k = 0; k < depth; ++k) {
    VecF b_row[Vectors];
    for (int v = 0; v < Vectors; ++v) b_row[v] = load(b + k * ld_b + v * kLanes);
    const float* a_col = a.data + k * a.k_stride;
    for (int r = 0; r < Rows; ++r) {
      const VecF a_value = splat(a_col[r * a.row_stride]);
      for (int v = 0; v < Vectors; ++v) acc[r][v] += a_value * b_row[v];
    }
  }
  for (int r = 0; r < Rows; ++r) {
    for (int v = 0; v < Vectors; ++v) store(c + r * ld_c + v * kLanes, acc[r][v]);
  }
}

// The rows left over after the full micro-tiles, with a micro-tile of exactly that many rows.
template <int Rows, int Vectors>
inline void gemm_rows_rest(std::int64_t rows, std::int64_t depth, MatrixA a, const float* b, std::ptrdiff_t ld_b,
                           float* c, std::ptrdiff_t ld_c, bool accumulate) {
  if constexpr (Rows > 0) {
    if (rows == Rows) {
      gemm_micro_tile<Rows, Vectors>(depth, a, b, ld_b, c, ld_c, accumulate);
    } else {
      gemm_rows_rest<Rows - 1, Vectors>(rows, depth, a, b, ld_b, c, ld_c, accumulate);
    }
  }
}

// One column block of `Vectors` vectors over all rows.
template <int Vectors>
inline void gemm_column_block(std::int64_t rows, std::int64_t depth, MatrixA a, const float* b, std::ptrdiff_t ld_b,
                              float* c, std::ptrdiff_t ld_c, bool accumulate) {
  std::int64_t m = 0;
  for (; m + kGemmRows <= rows; m += kGemmRows) {
    gemm_micro_tile<kGemmRows, Vectors>(depth, {a.data + m * a.row_stride, a.row_stride, a.k_stride}, b, ld_b,
                                        c + m * ld_c, ld_c, accumulate);
  }
  gemm_rows_rest<kGemmRows - 1, Vectors>(rows - m, depth, {a.data + m * a.row_stride, a.row_stride, a.k_stride}, b,
                                         ld_b, c + m * ld_c, ld_c, accumulate);
}

template <int Vectors>
inline void gemm_columns_rest(std::int64_t vectors, std::int64_t rows, std::int64_t depth, MatrixA a, const float* b,
                              std::ptrdiff_t ld_b, float* c, std::ptrdiff_t ld_c, bool accumulate) {
  if constexpr (Vectors > 0) {
    if (vectors == Vectors) {
      gemm_column_block<Vectors>(rows, depth, a, b, ld_b, c, ld_c, accumulate);
    } else {
      gemm_columns_rest<Vectors - 1>(vectors, rows, depth, a, b, ld_b, c, ld_c, accumulate);
    }
  }
}

// C (rows x columns) = or += A (rows x depth) B (depth x columns); columns a multiple of kLanes.
inline void gemm(std::int64_t rows, std::int64_t columns, std::int64_t depth, MatrixA a, const float* b,
                 std::ptrdiff_t ld_b, float* c, std::ptrdiff_t ld_c, bool accumulate) {
  const std::int64_t vectors = columns / kLanes;
  std::int64_t v = 0;
  for (; v + kGemmVectors <= vectors; v += kGemmVectors) {
    gemm_column_block<kGemmVectors>(rows, depth, a, b + v * kLanes, ld_b, c + v * kLanes, ld_c, accumulate);
  }
  if (v < vectors) {
    gemm_columns_rest<kGemmVectors - 1>(vectors - v, rows, depth, a, b + v * kLanes, ld_b, c + v * kLanes, ld_c,
                                        accumulate);
  }
}

}  // namespace
}  // namespace flashattn::cpu
