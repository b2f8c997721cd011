// The decoding kernel's rows and mask. A block's rows are the query heads of one KV head times the query
// tokens: row r is token r / group_size of head kv_head * group_size + r % group_size, so the rows of one
// token are adjacent heads in memory. The mask rules are the portable kernels' (cuda/device/sequence.cuh):
// the diagonal of token i sits at key d_i = i + offset (bottom-right: offset = seqlen_k - seqlen_q), and
// token i sees key j iff 0 <= j < seqlen_k, j >= d_i - window_left (left >= 0), j <= d_i + window_right
// (right >= 0). Keys are counted from the sequence's leftpad.
#pragma once

#include <cstdint>

#include "cuda/decode/cache.cuh"
#include "kvcache_problem.hpp"

namespace flashattn::cuda::device {

struct DecodeRows {
  int group = 1;
  int count = 0;  // valid rows of the problem for this KV head: group * seqlen_q

  __device__ __forceinline__ int token(int row) const { return row / group; }
  __device__ __forceinline__ int head(int kv_head, int row) const { return kv_head * group + row % group; }
};

struct DecodeMask {
  int diagonal_offset = 0;
  int seqlen_k = 0;
  int left = -1;
  int right = -1;

  static __device__ __forceinline__ DecodeMask of(const detail::KVCacheProblem& p, const CacheSequence& s) {
    DecodeMask m;
    m.seqlen_k = s.seqlen_k;
    m.diagonal_offset = p.bottom_right ? s.seqlen_k - static_cast<int>(p.seqlen_q) : 0;
    m.left = static_cast<int>(p.window_left);
    m.right = static_cast<int>(p.window_right);
    return m;
  }
  __device__ __forceinline__ int diagonal(int token) const { return token + diagonal_offset; }
  // [first_key, end_key) of one token.
  __device__ __forceinline__ int first_key(int token) const { return left >= 0 ? max(0, diagonal(token) - left) : 0; }
  __device__ __forceinline__ int end_key(int token) const {
    return right >= 0 ? min(seqlen_k, max(0, diagonal(token) + right + 1)) : seqlen_k;
  }
};

// The key range of a block's split: the keys its rows see, cut into num_splits parts of whole key tiles.
struct SplitRange {
  int begin = 0;
  int end = 0;

  // The range starts on a whole tile (the rows' masks drop the keys before their first): key tiles then start
  // on page boundaries, as the copy engine's paged boxes need.
  static __device__ __forceinline__ SplitRange of(const DecodeMask& mask, int first_token, int last_token, int split,
                                                  int num_splits, int tile_keys) {
    const int lo = mask.first_key(first_token) / tile_keys * tile_keys;
    const int hi = mask.end_key(last_token);
    SplitRange r;
    if (hi <= lo) return r;
    const int tiles = (hi - lo + tile_keys - 1) / tile_keys;
    const int tiles_per_split = (tiles + num_splits - 1) / num_splits;
    r.begin = min(hi, lo + split * tiles_per_split * tile_keys);
    r.end = min(hi, r.begin + tiles_per_split * tile_keys);
    return r;
  }
  __device__ __forceinline__ int tiles(int tile_keys) const { return (end - begin + tile_keys - 1) / tile_keys; }
};

}  // namespace flashattn::cuda::device
