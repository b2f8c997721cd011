// The online softmax over the rows a warp owns, on m16n8 accumulators: each thread holds two rows per
// m-tile (lane / 4 and lane / 4 + 8); a row is spread over the 4 threads of a quad.
#pragma once

#include <math_constants.h>

#include "cuda/device/ptx.cuh"
#include "cuda/device/warp_gemm.cuh"

namespace flashattn::cuda::device {

// How a thread reduces its share of a row (2 x kNTiles values) to its maximum and sum. kSequential: one value
// after the other (kNTiles - 1 dependent steps and more). kTree: pairs, then a balanced tree (log2 kNTiles
// steps); the sum's rounding differs. Measured on an H100 (Hopper forward, same call, 2026-11-26): the tree
// gained 1.6-3.3 % on the 128 x 128 tiles at d = 64 and 1-3 % at d = 128, lost 12 % on the 192 x 80 d = 64
// tile (three consumers at 160 registers), was within 1 % at d = 256, and the portable kernels' d = 128 lost 2 %.
enum class RowReduction { kSequential, kTree };

// v[0] op v[1] op ... op v[N - 1] as a balanced tree, overwriting v.
template <int N, class Op>
__device__ __forceinline__ float tree_reduce(float (&v)[N], Op op) {
#pragma unroll
  for (int stride = 1; stride < N; stride *= 2) {
#pragma unroll
    for (int i = 0; i + stride < N; i += 2 * stride) v[i] = op(v[i], v[i + stride]);
  }
  return v[0];
}

template <int kMTiles, RowReduction kReduction = RowReduction::kSequential>
struct OnlineSoftmax {
  // Per row: the running maximum of the scores as given (multiply by `scale` for log2 units) and this
  // thread's share of the running sum of exp2. The quad's shares are added once, at the end.
  float row_max[kMTiles][2];
  float row_sum[kMTiles][2];

  __device__ __forceinline__ void init() {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        row_max[mt][r] = -CUDART_INF_F;
        row_sum[mt][r] = 0.0f;
      }
    }
  }

  // Scores s (log2 units once multiplied by scale, masked pairs -inf) become probabilities exp2(s * scale -
  // max * scale); the output accumulator o is rescaled to the new maximum.
  template <int kNTiles, int kDTiles>
  __device__ __forceinline__ void update(Accumulator<kMTiles, kNTiles>& s, Accumulator<kMTiles, kDTiles>& o,
                                         float scale) {
    float correction[kMTiles][2];
    to_probabilities(s, scale, correction);
    rescale(o, correction);
  }

  // The first half of update: the new maxima, the probabilities and the row sums, and per row the factor that
  // takes the output accumulated so far to the new maximum. Kernels whose P V product of the previous tile is
  // still running when this runs (hopper/attention) apply the factor once it has finished.
  template <int kNTiles>
  __device__ __forceinline__ void to_probabilities(Accumulator<kMTiles, kNTiles>& s, float scale,
                                                   float (&correction)[kMTiles][2]) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float tile_max = row_max[mt][r];
        if constexpr (kReduction == RowReduction::kTree) {
          float pair_max[kNTiles];
#pragma unroll
          for (int nt = 0; nt < kNTiles; ++nt) pair_max[nt] = fmaxf(s.c[mt][nt][2 * r], s.c[mt][nt][2 * r + 1]);
          tile_max = fmaxf(tile_max, tree_reduce(pair_max, [](float a, float b) { return fmaxf(a, b); }));
        } else {
#pragma unroll
          for (int nt = 0; nt < kNTiles; ++nt)
            tile_max = fmaxf(tile_max, fmaxf(s.c[mt][nt][2 * r], s.c[mt][nt][2 * r + 1]));
        }
        tile_max = quad_max(tile_max);
        // A row that has seen only masked keys keeps max -inf; subtracting 0 instead keeps exp2 at 0, not NaN.
        const float base = tile_max == -CUDART_INF_F ? 0.0f : tile_max * scale;
        correction[mt][r] = fast_exp2(row_max[mt][r] * scale - base);
        row_max[mt][r] = tile_max;
        float sum = 0.0f;
        float pair_sum[kNTiles];
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
          for (int i = 2 * r; i < 2 * r + 2; ++i) {
            s.c[mt][nt][i] = fast_exp2(fmaf(s.c[mt][nt][i], scale, -base));
            if constexpr (kReduction == RowReduction::kSequential) sum += s.c[mt][nt][i];
          }
          if constexpr (kReduction == RowReduction::kTree) pair_sum[nt] = s.c[mt][nt][2 * r] + s.c[mt][nt][2 * r + 1];
        }
        if constexpr (kReduction == RowReduction::kTree)
          sum = tree_reduce(pair_sum, [](float a, float b) { return a + b; });
        row_sum[mt][r] = row_sum[mt][r] * correction[mt][r] + sum;
      }
    }
  }

  // The second half: the output accumulator rescaled by the factors to_probabilities returned.
  template <int kDTiles>
  __device__ __forceinline__ void rescale(Accumulator<kMTiles, kDTiles>& o, const float (&correction)[kMTiles][2]) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
#pragma unroll
        for (int dt = 0; dt < kDTiles; ++dt) {
          o.c[mt][dt][2 * r] *= correction[mt][r];
          o.c[mt][dt][2 * r + 1] *= correction[mt][r];
        }
      }
    }
  }

  // Ends the pass: 1 / rowsum per row (0 for rows that saw no key) and the natural-log lse (-inf there).
  // sum >= 1 (the maximum's own term), where the approximate log2 is within 2^-22 of the exact one: log2f's
  // 30-instruction polynomial per row weighed on the short blocks of seqlen 2k. The reciprocal stays exact: the
  // approximate one changed the d = 64 kernel's key loop (SASS) and cost it 1 % at seqlen 8k (H100).
  __device__ __forceinline__ void finish(float (&inverse_sum)[kMTiles][2], float (&lse)[kMTiles][2], float scale) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float sum = quad_sum(row_sum[mt][r]);
        const bool seen = sum > 0.0f;
        inverse_sum[mt][r] = seen ? 1.0f / sum : 0.0f;
        lse[mt][r] = seen ? (row_max[mt][r] * scale + __log2f(sum)) * kLn2 : -CUDART_INF_F;
      }
    }
  }
};

}  // namespace flashattn::cuda::device
