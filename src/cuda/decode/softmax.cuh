// The decoding kernel's online softmax, per warp: the warp's scores of its keys x kDecodeRows rows arrive as
// m16n8 accumulators (lane holds rows lane / 4 and lane / 4 + 8, two keys of each n8 tile). Scores go to the
// log2 domain through the portable kernels' ScoreMod (scale, softcap, ALiBi), masked keys to -inf; the row
// maxima are shared by the four lanes of a quad, the row sums stay per lane until share().
#pragma once

#include <math_constants.h>

#include <limits>

#include "cuda/decode/cache.cuh"
#include "cuda/decode/mask.cuh"
#include "cuda/device/ptx.cuh"
#include "cuda/device/warp_gemm.cuh"
#include "kvcache_problem.hpp"

namespace flashattn::cuda::device {

struct DecodeSoftmax {
  static constexpr int kRowsPerLane = 2;
  ScoreMod mod[kRowsPerLane];  // the portable kernels' score modifiers, with each row's ALiBi slope
  int token[kRowsPerLane] = {};
  MaskPolicy::KeyRange keys[kRowsPerLane] = {};  // also bounded by the split's end; empty past the rows
  float max[kRowsPerLane] = {-std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  float sum[kRowsPerLane] = {};

  static __device__ __forceinline__ DecodeSoftmax of(const detail::KVCacheProblem& p, const MaskPolicy& mask,
                                                     const DecodeRows& rows, int row0, int kv_head, int split_end,
                                                     int lane) {
    DecodeSoftmax s;
#pragma unroll
    for (int half = 0; half < kRowsPerLane; ++half) {
      const int row = row0 + lane / 4 + 8 * half;
      if (row >= rows.count) continue;  // empty range: every key masked
      s.token[half] = rows.token(row);
      s.keys[half] = mask.keys_of(s.token[half]);
      s.keys[half].end = min(s.keys[half].end, split_end);
      ScoreMod& mod = s.mod[half];
      mod.scale = p.softmax_scale;
      mod.softcap = p.softcap;
      mod.offset = mask.offset;
      if (p.alibi_slopes != nullptr) {
        const std::int64_t batch = p.alibi_batch_stride != 0 ? blockIdx.z : 0;
        mod.slope = p.alibi_slopes[batch * p.alibi_batch_stride + rows.head(kv_head, row)];
      }
    }
    return s;
  }

  // Turns the scores of keys key0 ... key0 + 8 * kScoreTiles - 1 into probabilities against the running
  // maxima, and rescales the output rows whose maximum moved.
  template <int kScoreTiles, int kOutTiles>
  __device__ __forceinline__ void update(Accumulator<1, kScoreTiles>& scores, Accumulator<1, kOutTiles>& out, int key0,
                                         int lane) {
#pragma unroll
    for (int half = 0; half < kRowsPerLane; ++half) {
      float tile_max = -CUDART_INF_F;
#pragma unroll
      for (int nt = 0; nt < kScoreTiles; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int key = key0 + 8 * nt + 2 * (lane % 4) + e;
          float x = mod[half].apply(scores.c[0][nt][2 * half + e], token[half], key);
          if (!keys[half].contains(key)) x = -CUDART_INF_F;
          scores.c[0][nt][2 * half + e] = x;
          tile_max = fmaxf(tile_max, x);
        }
      }
      tile_max = quad_max(tile_max);
      const float new_max = fmaxf(max[half], tile_max);
      const float base = new_max == -CUDART_INF_F ? 0.0f : new_max;  // no key yet: keep exp2 away from NaN
      const float rescale = fast_exp2(max[half] - base);
      float tile_sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < kScoreTiles; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float probability = fast_exp2(scores.c[0][nt][2 * half + e] - base);
          scores.c[0][nt][2 * half + e] = probability;
          tile_sum += probability;
        }
      }
      sum[half] = sum[half] * rescale + tile_sum;
      max[half] = new_max;
#pragma unroll
      for (int nt = 0; nt < kOutTiles; ++nt) {
        out.c[0][nt][2 * half] *= rescale;
        out.c[0][nt][2 * half + 1] *= rescale;
      }
    }
  }

  // The warp's row maxima and full row sums (the quad's lanes summed) into shared memory.
  __device__ __forceinline__ void share(float* row_max, float* row_sum, int lane) {
#pragma unroll
    for (int half = 0; half < kRowsPerLane; ++half) {
      const float total = quad_sum(sum[half]);
      if (lane % 4 == 0) {
        row_max[lane / 4 + 8 * half] = max[half];
        row_sum[lane / 4 + 8 * half] = total;
      }
    }
  }
};

}  // namespace flashattn::cuda::device
