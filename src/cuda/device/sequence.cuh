// One sequence of the batch as a kernel sees it, and the mask as a policy that owns the loop bounds.
// The rules are the CPU backend's (src/cpu/kernel/mask.hpp): causal is a window with right = 0; the
// alignment places the diagonal d_i = i + offset (bottom-right: offset = seqlen_k - seqlen_q; top-left: 0);
// query i sees key j iff 0 <= j < seqlen_k, j >= d_i - left (left >= 0) and j <= d_i + right (right >= 0).
#pragma once

#include <cstdint>

#include "cuda/device/ptx.cuh"
#include "cuda/params.hpp"

namespace flashattn::cuda::device {

struct Sequence {
  int q_begin = 0;  // token offset of the first query (0 when batched)
  int seqlen_q = 0;
  int k_begin = 0;
  int seqlen_k = 0;         // keys attended to (seqused_k when given)
  int seqlen_k_stored = 0;  // keys in the tensor (>= seqlen_k): gradients of the rest are zero

  static __device__ __forceinline__ Sequence of(const AttentionParams& p, int b) {
    Sequence s;
    if (p.cu_seqlens_q == nullptr) {
      s.seqlen_q = p.seqlen_q;
      s.seqlen_k = p.seqlen_k;
      s.seqlen_k_stored = p.seqlen_k;
      return s;
    }
    s.q_begin = p.cu_seqlens_q[b];
    s.seqlen_q = p.cu_seqlens_q[b + 1] - s.q_begin;
    s.k_begin = p.cu_seqlens_k[b];
    s.seqlen_k_stored = p.cu_seqlens_k[b + 1] - s.k_begin;
    s.seqlen_k = p.seqused_k != nullptr ? p.seqused_k[b] : s.seqlen_k_stored;
    return s;
  }

  // Element (t, h, c) of a token tensor for batch b.
  template <class T>
  __device__ __forceinline__ T* query_row(const detail::TokenTensor& t, int b, int row, int head) const {
    return static_cast<T*>(t.data) + b * t.batch_stride + (q_begin + static_cast<std::int64_t>(row)) * t.token_stride +
           head * t.head_stride;
  }
  template <class T>
  __device__ __forceinline__ T* key_row(const detail::TokenTensor& t, int b, int row, int head) const {
    return static_cast<T*>(t.data) + b * t.batch_stride + (k_begin + static_cast<std::int64_t>(row)) * t.token_stride +
           head * t.head_stride;
  }
  __device__ __forceinline__ std::int64_t row_index(std::int64_t batch_stride, std::int64_t head_stride, int b,
                                                    int head, int row) const {
    return b * batch_stride + head * head_stride + q_begin + row;
  }
};

__device__ __forceinline__ int clamp_int(int x, int lo, int hi) { return x < lo ? lo : (x > hi ? hi : x); }

struct MaskPolicy {
  int seqlen_q = 0;
  int seqlen_k = 0;
  int offset = 0;
  int left = -1;
  int right = -1;

  static __device__ __forceinline__ MaskPolicy of(const AttentionParams& p, const Sequence& s) {
    return {s.seqlen_q, s.seqlen_k, p.bottom_right ? s.seqlen_k - s.seqlen_q : 0, p.window_left, p.window_right};
  }

  __device__ __forceinline__ int first_key(int row) const {
    return left < 0 ? 0 : clamp_int(row + offset - left, 0, seqlen_k);
  }
  __device__ __forceinline__ int end_key(int row) const {
    return right < 0 ? seqlen_k : clamp_int(row + offset + right + 1, 0, seqlen_k);
  }
  __device__ __forceinline__ int first_row(int key) const {
    return right < 0 ? 0 : clamp_int(key - offset - right, 0, seqlen_q);
  }
  __device__ __forceinline__ int end_row(int key) const {
    return left < 0 ? seqlen_q : clamp_int(key - offset + left + 1, 0, seqlen_q);
  }

  // Key tiles of width kBlockN that rows [row_begin, row_end) see: [first, end) in tile units.
  template <int kBlockN>
  __device__ __forceinline__ void key_tiles(int row_begin, int row_end, int& first, int& end) const {
    const int key_begin = first_key(row_begin);
    const int key_end = end_key(row_end - 1);
    first = key_begin / kBlockN;
    end = key_end > key_begin ? (key_end + kBlockN - 1) / kBlockN : first;
  }
  // Query tiles of height kBlockM that see any key of [key_begin, key_end).
  template <int kBlockM>
  __device__ __forceinline__ void query_tiles(int key_begin, int key_end, int& first, int& end) const {
    const int row_begin = first_row(key_begin);
    const int row_end = end_row(key_end - 1);
    first = row_begin / kBlockM;
    end = row_end > row_begin ? (row_end + kBlockM - 1) / kBlockM : first;
  }

  // True unless every pair of the tile is a visible (row < seqlen_q, key < seqlen_k) pair.
  __device__ __forceinline__ bool tile_needs_mask(int row_begin, int row_end, int key_begin, int key_end) const {
    return row_end > seqlen_q || key_end > seqlen_k || first_key(row_end - 1) > key_begin ||
           end_key(row_begin) < key_end;
  }
  // The keys [first, end) that row `row` sees; none for rows past the sequence. Kernels take a row's range
  // once and test each of its keys against it.
  struct KeyRange {
    int first;
    int end;
    __device__ __forceinline__ bool contains(int key) const { return key >= first && key < end; }
  };
  __device__ __forceinline__ KeyRange keys_of(int row) const {
    return {first_key(row), row < seqlen_q ? end_key(row) : 0};
  }
  __device__ __forceinline__ bool visible(int row, int key) const { return keys_of(row).contains(key); }
};

// Scores as the softmax sees them, in log2 units: x = scale * q.k; softcap * tanh(x / softcap); minus
// slope * |d_i - j| (ALiBi); masked pairs -inf.
struct ScoreMod {
  float scale = 1.0f;
  float softcap = 0.0f;
  float slope = 0.0f;
  int offset = 0;  // the diagonal's offset, for the ALiBi distance

  __device__ __forceinline__ bool plain() const { return softcap == 0.0f && slope == 0.0f; }

  // raw q.k -> log2-domain score. `softcap_grad` receives d(capped)/d(scaled) = 1 - tanh^2.
  __device__ __forceinline__ float apply(float dot, int row, int key, float* softcap_grad = nullptr) const {
    float x = dot * scale;
    if (softcap != 0.0f) {
      const float t = tanhf(x / softcap);
      if (softcap_grad != nullptr) *softcap_grad = 1.0f - t * t;
      x = softcap * t;
    } else if (softcap_grad != nullptr) {
      *softcap_grad = 1.0f;
    }
    if (slope != 0.0f) x -= slope * fabsf(static_cast<float>(row + offset - key));
    return x * kLog2e;
  }
};

}  // namespace flashattn::cuda::device
