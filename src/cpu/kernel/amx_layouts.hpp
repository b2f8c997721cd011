// Tile-operand layouts of the AMX kernels, their packers, and the one block product they are used in.
// A tile dot product C[16 x 16] += A[16 x 32] B multiplies bf16 pairs: B row p holds, for each of 16
// columns, the two bf16 values that meet A's columns 2p and 2p + 1 (the "VNNI" layout). Two layouts cover
// every product of the forward and backward, each packed so that one B tile is 1 KiB of contiguous memory:
//   ChannelPairs (B of X^T, e.g. S = Q K^T):  tile (16 tokens, 16 channel pairs) holds (x[t][2p], x[t][2p+1])
//   TokenPairs   (B of P X, e.g. O = P V):    tile (16 token pairs, 16 channels) holds (x[2s][c], x[2s+1][c])
// Tokens of each sequence start at an aligned offset of the packed numbering (token_base), so that no
// tile straddles two sequences; padding tokens and channels are zero.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernel/amx_tiles.hpp"
#include "kernel/convert.hpp"
#include "kernel/pack.hpp"
#include "kernel/simd.hpp"
#include "kernel/tensor_access.hpp"
#include "problem.hpp"
#include "tiles.hpp"

namespace flashattn::cpu {
namespace {

inline constexpr std::int64_t kTileElems = amx::kTileRows * amx::kBf16PerRow;  // bf16 values of one tile
inline constexpr std::int64_t kBlock = 2 * amx::kTileRows;                     // 32: the side of a 2 x 2 block of tiles
static_assert(kBlock == kAmxChannelBlock, "the plan pads channels to whole blocks");

inline std::int64_t round_up_block(std::int64_t x) { return round_up(x, kBlock); }

struct ChannelPairs {
  std::uint16_t* data = nullptr;
  std::int64_t tokens = 0;  // packed tokens per head (a multiple of 32)
  std::int64_t pairs = 0;   // channel pairs (channels rounded up to 32, halved)

  static std::int64_t elems(std::int64_t heads, std::int64_t tokens, std::int64_t channels) {
    return heads * tokens * round_up_block(channels);
  }
  std::uint16_t* tile(std::int64_t head, std::int64_t token, std::int64_t pair) const {
    return data + ((head * (tokens / amx::kTileRows) + token / amx::kTileRows) * pairs + pair) * amx::kBf16PerRow;
  }
  // Advancing the pair by a tile's 16 rows.
  std::int64_t pair_step() const { return kTileElems; }
  void put(std::int64_t head, std::int64_t token, std::int64_t channel, std::uint16_t bits) const {
    tile(head, token, channel / 2)[(token % amx::kTileRows) * 2 + channel % 2] = bits;
  }
};

struct TokenPairs {
  std::uint16_t* data = nullptr;
  std::int64_t tokens = 0;          // packed tokens per head (a multiple of 32)
  std::int64_t channel_blocks = 0;  // 16-channel blocks (channels rounded up to 32)

  static std::int64_t elems(std::int64_t heads, std::int64_t tokens, std::int64_t channels) {
    return heads * tokens * round_up_block(channels);
  }
  std::uint16_t* tile(std::int64_t head, std::int64_t token, std::int64_t channel) const {
    return data +
           ((head * (tokens / kBlock) + token / kBlock) * channel_blocks + channel / amx::kFloatsPerRow) * kTileElems;
  }
  // Advancing the token by 32 (one tile of pairs).
  std::int64_t token_step() const { return channel_blocks * kTileElems; }
  void put(std::int64_t head, std::int64_t token, std::int64_t channel, std::uint16_t bits) const {
    tile(head, token,
         channel)[((token % kBlock) / 2) * amx::kBf16PerRow + (channel % amx::kFloatsPerRow) * 2 + token % 2] = bits;
  }
};

// Packs the bf16 tokens of every sequence (query or key side) into any of the layouts above; `base[b]` is the
// packed index of sequence b's token 0. The layout's memory must be zeroed beforehand.
template <typename Layout>
void pack_tokens(const detail::Problem& p, const detail::TokenTensor& src, bool query_side, std::int64_t heads,
                 std::int64_t channels, const std::int64_t* base, const Layout& dst, int threads) {
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t h = 0; h < heads; ++h) {
      const detail::SequenceSpan seq = p.sequence(b);
      const auto rows = head_rows<const BFloat16>(src, b, query_side ? seq.q_begin : seq.k_begin, h);
      const std::int64_t count = query_side ? seq.seqlen_q : seq.seqlen_k;
      for (std::int64_t t = 0; t < count; ++t) {
        for (std::int64_t c = 0; c < channels; ++c) dst.put(h, base[b] + t, c, rows.row(t)[c].bits);
      }
    }
  }
}

