// The persistent tile scheduler: a grid of at most one block per multiprocessor walks the work tiles in
// TileOrder (params.hpp), block b taking tiles b, b + gridDim.x, ... . Under a causal mask the first tiles of a
// group are its longest, so the blocks start on the long ones and the short ones fill the end.
#pragma once

#include "cuda/device/sequence.cuh"
#include "cuda/hopper/attention/params.hpp"

namespace flashattn::cuda::hopper {

struct WorkTile {
  int m_block;
  int head;
  int batch;
};

struct TileScheduler {
  TileOrder order;
  int heads_q;

  __device__ __forceinline__ int first() const { return static_cast<int>(blockIdx.x); }
  __device__ __forceinline__ int next(int tile) const { return tile + static_cast<int>(gridDim.x); }
  __device__ __forceinline__ bool valid(int tile) const { return tile < order.tiles; }

  __device__ __forceinline__ WorkTile at(int tile) const {
    const int group_tiles = order.heads_per_group * order.m_blocks;
    const int group = tile / group_tiles;
    const int in_group = tile - group * group_tiles;
    const int first_head = group * order.heads_per_group;
    const int group_heads = min(order.heads_per_group, order.heads - first_head);
    const int pair = first_head + in_group % group_heads;
    return {order.m_blocks - 1 - in_group / group_heads, pair % heads_q, pair / heads_q};
  }
};

// What the producer and the consumers both derive from a work tile: its sequence, mask, query rows and the
// key tiles [key_tile_begin, key_tile_end) that those rows see.
struct TileWork {
  WorkTile tile;
  device::Sequence seq;
  device::MaskPolicy mask;
  int m0;
  int rows;
  int key_tile_begin;
  int key_tile_end;

  __device__ __forceinline__ int key_tiles() const { return key_tile_end - key_tile_begin; }
};

template <int kBlockM, int kBlockN>
__device__ __forceinline__ TileWork describe(const ForwardParams& p, const WorkTile& tile) {
  TileWork work;
  work.tile = tile;
  work.seq = device::Sequence::of(p, tile.batch);
  work.mask = device::MaskPolicy::of(p, work.seq);
  work.m0 = tile.m_block * kBlockM;
  work.rows = min(kBlockM, work.seq.seqlen_q - work.m0);
  work.mask.key_tiles<kBlockN>(work.m0, work.m0 + work.rows, work.key_tile_begin, work.key_tile_end);
  return work;
}

}  // namespace flashattn::cuda::hopper
