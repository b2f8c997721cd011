// The decoding kernel's online softmax, per warp: the warp's scores of its keys x kDecodeRows rows arrive as
// m16n8 accumulators (lane holds rows lane / 4 and lane / 4 + 8, two keys of each n8 tile). Scores go to the
// log2 domain (scale, softcap, ALiBi as flashattn/options.hpp has them), masked keys to -inf; the row
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
  float scale_log2 = 0.0f;  // softmax_scale * log2(e)
  float softcap = 0.0f;     // 0: off
  float softcap_log2 = 0.0f;
  int first_key[kRowsPerLane] = {};
  int end_key[kRowsPerLane] = {};  // also bounded by the split's end
  int diagonal[kRowsPerLane] = {};
  float alibi_log2[kRowsPerLane] = {};  // -slope * log2(e); 0 without ALiBi
  float max[kRowsPerLane] = {-std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
  float sum[kRowsPerLane] = {};

  static __device__ __forceinline__ DecodeSoftmax of(const detail::KVCacheProblem& p, const DecodeMask& mask,
                                                     const DecodeRows& rows, int row0, int kv_head, int split_end,
                                                     int lane) {
    DecodeSoftmax s;
    s.softcap = p.softcap;
    s.scale_log2 = p.softcap > 0.0f ? p.softmax_scale / p.softcap : p.softmax_scale * kLog2e;
    s.softcap_log2 = p.softcap * kLog2e;
#pragma unroll
    for (int half = 0; half < kRowsPerLane; ++half) {
      const int row = row0 + lane / 4 + 8 * half;
      if (row >= rows.count) continue;  // empty range: every key masked
      const int token = rows.token(row);
      s.first_key[half] = mask.first_key(token);
      s.end_key[half] = min(mask.end_key(token), split_end);
      s.diagonal[half] = mask.diagonal(token);
      if (p.alibi_slopes != nullptr) {
        const std::int64_t batch = p.alibi_batch_stride != 0 ? blockIdx.z : 0;
        s.alibi_log2[half] = -p.alibi_slopes[batch * p.alibi_batch_stride + rows.head(kv_head, row)] * kLog2e;
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
          float x = scores.c[0][nt][2 * half + e] * scale_log2;
          if (softcap > 0.0f) x = softcap_log2 * tanhf(x);
          x += alibi_log2[half] * fabsf(static_cast<float>(diagonal[half] - key));
          if (key < first_key[half] || key >= end_key[half]) x = -CUDART_INF_F;
          scores.c[0][nt][2 * half + e] = x;
          tile_max = fmaxf(tile_max, x);
        }
      }
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
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
      float total = sum[half];
      total += __shfl_xor_sync(0xffffffffu, total, 1);
      total += __shfl_xor_sync(0xffffffffu, total, 2);
      if (lane % 4 == 0) {
        row_max[lane / 4 + 8 * half] = max[half];
        row_sum[lane / 4 + 8 * half] = total;
      }
    }
  }
};

}  // namespace flashattn::cuda::device
