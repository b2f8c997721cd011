// The decoding kernel's rows and mask. A block's rows are the query heads of one KV head times the query
// tokens: row r is token r / group_size of head kv_head * group_size + r % group_size, so the rows of one
// token are adjacent heads in memory. The mask is the portable kernels' MaskPolicy (cuda/device/sequence.cuh)
// over the query tokens, with keys counted from the sequence's leftpad.
#pragma once

#include <cstdint>

#include "cuda/decode/cache.cuh"
#include "cuda/device/sequence.cuh"
#include "kvcache_problem.hpp"

namespace flashattn::cuda::device {

struct DecodeRows {
  int group = 1;
  int count = 0;  // valid rows of the problem for this KV head: group * seqlen_q

  __device__ __forceinline__ int token(int row) const { return row / group; }
  __device__ __forceinline__ int head(int kv_head, int row) const { return kv_head * group + row % group; }
};

// The sequence's mask: the portable kernels' policy, over the keys from leftpad on.
__device__ __forceinline__ MaskPolicy decode_mask(const detail::KVCacheProblem& p, const CacheSequence& s) {
  const int seqlen_q = static_cast<int>(p.seqlen_q);
  return {seqlen_q, s.seqlen_k, p.bottom_right ? s.seqlen_k - seqlen_q : 0, static_cast<int>(p.window_left),
          static_cast<int>(p.window_right)};
}

// The key range of a block's split: the keys its rows see, cut into num_splits parts of whole key tiles.
struct SplitRange {
  int begin = 0;
  int end = 0;

  // The range starts on a whole tile (the rows' masks drop the keys before their first): key tiles then start
  // on page boundaries, as the copy engine's paged boxes need.
  static __device__ __forceinline__ SplitRange of(const MaskPolicy& mask, int first_token, int last_token, int split,
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
