// What the Hopper forward kernel receives: the portable kernels' parameters, the tensor maps its copy engine
// reads Q, K, V and writes O through (O from registers at d = 256, epilogue.cuh), and the persistent schedule's extent.
// Passed as one __grid_constant__ kernel parameter, so the tensor maps sit in parameter space as TMA requires.
#pragma once

#include <cuda.h>

#include "cuda/params.hpp"

namespace flashattn::cuda::hopper {

// The order of the (query tile, head, batch) work tiles, in units that the blocks take in turn (scheduler.cuh):
// heads in groups of about one wave of units (kernel.cuh), and inside a group every head of the group for one
// unit before the next unit, so that the blocks running at once share K and V in L2. A unit is one query tile, the last
// ones first; or, where the query tiles see more keys the later they are (causal), the pair of query tiles
// m_blocks - 1 - k and k, whose key counts add up to about the same for every k: the blocks' shares then come
// out even (a round-robin of single tiles gave them 55 to 87 % balance on the causal benchmark shapes).
struct TileOrder {
  int m_blocks = 0;         // query tiles of a sequence
  int row_shift = 0;        // rows the first query tile begins before the sequence (kernel.cuh)
  int heads = 0;            // (batch, head) pairs
  int heads_per_group = 1;  // pairs whose K and V are read at the same time
  bool paired = false;      // a unit is a pair of query tiles
  int units_per_head = 0;   // m_blocks, or (m_blocks + 1) / 2 when paired
  int units = 0;            // units_per_head x heads
};

struct HopperForwardParams {
  ForwardParams attention;
  // Four-dimensional (channel, token, head, batch) maps of 16-bit elements, 128-byte swizzled boxes of 64
  // channels: Q and O in block_m- and 64-row boxes, K and V in block_n-row boxes.
  CUtensorMap q_map;
  CUtensorMap k_map;
  CUtensorMap v_map;
  CUtensorMap o_map;
  TileOrder order;
};

}  // namespace flashattn::cuda::hopper