// The block product of every AMX product: C[32 x 32] (= or +=) sum over `steps` of A[32 x 32] B[32 x 32].
// A: row-major bf16, its two row halves at a and a + 16 rows (a_stride bytes per row), advancing a_step
// values per step. B: its two column halves as contiguous tiles b0, b1, advancing b_step values per step.
// C: fp32, row-major with c_stride bytes per row; loaded first when `accumulate`, else zeroed.
inline void tile_block(float* c, std::int64_t c_stride, bool accumulate, const std::uint16_t* a, std::int64_t a_stride,
                       std::int64_t a_step, const std::uint16_t* b0, const std::uint16_t* b1, std::int64_t b_step,
                       std::int64_t steps) {
  float* c_low = reinterpret_cast<float*>(reinterpret_cast<char*>(c) + amx::kTileRows * c_stride);
  if (accumulate) {
    amx::load<0>(c, c_stride);
    amx::load<1>(c + amx::kTileRows, c_stride);
    amx::load<2>(c_low, c_stride);
    amx::load<3>(c_low + amx::kTileRows, c_stride);
  } else {
    amx::zero<0>();
    amx::zero<1>();
    amx::zero<2>();
    amx::zero<3>();
  }
  const std::uint16_t* a_low =
      reinterpret_cast<const std::uint16_t*>(reinterpret_cast<const char*>(a) + amx::kTileRows * a_stride);
  for (std::int64_t s = 0; s < steps; ++s) {
    amx::load<4>(a + s * a_step, a_stride);
    amx::load<5>(a_low + s * a_step, a_stride);
    amx::load<6>(b0 + s * b_step, amx::kTileRowBytes);
    amx::load<7>(b1 + s * b_step, amx::kTileRowBytes);
    amx::dot_bf16<0, 4, 6>();
    amx::dot_bf16<1, 4, 7>();
    amx::dot_bf16<2, 5, 6>();
    amx::dot_bf16<3, 5, 7>();
  }
  amx::store<0>(c, c_stride);
  amx::store<1>(c + amx::kTileRows, c_stride);
  amx::store<2>(c_low, c_stride);
  amx::store<3>(c_low + amx::kTileRows, c_stride);
}

// fp32 -> bf16 bits, round to nearest even, for finite values (probabilities and gradients).
inline VecI bf16_bits(VecF x) {
  VecI bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits + 0x7fff + ((bits >> 16) & 1)) >> 16 & 0xffff;
}

// Narrowing as a whole vector (one vpmovdw): a lane-by-lane loop of scalar stores cost more than the tile
// products themselves at head_dim 64.
using VecU16 = std::uint16_t __attribute__((vector_size(FLASHATTN_CPU_VECTOR_BYTES / 2)));

inline void store_bf16_bits(std::uint16_t* dst, VecI bits) {
  const VecU16 narrow = __builtin_convertvector(bits, VecU16);
  std::memcpy(dst, &narrow, sizeof narrow);
}

inline void store_bf16(std::uint16_t* dst, VecF x) { store_bf16_bits(dst, bf16_bits(x)); }

}  // namespace
}  // namespace flashattn::cpu
