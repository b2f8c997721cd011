// The mask and the score modifiers applied to one tile of scores in the m16n8 accumulator layout, which the
// portable forward's warps and the Hopper forward's warpgroups (wgmma's accumulator per warp) share.
#pragma once

#include <math_constants.h>

#include "cuda/device/sequence.cuh"
#include "cuda/device/warp_gemm.cuh"

namespace flashattn::cuda::device {

// Score modifiers and the mask on one tile of scores (raw q.k in; log2-domain with kModify, raw otherwise).
// Compiled per case and chosen once per tile: run-time tests of `modify` per element doubled the
// instructions of the masked tiles (SASS), of which causal runs at short seqlen have many.
template <bool kModify, int kMTiles, int kNTiles>
__device__ __forceinline__ void mask_and_modify(Accumulator<kMTiles, kNTiles>& s, const MaskPolicy& mask,
                                                const ScoreMod& mod, int row0, int key0, int lane) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + 16 * mt + lane / 4 + 8 * r;
      const MaskPolicy::KeyRange keys = mask.keys_of(row);
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int key = key0 + 8 * nt + 2 * (lane % 4) + c;
          float& x = s.c[mt][nt][2 * r + c];
          if (kModify) x = mod.apply(x, row, key);
          if (!keys.contains(key)) x = -CUDART_INF_F;
        }
      }
    }
  }
}

// The mask of a tile none of whose rows has its first visible key past key0 (no window's left side inside the tile,
// as under a causal mask): a score is masked when its key is at or past its row's end, one comparison against a
// constant per score instead of two against the key. The Hopper forward's diagonal tiles
// (hopper/attention/mainloop.cuh); what it gained is with `key_end_mask` in tiles.hpp.
template <int kMTiles, int kNTiles>
__device__ __forceinline__ void mask_key_ends(Accumulator<kMTiles, kNTiles>& s, const MaskPolicy& mask, int row0,
                                              int key0, int lane) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int row = row0 + 16 * mt + lane / 4 + 8 * r;
      // How many of the thread's columns from its first one, key0 + 2 * (lane % 4), the row sees.
      const int visible = mask.keys_of(row).end - key0 - 2 * (lane % 4);
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          if (8 * nt + c >= visible) s.c[mt][nt][2 * r + c] = -CUDART_INF_F;
        }
      }
    }
  }
}

}  // namespace flashattn::cuda::device
