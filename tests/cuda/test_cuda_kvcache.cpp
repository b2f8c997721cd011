// forward_kvcache on CUDA device 0: the CPU backend's KV-cache grids (tests/cpp/kvcache_cases.hpp) in fp16 and
// bf16 on device copies of the same tensors, checked against the same float64 reference with the same rules
// (every element, the appended cache entries, every other cache byte unchanged, the guard regions around every
// device copy intact). Then the split-KV schedule forced to 1, 3, 8 and 12 splits and the automatic choice, and
// a CUDA graph: forward_kvcache captured once (append and rotary included) and replayed with new contents. Last, the
// rules particular to CUDA devices (kvcache.cpp), each rejecting a call before anything is written.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "cuda_cases.hpp"
#include "device_memory.hpp"
#include "kvcache_cases.hpp"
#include "rejection.hpp"

namespace flashattn::test {
namespace {

// The grid on CUDA device 0: fp32 cases become fp16 and bf16 in turn (CUDA has no fp32 kernels), and a case
// that then repeats one of the grid's is left out.
std::vector<KVCaseConfig> kvcache_on_cuda(const std::vector<KVCaseConfig>& grid) {
  std::vector<KVCaseConfig> cases;
  std::set<std::string> names;
  bool next_is_fp16 = true;
  for (KVCaseConfig c : grid) {
    if (c.dtype == DType::kFloat32) {
      c.dtype = next_is_fp16 ? DType::kFloat16 : DType::kBFloat16;
      next_is_fp16 = !next_is_fp16;
    }
    c.device = Device::cuda(0);
    if (names.insert(c.name()).second) cases.push_back(c);
  }
  return cases;
}

using CudaKVCaseTest = CudaParamTest<KVCaseConfig>;

class CudaKVLengths : public CudaKVCaseTest {};
TEST_P(CudaKVLengths, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, CudaKVLengths, testing::ValuesIn(kvcache_on_cuda(kvcache_lengths_grid())),
                         KVCaseName());

class CudaKVLongCache : public CudaKVCaseTest {};
TEST_P(CudaKVLongCache, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, CudaKVLongCache, testing::ValuesIn(kvcache_on_cuda(kvcache_long_grid())),
                         KVCaseName());

class CudaKVShapes : public CudaKVCaseTest {};
TEST_P(CudaKVShapes, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, CudaKVShapes, testing::ValuesIn(kvcache_on_cuda(kvcache_shapes_grid())),
                         KVCaseName());

class CudaKVRotary : public CudaKVCaseTest {};
TEST_P(CudaKVRotary, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, CudaKVRotary, testing::ValuesIn(kvcache_on_cuda(kvcache_rotary_grid())),
                         KVCaseName());

class CudaKVIndices : public CudaKVCaseTest {};
TEST_P(CudaKVIndices, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, CudaKVIndices, testing::ValuesIn(kvcache_on_cuda(kvcache_indices_grid())),
                         KVCaseName());

class CudaKVOptions : public CudaKVCaseTest {};
TEST_P(CudaKVOptions, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, CudaKVOptions, testing::ValuesIn(kvcache_on_cuda(kvcache_options_grid())),
                         KVCaseName());

// Long keys and few query rows, the shape split-KV is for: unsplit; 3 and 8 splits, which merge in their
// thread-block cluster on Hopper (kMaxClusterSplits, tiles.hpp) and in the combine elsewhere; 12, which take the
// combine everywhere; and the backend's choice; each with a workspace of kvcache_workspace_size() elements.
// Three splits without a workspace merge in their cluster on Hopper and run unsplit elsewhere.
// Then more (sequence, KV head) units than SMs, of lengths from 0 to a few key tiles.
std::vector<KVCaseConfig> split_grid() {
  std::vector<KVCaseConfig> configs;
  for (std::int64_t page_size : {0, 256}) {
    for (int num_splits : {1, 3, 8, 12, 0}) {
      KVCaseConfig c;
      c.dtype = page_size > 0 ? DType::kBFloat16 : DType::kFloat16;
      c.cache_seqlens = {4096, 700, 0, 33};
      c.heads_q = 8;
      c.heads_kv = 2;
      c.head_dim = c.head_dim_v = 128;
      c.page_size = page_size;
      c.num_splits = num_splits;
      c.workspace = true;
      c.device = Device::cuda(0);
      configs.push_back(c);
    }
  }
  KVCaseConfig chunk = configs.back();
  chunk.seqlen_q = chunk.seqlen_new = 4;
  chunk.causal = true;
  chunk.rotary_dim = 64;
  chunk.num_splits = 3;
  configs.push_back(chunk);
  chunk.workspace = false;
  configs.push_back(chunk);
  // Three splits at the other head dims' tiles, merged in clusters on Hopper.
  for (std::int64_t head_dim : {64, 256}) {
    KVCaseConfig c = configs.front();
    c.head_dim = c.head_dim_v = head_dim;
    c.num_splits = 3;
    configs.push_back(c);
  }
  // Batch 4 x 8 KV heads, a capacity of 512 keys in pages of 16 (the longest sequence's 504 after the call and the
  // test's 8 spare): the backend plans 4 splits of one tile, 32 clusters of 4, more than an H100 holds at once
  // (30), and takes 2 splits merged in clusters instead (kvcache.cpp, choose_merge).
  KVCaseConfig fallback;
  fallback.dtype = DType::kBFloat16;
  fallback.cache_seqlens = {503, 503, 490, 17};
  fallback.heads_q = 32;
  fallback.heads_kv = 8;
  fallback.head_dim = fallback.head_dim_v = 128;
  fallback.page_size = 16;
  fallback.workspace = true;
  fallback.device = Device::cuda(0);
  configs.push_back(fallback);

  // More (sequence, KV head) units than the device has SMs, lengths from 0 to a few key tiles, paged and not,
  // with and without a workspace (split or not). At head_dim 128, 140 sequences x 8 KV heads are more than 8
  // units per SM on a GPU of up to 140 SMs: the narrow tile (tiles.hpp; 132 SMs on an H100). Short sequences
  // and, there, one query head per KV head keep the float64 reference's share of the test's time small.
  for (std::int64_t head_dim : {128, 64}) {
    const bool narrow = head_dim == 128;
    std::vector<std::int32_t> lengths;
    for (int b = 0; b < (narrow ? 140 : 40); ++b) lengths.push_back(b * 37 % (narrow ? 161 : 301));
    for (std::int64_t page_size : {0, 16}) {
      for (bool workspace : {true, false}) {
        KVCaseConfig c;
        c.dtype = page_size > 0 ? DType::kBFloat16 : DType::kFloat16;
        c.cache_seqlens = lengths;
        c.heads_q = narrow ? 8 : 16;
        c.heads_kv = 8;
        c.head_dim = c.head_dim_v = head_dim;
        c.page_size = page_size;
        c.workspace = workspace;
        c.device = Device::cuda(0);
        if (head_dim == 64 && page_size == 16) {
          c.seqlen_q = c.seqlen_new = 3;
          c.causal = true;
        }
        configs.push_back(c);
      }
    }
  }
  // Paged, head_dim 128, 40 sequences x 8 KV heads: between 2 and 8 units per SM on a GPU of 40 to 160 SMs, the
  // medium tile (tiles.hpp). Pages of 16 take the copy engine on Hopper, pages of 64 (which neither divide nor are
  // multiples of its 96-key tile) the threads' copies; the last case splits, a causal chunk of three tokens.
  std::vector<std::int32_t> lengths;
  for (int b = 0; b < 40; ++b) lengths.push_back(b * 37 % 301);
  for (std::int64_t page_size : {16, 64, 16}) {
    KVCaseConfig c;
    c.dtype = page_size == 16 ? DType::kBFloat16 : DType::kFloat16;
    c.cache_seqlens = lengths;
    c.heads_q = c.heads_kv = 8;
    c.head_dim = c.head_dim_v = 128;
    c.page_size = page_size;
    c.workspace = true;
    c.device = Device::cuda(0);
    if (configs.back().page_size == 64) {
      c.seqlen_q = c.seqlen_new = 3;
      c.causal = true;
      c.num_splits = 2;
    }
    configs.push_back(c);
  }
  return configs;
}

class CudaKVSplits : public CudaKVCaseTest {};
TEST_P(CudaKVSplits, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, CudaKVSplits, testing::ValuesIn(split_grid()), KVCaseName());

class CudaKVWorkspace : public CudaTest {};

// The workspace a split run needs: none on Hopper for up to 8 splits, which merge in their thread-block cluster;
// else one fp32 output row and lse per split and query row, for the combine (kvcache.hpp, decode/params.hpp).
TEST_F(CudaKVWorkspace, SizeFollowsWhereTheSplitsMerge) {
  int major = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0), cudaSuccess);
  KVCaseConfig config;
  config.dtype = DType::kBFloat16;
  config.cache_seqlens = {4096, 33};
  config.heads_q = 8;
  config.heads_kv = 2;
  config.head_dim = config.head_dim_v = 128;
  config.device = Device::cuda(0);
  KVInstance c = make_kvcache_instance(config);
  const std::int64_t query_rows = 2 * 8 * 1;  // batch x heads_q x seqlen_q
  for (int splits : {1, 3, 8, 12}) {
    SCOPED_TRACE("num_splits " + std::to_string(splits));
    c.schedule_arg.num_splits = splits;
    const bool combine = splits > 1 && (major < 9 || splits > 8);
    EXPECT_EQ(kvcache_workspace_size(c.q_arg, c.cache_arg, c.options_arg, c.schedule_arg),
              combine ? splits * query_rows * (128 + 1) : 0);
  }
}

