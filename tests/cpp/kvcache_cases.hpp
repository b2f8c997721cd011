// KV-cache test cases (forward_kvcache, flashattn/kvcache.hpp): their configurations, tensors, checks
// against the float64 reference (src/reference/reference_kvcache.hpp) and grids. The CPU tests (test_kvcache.cpp) run
// the grids on the host; the CUDA tests (tests/cuda/ test_cuda_kvcache.cpp) run the same grids on device copies of the
// same tensors (device_memory.hpp).
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "flashattn/flashattn.hpp"
#include "reference/reference_kvcache.hpp"
#include "test_case.hpp"
#include "test_tensors.hpp"

namespace flashattn::test {

struct KVCaseConfig {
  DType dtype = DType::kFloat32;
  std::vector<std::int32_t> cache_seqlens = {7, 3};  // tokens cached before the call; one entry per sequence
  std::int64_t seqlen_q = 1;
  std::int64_t seqlen_new = 1;  // new tokens appended (k_new / v_new given even when 0)
  bool append = true;           // false: no k_new / v_new at all (seqlen_new is then ignored)
  std::int64_t heads_q = 4;
  std::int64_t heads_kv = 1;
  std::int64_t head_dim = 64;
  std::int64_t head_dim_v = 64;

  std::int64_t page_size = 0;         // 0: contiguous cache; else paged, pages in shuffled order
  bool cache_batch_idx = false;       // contiguous: the sequences use shuffled rows of a larger cache
  std::vector<std::int32_t> leftpad;  // cache_leftpad, one entry per sequence, or empty
  std::int64_t rotary_dim = 0;        // 0: no rotary embedding
  bool rotary_interleaved = false;

  bool causal = false;
  CausalAlignment alignment = CausalAlignment::kBottomRight;
  int window_left = -1;
  int window_right = -1;
  float softcap = 0.0f;
  Alibi alibi = Alibi::kNone;

  bool padded = false;     // gaps after every head, token and batch entry / page of every tensor
  int num_splits = 0;      // KVCacheSchedule::num_splits
  bool workspace = false;  // pass a workspace of kvcache_workspace_size() elements

  Device device = Device::cpu();

  std::int64_t batch() const { return static_cast<std::int64_t>(cache_seqlens.size()); }
  std::int64_t new_tokens() const { return append ? seqlen_new : 0; }
  // Unique and readable ([A-Za-z0-9_]); it also seeds the inputs.
  std::string name() const;
};

// The tensors of one case. The cache holds random values at each sequence's positions [leftpad,
// cache_seqlens) and NaN everywhere else (the positions to append, those past them, before leftpad, pages or
// rows no sequence uses, padding): the call must not let them reach its results.
struct KVInstance {
  KVCaseConfig config;
  Tensor q, k_cache, v_cache, k_new, v_new, out, lse, workspace;
  Tensor cache_seqlens, cache_batch_idx, cache_leftpad, block_table, rotary_cos, rotary_sin, alibi_slopes;
  KVCache cache;             // host views: what the reference reads
  AttentionOptions options;  // host options
  // What the library is called with: the host views, or for CUDA cases the views of the device copies.
  TensorView q_arg, out_arg, lse_arg;
  KVCache cache_arg;
  AttentionOptions options_arg;
  KVCacheSchedule schedule_arg;

  bool on_cuda() const { return config.device.type == DeviceType::kCUDA; }
};

KVInstance make_kvcache_instance(const KVCaseConfig& config);

// New random q, new tokens and cache contents from `seed_tag` (same shapes, same pointers), outputs poisoned
// again; uploaded to the device copies for CUDA cases.
void refill_inputs(KVInstance& c, const std::string& seed_tag);
// The next decoding step: cache_seqlens grow by seqlen_new (the cache keeps what the last call appended),
// fresh q and new tokens from `seed_tag`, outputs poisoned again; uploaded for CUDA cases.
void advance_step(KVInstance& c, const std::string& seed_tag);

// What the call must produce, computed from the inputs as they are now, before the call appends.
struct KVExpected {
  reference::KVCacheResult ref64, naive;
  std::vector<std::byte> k_cache_before, v_cache_before;  // the cache storages' bytes
};
KVExpected expect_kvcache(const KVInstance& c);

// forward_kvcache with c's arguments; for CUDA cases fetch_results follows.
void call_kvcache(const KVInstance& c);
// CUDA cases: waits for the stream, then copies out, lse and the caches back into the host storages.
void fetch_results(const KVInstance& c);

// Every element: out and lse by FA3's rule (check_close), rows that see no key exactly 0 with lse -inf,
// nothing written outside the outputs' views, the appended cache entries exact (rotated ones within one
// ulp of the dtype of the float64 rotation), every other cache byte unchanged, device guards intact.
void check_kvcache(const KVInstance& c, const KVExpected& expected);

// expect, call, check.
void run_kvcache_instance(const KVInstance& c);
void run_kvcache_case(const KVCaseConfig& config);

// Grids (every fp32 case becomes fp16 / bf16 on CUDA: kvcache_on_cuda in the CUDA tests).
std::vector<KVCaseConfig> kvcache_lengths_grid();  // cache lengths 0..300 x new tokens x seqlen_q x page sizes
std::vector<KVCaseConfig> kvcache_long_grid();     // a 4096-token cache, contiguous and paged
std::vector<KVCaseConfig> kvcache_shapes_grid();   // GQA groups, head dims (40, 64, 128, head_dim_v != head_dim)
std::vector<KVCaseConfig> kvcache_rotary_grid();   // interleaved or not, partial or full, per-row or not
std::vector<KVCaseConfig> kvcache_indices_grid();  // leftpad, cache_batch_idx, no append, padded tensors
std::vector<KVCaseConfig> kvcache_options_grid();  // causal both alignments, windows, softcap, ALiBi

void PrintTo(const KVCaseConfig& config, std::ostream* os);
struct KVCaseName {
  std::string operator()(const testing::TestParamInfo<KVCaseConfig>& info) const { return info.param.name(); }
};

// Shared checks. The storage under t holds NaN outside t's view.
testing::AssertionResult untouched_outside_view(const std::string& what, const Tensor& t);
// Rows whose reference lse is -inf (no key) are exactly 0: out (rows, heads, width) with rows = batch x
// seqlen, lse (batch, heads, seqlen) or, batch 1, (heads, seqlen).
testing::AssertionResult zero_where_no_key(const std::vector<double>& out, const std::vector<double>& ref_lse,
                                           std::int64_t seqlen, std::int64_t heads, std::int64_t width);

}  // namespace flashattn::test
