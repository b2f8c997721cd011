// The grids of attention cases the backends are checked on. The CPU tests instantiate them as they are;
// the CUDA tests (tests/cuda) instantiate the same grids again on the GPU, so both backends face the same
// shapes, options, sequence sets and layouts.
#pragma once

#include <vector>

#include "test_case.hpp"

namespace flashattn::test {

// Problem shapes (grids_shapes.cpp).
std::vector<Config> odd_lengths_grid();   // lengths 1, 7, 113, 257 against each other, under four masks
std::vector<Config> head_dims_grid();     // every head-dim class, and head_dim_v != head_dim both ways
std::vector<Config> large_grid();         // 257 tokens at head_dim 256
std::vector<Config> head_groups_grid();   // GQA group sizes 1, 4, 8 and MQA
std::vector<Config> empty_grid();         // seqlen_q, seqlen_k or batch 0
std::vector<Config> fully_masked_grid();  // masks that leave query rows without any key

// Options, variable length and layouts (grids_options.cpp).
std::vector<Config> option_grid();  // every option alone and combined, square and rectangular
std::vector<Config> varlen_grid();  // sequence sets with empty and one-token sequences, seqused_k
std::vector<Config> layout_grid();  // padded, packed q/k/v, transposed storage

}  // namespace flashattn::test
