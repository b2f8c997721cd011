// The AMX tile vocabulary of the bf16 forward: eight tile registers, each configured as 16 rows of 64 bytes
// (16 x 16 fp32 accumulators, or 16 x 32 bf16 operands), and the few operations the kernel uses.
// With FLASHATTN_AMX_EMULATED the same operations run as plain C++ on thread-local arrays, so that the
// kernel's logic is tested on machines without AMX (CI); otherwise they are single AMX instructions.
#pragma once

#include <cstdint>
#include <cstring>

namespace flashattn::cpu {
namespace {
namespace amx {

inline constexpr int kTileRows = 16;
inline constexpr int kTileRowBytes = 64;
inline constexpr int kFloatsPerRow = kTileRowBytes / 4;  // 16 fp32 accumulators
inline constexpr int kBf16PerRow = kTileRowBytes / 2;    // 32 bf16 operands: 16 pairs

// The 64-byte operand of ldtilecfg (palette 1).
struct TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
};
static_assert(sizeof(TileConfig) == 64, "ldtilecfg reads 64 bytes");

#if defined(FLASHATTN_AMX_EMULATED)

struct EmulatedTiles {
  alignas(64) unsigned char bytes[8][kTileRows][kTileRowBytes];
};
inline thread_local EmulatedTiles emulated;

inline void configure() {}
inline void release() {}
template <int Tile>
inline void zero() {
  std::memset(emulated.bytes[Tile], 0, sizeof emulated.bytes[Tile]);
}
template <int Tile>
inline void load(const void* base, std::int64_t stride_bytes) {
  for (int r = 0; r < kTileRows; ++r) {
    std::memcpy(emulated.bytes[Tile][r], static_cast<const unsigned char*>(base) + r * stride_bytes, kTileRowBytes);
  }
}
template <int Tile>
inline void store(void* base, std::int64_t stride_bytes) {
  for (int r = 0; r < kTileRows; ++r) {
    std::memcpy(static_cast<unsigned char*>(base) + r * stride_bytes, emulated.bytes[Tile][r], kTileRowBytes);
  }
}
inline float bf16_at(const unsigned char* row, int index) {
  std::uint16_t bits;
  std::memcpy(&bits, row + 2 * index, 2);
  const std::uint32_t wide = std::uint32_t{bits} << 16;
  float value;
  std::memcpy(&value, &wide, 4);
  return value;
}
// C[m][n] += sum over pairs p of A[m][2p] B[p][2n] + A[m][2p + 1] B[p][2n + 1] (TDPBF16PS).
template <int C, int A, int B>
inline void dot_bf16() {
  for (int m = 0; m < kTileRows; ++m) {
    for (int n = 0; n < kFloatsPerRow; ++n) {
      float acc;
      std::memcpy(&acc, emulated.bytes[C][m] + 4 * n, 4);
      for (int p = 0; p < kTileRows; ++p) {
        acc += bf16_at(emulated.bytes[A][m], 2 * p) * bf16_at(emulated.bytes[B][p], 2 * n) +
               bf16_at(emulated.bytes[A][m], 2 * p + 1) * bf16_at(emulated.bytes[B][p], 2 * n + 1);
      }
      std::memcpy(emulated.bytes[C][m] + 4 * n, &acc, 4);
    }
  }
}

#else

// Every tile: 16 rows of 64 bytes. Each thread that runs tile instructions loads this once.
inline void configure() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.bytes_per_row[t] = kTileRowBytes;
    config.rows[t] = kTileRows;
  }
  asm volatile("ldtilecfg %0" ::"m"(config));
}
inline void release() { asm volatile("tilerelease" ::); }
// The tile number is an immediate operand ("n"), printed bare by %c. Loads carry a memory clobber so that
// ordinary stores to their source are not moved past them.
template <int Tile>
inline void zero() {
  asm volatile("tilezero %%tmm%c0" ::"n"(Tile));
}
template <int Tile>
inline void load(const void* base, std::int64_t stride_bytes) {
  asm volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(base), "r"(stride_bytes), "n"(Tile) : "memory");
}
template <int Tile>
inline void store(void* base, std::int64_t stride_bytes) {
  asm volatile("tilestored %%tmm%c2, (%0,%1,1)" ::"r"(base), "r"(stride_bytes), "n"(Tile) : "memory");
}
template <int C, int A, int B>
inline void dot_bf16() {
  asm volatile("tdpbf16ps %%tmm%c2, %%tmm%c1, %%tmm%c0" ::"n"(C), "n"(A), "n"(B));
}

#endif

}  // namespace amx
}  // namespace
}  // namespace flashattn::cpu
