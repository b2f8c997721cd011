// What the Hopper forward kernel receives: the portable kernels' parameters, the tensor maps its copy engine
// reads Q, K, V and writes O through, and the persistent schedule's extent. Passed as one __grid_constant__
// kernel parameter, so the tensor maps sit in parameter space as TMA requires.
#pragma once

#include <cuda.h>

#include "cuda/params.hpp"

namespace flashattn::cuda::hopper {

// The order of the (query tile, head, batch) work tiles: heads in groups whose K and V fit in L2 together,
// inside a group the query tiles last first (under a causal mask they see the most keys), and every head of
// the group for one query tile before the next tile, so that the blocks running at once share K and V.
struct TileOrder {
  int m_blocks = 0;         // query tiles of a sequence
  int heads = 0;            // (batch, head) pairs
  int heads_per_group = 1;  // pairs whose K and V are read at the same time
  int tiles = 0;            // m_blocks x heads
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
