// Peak AVX-512 FMA rate of one core (a development tool, not built by CMake): 24 independent FMA chains,
// the ceiling the CPU kernels' GEMMs are measured against in docs/PERFORMANCE.md.
//   g++ -O2 -mavx512f -mfma -ffp-contract=fast bench/cpu/fma_peak.cpp -o fma_peak && taskset -c 2 ./fma_peak
#include <chrono>
#include <cstdio>
typedef float v16 __attribute__((vector_size(64)));
int main() {
  v16 acc[24];
  for (int i = 0; i < 24; ++i) acc[i] = (v16){} + 1.0f * i;
  const v16 a = (v16){} + 0.999999f, b = (v16){} + 1e-7f;
  const long iters = 200000000;
  auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; ++i) acc[i] = acc[i] * a + b;
  }
  double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float s = 0;
  for (int i = 0; i < 24; ++i) s += acc[i][0];
  printf("peak: %.1f GFLOP/s per core (checksum %g)\n", iters * 24.0 * 16 * 2 / t / 1e9, s);
}
