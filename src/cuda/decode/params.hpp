// What the decoding kernels (append.cuh, kernel.cuh, merge.cuh) receive: the validated KV-cache problem
// and the host's schedule for it.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "kvcache_problem.hpp"

namespace flashattn::cuda {

struct DecodeParams {
  detail::KVCacheProblem problem;
  int num_splits = 1;  // key-range parts per (sequence, KV head, row tile)
  int row_tiles = 1;   // blocks of kDecodeRows rows (query heads of a KV head x new tokens)
  // Split runs on Hopper of at most kMaxClusterSplits splits: the splits of each row tile run as one cluster
  // and merge through its shared memory (epilogue.cuh); no workspace, no combine.
  bool cluster_merge = false;
  // Other split runs: every split's normalised output and lse, combined by merge.cuh. Rows are (batch, head_q,
  // token) in that order, partial_rows of them per split.
  float* out_partial = nullptr;  // (num_splits, partial_rows, head_dim_v)
  float* lse_partial = nullptr;  // (num_splits, partial_rows)
  std::int64_t partial_rows = 0;
  // Hopper: the copy engine's view of the cache, boxes of tma_box_rows key rows x 64 channels of one head,
  // over (channel, head, row in cache row or page, cache row or page). 0 rows: the threads copy instead.
  int tma_box_rows = 0;
  // Split 0's first key tile starts at key 0 for every sequence: no left window, no cache_leftpad, and the
  // cache row is the batch index (no cache_batch_idx).
  bool first_tile_at_key0 = false;
  CUtensorMap k_map;
  CUtensorMap v_map;

  // Elements of workspace a split run of `splits` parts needs.
  static std::int64_t workspace_elements(const detail::KVCacheProblem& p, int splits, bool cluster_merge) {
    return splits <= 1 || cluster_merge ? 0 : splits * p.batch * p.heads_q * p.seqlen_q * (p.head_dim_v + 1);
  }
};

}  // namespace flashattn::cuda
