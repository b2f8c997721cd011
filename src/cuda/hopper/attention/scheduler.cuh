// The persistent tile scheduler: a grid of at most one block per multiprocessor walks the units of TileOrder
// (params.hpp), block b taking units b, b + gridDim.x, ... and each unit's one or two work tiles in turn. The
// producer and the consumers walk the same sequence, each with its own cursor.
#pragma once

#include "cuda/device/sequence.cuh"
#include "cuda/hopper/attention/params.hpp"

namespace flashattn::cuda::hopper {

struct WorkTile {
  int first_row;  // of the query tile in the sequence; negative where the first tile begins before it
  int head;
  int batch;
};

struct TileScheduler {
  TileOrder order;
  int block_m;  // query rows of a tile

  // A position in the walk: a unit and which of its tiles.
  struct Cursor {
    int unit;
    int second;  // 0: the unit's first (longer) tile, 1: its second
  };

  __device__ __forceinline__ Cursor first() const { return {static_cast<int>(blockIdx.x), 0}; }
  __device__ __forceinline__ bool valid(const Cursor& cursor) const { return cursor.unit < order.units; }

  __device__ __forceinline__ Cursor next(const Cursor& cursor) const {
    if (cursor.second == 0 && order.paired) {
      // The unit's second tile is k, unless k is its first (the middle one of an odd count) or the empty tile.
      const int k = place(cursor.unit).step;
      if (k >= order.empty_tiles && k != order.m_blocks - 1 - k) return {cursor.unit, 1};
    }
    return {cursor.unit + static_cast<int>(gridDim.x), 0};
  }

  __device__ __forceinline__ WorkTile at(const Cursor& cursor) const {
    const UnitPlace unit = place(cursor.unit);
    const int m_block = cursor.second == 0 ? order.m_blocks - 1 - unit.step : unit.step;
    const int batch = order.heads_q.divide(unit.pair);
    return {m_block * block_m - order.row_shift, unit.pair - batch * order.heads_q.divisor, batch};
  }

 private:
  // A unit's (batch, head) pair, batch-major, and its index among that pair's units.
  struct UnitPlace {
    int pair;
    int step;
  };

  __device__ __forceinline__ UnitPlace place(int unit) const {
    const int group = order.group_units.divide(unit);
    const int in_group = unit - group * order.group_units.divisor;
    const int first_head = group * order.heads_per_group;
    // Only the last group may have fewer heads than the others.
    const InvariantDivisor& group_heads =
        first_head + order.heads_per_group <= order.heads ? order.group_heads : order.last_group_heads;
    const int step = group_heads.divide(in_group);
    return {first_head + in_group - step * group_heads.divisor, step};
  }
};

// What the producer and the consumers both derive from a work tile: its sequence, mask, query rows [m0, m0 + rows)
// (the rows before the sequence's start, if any, included) and the key tiles [key_tile_begin, key_tile_end) that
// those rows see.
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
  work.m0 = tile.first_row;
  work.rows = min(kBlockM, work.seq.seqlen_q - work.m0);
  work.mask.key_tiles<kBlockN>(work.m0, work.m0 + work.rows, work.key_tile_begin, work.key_tile_end);
  return work;
}

}  // namespace flashattn::cuda::hopper
