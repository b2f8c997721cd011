// Micro-benchmark of the CPU kernels' micro-tile (a development tool, not built by CMake). Build and run on the
// machine to measure, for AVX-512 with a 6 x 4 micro-tile:
//   g++ -std=c++20 -O3 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mprefer-vector-width=512 \
//       -ffp-contract=fast -DFLASHATTN_CPU_VECTOR_BYTES=64 -DFLASHATTN_CPU_GEMM_ROWS=6 -DFLASHATTN_CPU_GEMM_VECTORS=4 \
//       -I src -I src/cpu -I include bench/cpu/gemm_microbench.cpp -o gemm_microbench && ./gemm_microbench
// The shapes are those of the forward's two products at head_dim 128 (docs/PERFORMANCE.md).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernel/gemm.hpp"
using namespace flashattn::cpu;
int main() {
  const int iters = 20000;
  std::vector<float> a(256 * 256, 0.5f), b(256 * 256, 0.25f), c(256 * 256, 0.f);
  struct Case {
    const char* name;
    long rows, cols, depth;
    MatrixA A;
    long ldb, ldc;
    bool acc;
  };
  Case cases[] = {{"S^T 64x64x128 (A rows)", 64, 64, 128, {a.data(), 128, 1}, 64, 64, false},
                  {"PV 64x128x64 (A^T)", 64, 128, 64, {a.data(), 1, 64}, 128, 128, true},
                  {"S^T 128x64x128", 128, 64, 128, {a.data(), 128, 1}, 64, 64, false},
                  {"PV 64x128x128 (A^T)", 64, 128, 128, {a.data(), 1, 64}, 128, 128, true}};
  for (auto& cs : cases) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) {
      gemm(cs.rows, cs.cols, cs.depth, cs.A, b.data(), cs.ldb, c.data(), cs.ldc, cs.acc);
      asm volatile("" ::: "memory");
    }
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    printf("MR=%d NV=%d %-28s %.1f GFLOP/s\n", kGemmRows, kGemmVectors, cs.name,
           2.0 * cs.rows * cs.cols * cs.depth * iters / t / 1e9);
  }
}