// The stream, graph and executable graph of the capture test, released however the test ends.
struct GraphResources {
  cudaStream_t stream = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~GraphResources() {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

class CudaKVGraph : public CudaTest {};

// Decoding loops capture a step once and replay it: the call must neither allocate nor synchronise, and must
// read every index and length from device memory at run time. Replayed twice with new contents behind the same
// pointers: fresh inputs and cache, then the next step (cache_seqlens grown by the appended tokens).
TEST_F(CudaKVGraph, CapturedCallReplaysWithNewContents) {
  KVCaseConfig config;
  config.dtype = DType::kBFloat16;
  config.cache_seqlens = {12, 0, 40, 200};
  config.seqlen_q = config.seqlen_new = 2;
  config.heads_q = 8;
  config.heads_kv = 2;
  config.head_dim = config.head_dim_v = 128;
  config.page_size = 16;
  config.rotary_dim = 64;
  config.causal = true;
  config.workspace = true;
  config.device = Device::cuda(0);
  KVInstance c = make_kvcache_instance(config);
  GraphResources r;
  ASSERT_EQ(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking), cudaSuccess);
  c.options_arg.stream = r.stream;

  ASSERT_EQ(cudaStreamBeginCapture(r.stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  std::string capture_error;
  try {
    forward_kvcache(c.q_arg, c.cache_arg, c.out_arg, c.lse_arg, c.options_arg, c.schedule_arg);
  } catch (const std::exception& e) {
    capture_error = e.what();
  }
  const cudaError_t ended = cudaStreamEndCapture(r.stream, &r.graph);
  ASSERT_TRUE(capture_error.empty()) << "forward_kvcache failed under capture: " << capture_error;
  ASSERT_EQ(ended, cudaSuccess) << cudaGetErrorString(ended);
  ASSERT_EQ(cudaGraphInstantiate(&r.exec, r.graph, 0), cudaSuccess);

  for (int replay = 1; replay <= 2; ++replay) {
    SCOPED_TRACE("replay " + std::to_string(replay));
    if (replay == 1) {
      refill_inputs(c, "/replay1");
    } else {
      advance_step(c, "/replay2");
    }
    const KVExpected expected = expect_kvcache(c);
    ASSERT_EQ(cudaGraphLaunch(r.exec, r.stream), cudaSuccess);
    ASSERT_NO_THROW(fetch_results(c));
    check_kvcache(c, expected);
  }
}

// The rules the CUDA backend adds to the KV-cache call's validation (kvcache.cpp). Each breaks one thing in a split
// run that is otherwise valid (a workspace, 12 splits: more than a cluster merges, so the combine's workspace is
// used on every device): the call must throw the documented exception naming the argument and write nothing,
// neither the outputs nor the cache (k_new would be appended into it).
struct KVRule {
  const char* name;
  DType dtype;
  RejectionKind kind;
  const char* argument;
  const char* keyword;
  std::function<void(KVInstance&)> break_rule;
};

void PrintTo(const KVRule& rule, std::ostream* os) { *os << rule.name; }

std::vector<KVRule> kv_rules() {
  using enum RejectionKind;
  constexpr DType kBf16 = DType::kBFloat16;
  const auto shift_bytes = [](TensorView& view, std::int64_t bytes) {
    view.data = static_cast<char*>(view.data) + bytes;
  };
  return {
      {"fp32", DType::kFloat32, kNotSupported, "q", "fp32", [](KVInstance&) {}},
      {"k_cache_pointer_not_16_byte_aligned", kBf16, kNotSupported, "k_cache", "16-byte",
       [=](KVInstance& c) { shift_bytes(c.cache_arg.k_cache, sizeof(std::uint16_t)); }},
      {"v_cache_token_stride_not_multiple_of_8", kBf16, kNotSupported, "v_cache", "16-byte",
       [](KVInstance& c) { c.cache_arg.v_cache.strides[1] += 4; }},
      {"out_pointer_not_16_byte_aligned", kBf16, kNotSupported, "out", "16-byte",
       [=](KVInstance& c) { shift_bytes(c.out_arg, sizeof(std::uint16_t)); }},
      {"workspace_too_small", kBf16, kInvalidArgument, "workspace", "kvcache_workspace_size",
       [](KVInstance& c) { c.schedule_arg.workspace->shape[0] -= 1; }},
      // The combine reads each split's fp32 rows 16 bytes at a time.
      {"workspace_not_16_byte_aligned", kBf16, kInvalidArgument, "workspace", "16-byte",
       [=](KVInstance& c) { shift_bytes(*c.schedule_arg.workspace, sizeof(float)); }},
  };
}

class CudaKVRule : public CudaParamTest<KVRule> {};

TEST_P(CudaKVRule, RejectsAndWritesNothing) {
  const KVRule& rule = GetParam();
  KVCaseConfig config;
  config.dtype = rule.dtype;
  config.cache_seqlens = {300, 41};
  config.seqlen_new = 2;
  config.seqlen_q = 2;
  config.heads_q = 8;
  config.heads_kv = 2;
  config.num_splits = 12;
  config.workspace = true;
  config.device = Device::cuda(0);
  KVInstance c = make_kvcache_instance(config);
  const std::vector<std::byte> k_cache_before = c.k_cache.storage->bytes;
  const std::vector<std::byte> v_cache_before = c.v_cache.storage->bytes;
  rule.break_rule(c);
  expect_rejected([&] { call_kvcache(c); }, rule.kind, rule.argument, {rule.keyword});
  ASSERT_NO_THROW(fetch_results(c));
  EXPECT_TRUE(still_poisoned("out", c.out));
  EXPECT_TRUE(still_poisoned("lse", c.lse));
  EXPECT_TRUE(c.k_cache.storage->bytes == k_cache_before) << "k_cache was written before the call was rejected";
  EXPECT_TRUE(c.v_cache.storage->bytes == v_cache_before) << "v_cache was written before the call was rejected";
}

INSTANTIATE_TEST_SUITE_P(Rules, CudaKVRule, testing::ValuesIn(kv_rules()),
                         [](const testing::TestParamInfo<KVRule>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace flashattn::test
