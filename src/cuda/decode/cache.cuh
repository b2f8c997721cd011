// One sequence of a KV cache as the decoding kernels see it: where its keys start and end, and where a
// cache position lives in memory (contiguous rows or pages). Every index read from the caller's device
// tensors is clamped or checked here, so that broken preconditions (flashattn/kvcache.hpp) never send a
// read or a write outside the cache.
#pragma once

#include <cstdint>

#include "kvcache_problem.hpp"

namespace flashattn::cuda::device {

__device__ __forceinline__ int clamp_to(int x, int lo, int hi) { return x < lo ? lo : (x > hi ? hi : x); }

// Element offsets of one token's K and V rows (head 0, channel 0), or invalid when its page is not a page
// of the cache.
struct TokenOffsets {
  std::int64_t k = 0;
  std::int64_t v = 0;
  bool valid = false;
};

// Position -> (page, row in page) in 32-bit arithmetic, a shift and a mask for power-of-two page sizes: the
// 64-bit division and remainder this replaced ran once per key row per tile and cost paged caches 14 %
// against contiguous ones (H100, d = 128: 2.49 against 2.89 TB/s at batch 64, 4k keys).
struct PageDivider {
  int size = 1;
  int shift = -1;  // log2(size) when size is a power of two

  static __device__ __forceinline__ PageDivider of(std::int64_t page_size) {
    PageDivider d;
    d.size = page_size > 0 ? static_cast<int>(page_size) : 1;
    if ((d.size & (d.size - 1)) == 0) d.shift = __ffs(d.size) - 1;
    return d;
  }
  __device__ __forceinline__ int page(int position) const { return shift >= 0 ? position >> shift : position / size; }
  __device__ __forceinline__ int row_in_page(int position) const {
    return shift >= 0 ? position & (size - 1) : position % size;
  }
};

struct CacheSequence {
  int batch = 0;
  int cached = 0;        // tokens in the cache before this call
  int total = 0;         // after the append
  int leftpad = 0;       // first attended position
  int seqlen_k = 0;      // attended keys: total - leftpad
  std::int64_t row = 0;  // contiguous caches: the cache row of this sequence
  PageDivider pages;

  static __device__ __forceinline__ CacheSequence of(const detail::KVCacheProblem& p, int b) {
    CacheSequence s;
    s.batch = b;
    const int capacity = static_cast<int>(p.cache.capacity);
    s.row = p.cache.cache_batch_idx != nullptr ? p.cache.cache_batch_idx[b] : b;
    s.pages = PageDivider::of(p.cache.page_size);
    if (p.cache.page_size == 0 && (s.row < 0 || s.row >= p.cache.rows)) return s;  // no such cache row: no keys
    s.cached = clamp_to(p.cache_seqlens[b], 0, capacity);
    s.total = clamp_to(s.cached + static_cast<int>(p.seqlen_new), 0, capacity);
    s.leftpad = p.cache_leftpad != nullptr ? clamp_to(p.cache_leftpad[b], 0, s.cached) : 0;
    s.seqlen_k = s.total - s.leftpad;
    return s;
  }

  // What of() gives without reading the caller's tensors, for a call without cache_batch_idx and
  // cache_leftpad: the cache row (the batch index) and the page size, all the copies of a tile need.
  static __device__ __forceinline__ CacheSequence unread(const detail::KVCacheProblem& p, int b) {
    CacheSequence s;
    s.batch = b;
    s.row = b;
    s.pages = PageDivider::of(p.cache.page_size);
    return s;
  }

  // The cache row (contiguous) or the block table's entry (paged) for cache position `position` (0 <=
  // position < capacity), unchecked. The decoding kernel loads a key tile's entries one tile ahead of its
  // copies and checks them (offsets()) only then: a check right after the load made each thread wait for it
  // there, four times per tile, which cost paged caches 25-30 % against contiguous ones when one block ran
  // per SM (H100, d = 128: 2.04 against 2.95 TB/s at batch 8 x 32k keys).
  __device__ __forceinline__ int slot_of(const detail::CacheLayout& c, int position) const {
    if (c.page_size == 0) return static_cast<int>(row);
    return c.block_table[batch * c.block_table_stride + pages.page(position)];
  }

  // Where position `position` of KV head `head` lives, given its slot_of(); invalid when the slot is not a
  // row or page of the cache (or -1: no key).
  __device__ __forceinline__ TokenOffsets offsets(const detail::CacheLayout& c, int slot, int position,
                                                  int head) const {
    TokenOffsets t;
    if (slot < 0 || slot >= c.rows) return t;
    const int in_slot = c.page_size != 0 ? pages.row_in_page(position) : position;
    t.k = slot * c.k.batch_stride + in_slot * c.k.token_stride + head * c.k.head_stride;
    t.v = slot * c.v.batch_stride + in_slot * c.v.token_stride + head * c.v.head_stride;
    t.valid = true;
    return t;
  }
  __device__ __forceinline__ TokenOffsets locate(const detail::CacheLayout& c, int position, int head) const {
    return offsets(c, slot_of(c, position), position, head);
  }
};

// The rotary embedding of channel c of a row x (rotary_dim channels rotated, the rest unchanged) at a
// position, in fp32: pairs (2i, 2i + 1) when interleaved, else (i, i + rotary_dim / 2), each rotated by
// the angle whose cos / sin are entry i of the tables.
template <class T, class Load>
__device__ __forceinline__ float rotated_channel(const detail::RotaryEmbedding& r, int position, int c, const Load& x) {
  if (r.cos == nullptr || c >= r.rotary_dim) return x(c);
  const int half = static_cast<int>(r.rotary_dim / 2);
  int pair;
  int first;  // channel index of the pair's first element
  if (r.interleaved) {
    pair = c / 2;
    first = c & ~1;
  } else {
    pair = c % half;
    first = pair;
  }
  const int second = r.interleaved ? first + 1 : first + half;
  const float cos = static_cast<float>(static_cast<const T*>(r.cos)[position * r.cos_stride + pair]);
  const float sin = static_cast<float>(static_cast<const T*>(r.sin)[position * r.sin_stride + pair]);
  return c == first ? x(first) * cos - x(second) * sin : x(first) * sin + x(second) * cos;
}

}  // namespace flashattn::cuda::device
