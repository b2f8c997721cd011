// forward_kvcache and merge_attention_states on the CPU backend: the KV-cache grids (kvcache_cases.hpp)
// against the float64 reference, consecutive decoding steps, thread counts, the merge of attention
// states, and one test per validation rule of src/validate_kvcache.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "flashattn/info.hpp"
#include "kvcache_cases.hpp"
#include "rejection.hpp"

namespace flashattn::test {
namespace {

class KVLengths : public testing::TestWithParam<KVCaseConfig> {};
TEST_P(KVLengths, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, KVLengths, testing::ValuesIn(kvcache_lengths_grid()), KVCaseName());

class KVLongCache : public testing::TestWithParam<KVCaseConfig> {};
TEST_P(KVLongCache, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, KVLongCache, testing::ValuesIn(kvcache_long_grid()), KVCaseName());

class KVShapes : public testing::TestWithParam<KVCaseConfig> {};
TEST_P(KVShapes, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, KVShapes, testing::ValuesIn(kvcache_shapes_grid()), KVCaseName());

class KVRotary : public testing::TestWithParam<KVCaseConfig> {};
TEST_P(KVRotary, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, KVRotary, testing::ValuesIn(kvcache_rotary_grid()), KVCaseName());

class KVIndices : public testing::TestWithParam<KVCaseConfig> {};
TEST_P(KVIndices, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, KVIndices, testing::ValuesIn(kvcache_indices_grid()), KVCaseName());

class KVOptions : public testing::TestWithParam<KVCaseConfig> {};
TEST_P(KVOptions, MatchReference) { run_kvcache_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, KVOptions, testing::ValuesIn(kvcache_options_grid()), KVCaseName());

KVCaseConfig decoding_config() {
  KVCaseConfig c;
  c.dtype = DType::kBFloat16;
  c.cache_seqlens = {12, 0, 40};
  c.seqlen_q = c.seqlen_new = 3;
  c.heads_kv = 2;
  c.page_size = 16;
  c.rotary_dim = 32;
  c.causal = true;
  return c;
}

// Two steps in a row: the second attends to what the first appended, at positions past it.
TEST(KVCacheSteps, SecondStepAttendsToFirstStepsTokens) {
  KVInstance c = make_kvcache_instance(decoding_config());
  run_kvcache_instance(c);
  advance_step(c, "/step2");
  run_kvcache_instance(c);
}

// Each (sequence, KV head) is computed by one thread whatever the count: results are bitwise equal.
TEST(KVCacheThreads, ResultsDoNotDependOnTheThreadCount) {
  std::vector<std::vector<std::uint64_t>> results;
  for (int threads : {1, 3}) {
    KVCaseConfig config = decoding_config();
    KVInstance c = make_kvcache_instance(config);
    c.options_arg.num_threads = threads;
    ASSERT_NO_THROW(call_kvcache(c));
    std::vector<std::uint64_t> bits = bits_of(c.out);
    for (std::uint64_t x : bits_of(c.lse)) bits.push_back(x);
    for (std::uint64_t x : bits_of(c.k_cache)) bits.push_back(x);
    results.push_back(bits);
  }
  EXPECT_EQ(results[0], results[1]);
}

TEST(KVCacheWorkspace, CpuNeedsNone) {
  const KVInstance c = make_kvcache_instance(decoding_config());
  EXPECT_EQ(kvcache_workspace_size(c.q_arg, c.cache_arg, c.options_arg, c.schedule_arg), 0);
  KVCache broken = c.cache_arg;
  broken.v_new.reset();
  EXPECT_THROW(kvcache_workspace_size(c.q_arg, broken, c.options_arg, c.schedule_arg), InvalidArgument);
}

// ---- merge_attention_states -----------------------------------------------------------------------

enum class InPlace { kNone, kIntoA, kIntoB };  // out and lse are out_a / lse_a or out_b / lse_b

struct MergeConfig {
  DType dtype_a = DType::kFloat32, dtype_b = DType::kFloat32, dtype_out = DType::kFloat32;
  bool packed = false;  // rank 3 (tokens, heads, head_dim) and lses (heads, tokens)
  std::int64_t batch = 2;
  std::int64_t seqlen = 5;
  std::int64_t heads = 3;
  std::int64_t head_dim = 40;
  InPlace in_place = InPlace::kNone;
  bool padded = false;

  std::string name() const {
    std::ostringstream n;
    n << dtype_name(dtype_a) << '_' << dtype_name(dtype_b) << "_to_" << dtype_name(dtype_out);
    n << (packed ? "_packed_t" : "_b" + std::to_string(batch) + "_s") << seqlen << "_h" << heads << "_d" << head_dim;
    if (in_place == InPlace::kIntoA) n << "_into_a";
    if (in_place == InPlace::kIntoB) n << "_into_b";
    if (padded) n << "_padded";
    return n.str();
  }
};

void PrintTo(const MergeConfig& config, std::ostream* os) { *os << config.name(); }

// lses spread over +-kLseSpread; every kLsePatternPeriod-th row group has one side or both -inf, or a gap
// that makes one weight tiny (exp(-60) ~ 1e-26, a normal fp32) or underflow (exp(-120) is 0 in fp32).
constexpr double kLseSpread = 4.0;
constexpr float kSmallWeightGap = 60.0f;
constexpr float kUnderflowWeightGap = 120.0f;
constexpr std::int64_t kLsePatternPeriod = 7;

void set_lse_patterns(const Tensor& lse_a, const Tensor& lse_b) {
  float* a = static_cast<float*>(lse_a.view.data);
  float* b = static_cast<float*>(lse_b.view.data);
  const float infinity = std::numeric_limits<float>::infinity();
  for_each_element(lse_a.view, [&](std::int64_t i, std::int64_t offset) {
    const std::int64_t pattern = i % kLsePatternPeriod;
    if (pattern == 1 || pattern == 3) a[offset] = -infinity;
    if (pattern == 2 || pattern == 3) b[offset] = -infinity;
    if (pattern == 4) a[offset] = b[offset] + kSmallWeightGap;
    if (pattern == 5) a[offset] = b[offset] - kUnderflowWeightGap;
  });
}

void run_merge_case(const MergeConfig& config) {
  const std::string name = config.name();
  const Layout layout = config.padded ? Layout::kPadded : Layout::kDense;
  const TokenShape tokens{config.packed, config.batch, config.seqlen};
  const HeadShape heads{config.heads, config.head_dim};
  const Tensor out_a = make_token_tensor(config.dtype_a, tokens, heads, layout);
  const Tensor out_b = make_token_tensor(config.dtype_b, tokens, heads, layout);
  const Tensor lse_a = make_lse_tensor(tokens, config.heads, layout);
  const Tensor lse_b = make_lse_tensor(tokens, config.heads, layout);
  fill_normal(out_a, seed_from(name + "/out_a"));
  fill_normal(out_b, seed_from(name + "/out_b"));
  fill_uniform(lse_a, seed_from(name + "/lse_a"), -kLseSpread, kLseSpread);
  fill_uniform(lse_b, seed_from(name + "/lse_b"), -kLseSpread, kLseSpread);
  set_lse_patterns(lse_a, lse_b);
  const bool into_a = config.in_place == InPlace::kIntoA, into_b = config.in_place == InPlace::kIntoB;
  const Tensor out = into_a ? out_a : into_b ? out_b : make_token_tensor(config.dtype_out, tokens, heads, layout);
  const Tensor lse = into_a ? lse_a : into_b ? lse_b : make_lse_tensor(tokens, config.heads, layout);
  const auto ref64 = reference::merge_attention_states(out_a.view, lse_a.view, out_b.view, lse_b.view);
  // The yardstick: the exact merge rounded once to each output's dtype.
  reference::ForwardResult rounded = ref64;
  for (double& x : rounded.out) x = reference::round_to_dtype(static_cast<float>(x), config.dtype_out);
  for (double& x : rounded.lse) x = static_cast<float>(x);

  ASSERT_NO_THROW(merge_attention_states(out_a.view, lse_a.view, out_b.view, lse_b.view, out.view, lse.view));
  const std::vector<double> merged = read(out);
  EXPECT_TRUE(check_close("out", merged, ref64.out, rounded.out, config.dtype_out));
  EXPECT_TRUE(check_close("lse", read(lse), ref64.lse, rounded.lse, DType::kFloat32));
  EXPECT_TRUE(zero_where_no_key(merged, ref64.lse, config.seqlen, config.heads, config.head_dim));
  EXPECT_TRUE(untouched_outside_view("out", out));
  EXPECT_TRUE(untouched_outside_view("lse", lse));
}

std::vector<MergeConfig> merge_grid() {
  struct DTypes {
    DType a, b, out;
  };
  const DTypes mixes[] = {{DType::kFloat32, DType::kFloat32, DType::kFloat32},
                          {DType::kBFloat16, DType::kBFloat16, DType::kBFloat16},
                          {DType::kFloat16, DType::kFloat16, DType::kFloat16},
                          {DType::kFloat16, DType::kBFloat16, DType::kFloat32},
                          {DType::kFloat32, DType::kFloat16, DType::kBFloat16}};
  std::vector<MergeConfig> configs;
  for (const DTypes& d : mixes) {
    for (bool packed : {false, true}) {
      MergeConfig c;
      c.dtype_a = d.a;
      c.dtype_b = d.b;
      c.dtype_out = d.out;
      c.packed = packed;
      c.seqlen = packed ? 11 : 5;
      configs.push_back(c);
    }
  }
  MergeConfig into_a;
  into_a.dtype_a = into_a.dtype_out = DType::kBFloat16;
  into_a.in_place = InPlace::kIntoA;
  configs.push_back(into_a);
  MergeConfig into_b;
  into_b.dtype_b = into_b.dtype_out = DType::kFloat16;
  into_b.in_place = InPlace::kIntoB;
  into_b.packed = true;
  into_b.padded = true;
  configs.push_back(into_b);
  MergeConfig padded;
  padded.padded = true;
  padded.head_dim = 128;
  configs.push_back(padded);
  return configs;
}

class KVMerge : public testing::TestWithParam<MergeConfig> {};
TEST_P(KVMerge, MatchesReference) { run_merge_case(GetParam()); }
INSTANTIATE_TEST_SUITE_P(KVCache, KVMerge, testing::ValuesIn(merge_grid()),
                         [](const testing::TestParamInfo<MergeConfig>& info) { return info.param.name(); });

// ---- Validation: one test per rule of src/validate_kvcache.cpp ---------------------------------------

using Kind = RejectionKind;
enum class Target { kContiguous, kPaged, kMerge };  // the valid call a rule breaks

constexpr int kCudaDevice = 0;

// A valid call whose arguments a rule breaks one at a time: the contiguous one uses cache_batch_idx, the
// paged one a block table; both have leftpad, rotary and new tokens. The merge call is batched.
struct Call {
  KVInstance instance;
  TensorView q, out, lse;
  KVCache cache;
  AttentionOptions options;
  KVCacheSchedule schedule;
  TensorView out_a, lse_a, out_b, lse_b;
  std::vector<Tensor> keep_alive;  // tensors a rule allocates, and the merge operands
  std::vector<std::byte> k_cache_before, v_cache_before;
  std::shared_ptr<Storage> out_storage, lse_storage;  // of the call's out and lse

  std::int32_t* ints(const TensorView& t) { return static_cast<std::int32_t*>(t.data); }
  std::int64_t capacity() const {
    return cache.block_table ? cache.block_table->shape[1] * cache.k_cache.shape[1] : cache.k_cache.shape[1];
  }
  Tensor& keep(Tensor t) { return keep_alive.emplace_back(std::move(t)); }
};

Call make_call(Target target) {
  KVCaseConfig config;
  config.cache_seqlens = {5, 3};
  config.seqlen_q = config.seqlen_new = 2;
  config.heads_q = 4;
  config.heads_kv = 2;
  config.head_dim = 16;
  config.head_dim_v = 24;
  config.leftpad = {1, 0};
  config.rotary_dim = 8;
  config.page_size = target == Target::kPaged ? 4 : 0;
  config.cache_batch_idx = target == Target::kContiguous;
  Call call;
  call.instance = make_kvcache_instance(config);
  const KVInstance& c = call.instance;
  call.q = c.q_arg;
  call.out = c.out_arg;
  call.lse = c.lse_arg;
  call.cache = c.cache_arg;
  call.options = c.options_arg;
  call.schedule = c.schedule_arg;
  call.k_cache_before = c.k_cache.storage->bytes;
  call.v_cache_before = c.v_cache.storage->bytes;
  call.out_storage = c.out.storage;
  call.lse_storage = c.lse.storage;
  const TokenShape tokens{false, 2, 3};
  const HeadShape heads{4, 16};
  call.out_a = call.keep(make_token_tensor(DType::kFloat32, tokens, heads, Layout::kDense)).view;
  call.out_b = call.keep(make_token_tensor(DType::kFloat32, tokens, heads, Layout::kDense)).view;
  call.lse_a = call.keep(make_lse_tensor(tokens, 4, Layout::kDense)).view;
  call.lse_b = call.keep(make_lse_tensor(tokens, 4, Layout::kDense)).view;
  if (target == Target::kMerge) {
    const Tensor out = call.keep(make_token_tensor(DType::kFloat32, tokens, heads, Layout::kDense));
    const Tensor lse = call.keep(make_lse_tensor(tokens, 4, Layout::kDense));
    call.out = out.view;
    call.lse = lse.view;
    call.out_storage = out.storage;
    call.lse_storage = lse.storage;
  }
  return call;
}

void invoke(Target target, const Call& c) {
  if (target == Target::kMerge) {
    merge_attention_states(c.out_a, c.lse_a, c.out_b, c.lse_b, c.out, c.lse, c.options);
  } else {
    forward_kvcache(c.q, c.cache, c.out, c.lse, c.options, c.schedule);
  }
}

// A rejected call wrote nothing: out and lse hold only poison, the cache every byte it held.
testing::AssertionResult nothing_written(const Call& c) {
  for (const Storage* storage : {c.out_storage.get(), c.lse_storage.get()}) {
    for (std::int64_t e = 0; e < storage->elements(); ++e) {
      if (!std::isnan(reference::load_element(storage->at(e), storage->dtype))) {
        return testing::AssertionFailure() << "an output was written before the call was rejected";
      }
    }
  }
  const KVInstance& i = c.instance;
  if (i.k_cache.storage->bytes != c.k_cache_before || i.v_cache.storage->bytes != c.v_cache_before) {
    return testing::AssertionFailure() << "the cache was written before the call was rejected";
  }
  return testing::AssertionSuccess();
}

struct Rule {
  const char* name;
  Target target;
  Kind kind;
  const char* argument;
  std::vector<const char*> keywords;  // words the message must contain
  std::function<void(Call&)> break_rule;
};

void PrintTo(const Rule& rule, std::ostream* os) { *os << rule.name; }

Rule rule(const char* name, Target target, const char* argument, std::vector<const char*> keywords,
          std::function<void(Call&)> break_rule) {
  return {name, target, Kind::kInvalidArgument, argument, std::move(keywords), std::move(break_rule)};
}

Rule unsupported_rule(const char* name, Target target, const char* argument, std::vector<const char*> keywords,
                      std::function<void(Call&)> break_rule) {
  return {name, target, Kind::kNotSupported, argument, std::move(keywords), std::move(break_rule)};
}

std::vector<Rule> rules() {
  using enum Target;
  using enum Kind;
  const Device cuda = Device::cuda(kCudaDevice);
  std::vector<Rule> list = {
      // q.
      rule("q_rank", kContiguous, "q", {"4 dimensions"}, [](Call& c) { c.q.rank = 3; }),
      rule("q_dtype_int32", kContiguous, "q", {"not supported"}, [](Call& c) { c.q.dtype = DType::kInt32; }),
      unsupported_rule("q_dtype_fp8", kPaged, "q", {"fp8"}, [](Call& c) { c.q.dtype = DType::kFloat8E4M3; }),
      rule("heads_q_zero", kContiguous, "q", {"heads_q"}, [](Call& c) { c.q.shape[2] = 0; }),
      rule("head_dim_not_multiple_of_8", kContiguous, "q", {"multiple of 8"}, [](Call& c) { c.q.shape[3] = 12; }),
      rule("heads_not_multiple", kPaged, "q", {"multiple", "heads_kv"},
           [](Call& c) { c.cache.k_cache.shape[2] = c.cache.v_cache.shape[2] = 3; }),
      // The cache tensors.
      rule("k_cache_rank", kContiguous, "k_cache", {"4 dimensions"}, [](Call& c) { c.cache.k_cache.rank = 3; }),
      rule("v_cache_rank", kPaged, "v_cache", {"4 dimensions", "page_size"}, [](Call& c) { c.cache.v_cache.rank = 2; }),
      rule("k_cache_dtype", kContiguous, "k_cache", {"dtype"},
           [](Call& c) { c.cache.k_cache.dtype = DType::kBFloat16; }),
      rule("v_cache_dtype", kPaged, "v_cache", {"dtype"}, [](Call& c) { c.cache.v_cache.dtype = DType::kFloat16; }),
      rule("k_cache_device", kContiguous, "k_cache", {"device"}, [cuda](Call& c) { c.cache.k_cache.device = cuda; }),
      rule("v_cache_device", kPaged, "v_cache", {"device"}, [cuda](Call& c) { c.cache.v_cache.device = cuda; }),
      rule("k_cache_broadcast", kContiguous, "k_cache", {"stride 0"}, [](Call& c) { c.cache.k_cache.strides[1] = 0; }),
      rule("v_cache_broadcast", kPaged, "v_cache", {"stride 0"}, [](Call& c) { c.cache.v_cache.strides[0] = 0; }),
      rule("heads_kv_zero", kContiguous, "k_cache", {"heads_kv"},
           [](Call& c) { c.cache.k_cache.shape[2] = c.cache.v_cache.shape[2] = 0; }),
      rule("k_cache_head_dim", kPaged, "k_cache", {"head_dim"}, [](Call& c) { c.cache.k_cache.shape[3] = 8; }),
      rule("v_cache_head_dim_v", kContiguous, "v_cache", {"head_dim_v", "multiple of 8"},
           [](Call& c) { c.cache.v_cache.shape[3] = 20; }),
      rule("v_cache_tokens", kPaged, "v_cache", {"k_cache"}, [](Call& c) { c.cache.v_cache.shape[1] -= 1; }),
      rule("batch_cache_without_idx", kContiguous, "k_cache", {"batch_cache", "cache_batch_idx"},
           [](Call& c) { c.cache.cache_batch_idx.reset(); }),
      rule("cache_batch_idx_dtype", kContiguous, "cache_batch_idx", {"int32"},
           [](Call& c) { c.cache.cache_batch_idx->dtype = DType::kFloat32; }),
      rule("cache_batch_idx_shape", kContiguous, "cache_batch_idx", {"shape"},
           [](Call& c) { c.cache.cache_batch_idx->shape[0] = 3; }),
      rule("cache_batch_idx_device", kContiguous, "cache_batch_idx", {"device"},
           [cuda](Call& c) { c.cache.cache_batch_idx->device = cuda; }),
      // The block table.
      rule("block_table_dtype", kPaged, "block_table", {"int32"},
           [](Call& c) { c.cache.block_table->dtype = DType::kFloat32; }),
      rule("block_table_rank", kPaged, "block_table", {"2 dimensions"}, [](Call& c) { c.cache.block_table->rank = 1; }),
      rule("block_table_device", kPaged, "block_table", {"device"},
           [cuda](Call& c) { c.cache.block_table->device = cuda; }),
      rule("block_table_batch", kPaged, "block_table", {"batch"}, [](Call& c) { c.cache.block_table->shape[0] = 1; }),
      rule("cache_batch_idx_with_block_table", kPaged, "cache_batch_idx", {"paged"},
           [](Call& c) { c.cache.cache_batch_idx = c.cache.cache_seqlens; }),
      rule("page_size_zero", kPaged, "k_cache", {"page_size"},
           [](Call& c) { c.cache.k_cache.shape[1] = c.cache.v_cache.shape[1] = 0; }),
      // cache_seqlens and cache_leftpad.
      rule("cache_seqlens_dtype", kContiguous, "cache_seqlens", {"int32"},
           [](Call& c) { c.cache.cache_seqlens.dtype = DType::kFloat32; }),
      rule("cache_seqlens_shape", kPaged, "cache_seqlens", {"shape"},
           [](Call& c) { c.cache.cache_seqlens.shape[0] = 1; }),
      rule("cache_seqlens_device", kContiguous, "cache_seqlens", {"device"},
           [cuda](Call& c) { c.cache.cache_seqlens.device = cuda; }),
      rule("cache_leftpad_shape", kPaged, "cache_leftpad", {"shape"},
           [](Call& c) { c.cache.cache_leftpad->shape[0] = 3; }),
      rule("cache_leftpad_dtype", kContiguous, "cache_leftpad", {"int32"},
           [](Call& c) { c.cache.cache_leftpad->dtype = DType::kBFloat16; }),
      rule("cache_leftpad_device", kPaged, "cache_leftpad", {"device"},
           [cuda](Call& c) { c.cache.cache_leftpad->device = cuda; }),
      // The new tokens.
      rule("k_new_without_v_new", kContiguous, "v_new", {"together"}, [](Call& c) { c.cache.v_new.reset(); }),
      rule("v_new_without_k_new", kPaged, "k_new", {"together"}, [](Call& c) { c.cache.k_new.reset(); }),
      rule("k_new_rank", kContiguous, "k_new", {"4 dimensions"}, [](Call& c) { c.cache.k_new->rank = 3; }),
      rule("v_new_rank", kPaged, "v_new", {"4 dimensions"}, [](Call& c) { c.cache.v_new->rank = 2; }),
      rule("k_new_dtype", kContiguous, "k_new", {"dtype"}, [](Call& c) { c.cache.k_new->dtype = DType::kFloat16; }),
      rule("v_new_dtype", kPaged, "v_new", {"dtype"}, [](Call& c) { c.cache.v_new->dtype = DType::kBFloat16; }),
      rule("k_new_device", kContiguous, "k_new", {"device"}, [cuda](Call& c) { c.cache.k_new->device = cuda; }),
      rule("v_new_device", kPaged, "v_new", {"device"}, [cuda](Call& c) { c.cache.v_new->device = cuda; }),
      rule("k_new_heads", kContiguous, "k_new", {"shape"}, [](Call& c) { c.cache.k_new->shape[2] = 1; }),
      rule("v_new_tokens", kPaged, "v_new", {"shape"}, [](Call& c) { c.cache.v_new->shape[1] = 1; }),
      rule("seqlen_new_above_capacity", kPaged, "k_new", {"capacity"},
           [](Call& c) { c.cache.k_new->shape[1] = c.cache.v_new->shape[1] = c.capacity() + 1; }),
      // Rotary.
      rule("rotary_cos_without_sin", kContiguous, "rotary_sin", {"together"},
           [](Call& c) { c.cache.rotary_sin.reset(); }),
      rule("rotary_sin_without_cos", kPaged, "rotary_cos", {"together"}, [](Call& c) { c.cache.rotary_cos.reset(); }),
      rule("rotary_without_k_new", kContiguous, "rotary_cos", {"k_new"},
           [](Call& c) { c.cache.k_new.reset(), c.cache.v_new.reset(); }),
      rule("rotary_cos_rank", kPaged, "rotary_cos", {"2 dimensions"}, [](Call& c) { c.cache.rotary_cos->rank = 1; }),
      rule("rotary_sin_rank", kContiguous, "rotary_sin", {"2 dimensions"},
           [](Call& c) { c.cache.rotary_sin->rank = 3; }),
      rule("rotary_cos_dtype", kPaged, "rotary_cos", {"dtype"},
           [](Call& c) { c.cache.rotary_cos->dtype = DType::kFloat16; }),
      rule("rotary_sin_device", kContiguous, "rotary_sin", {"device"},
           [cuda](Call& c) { c.cache.rotary_sin->device = cuda; }),
      rule("rotary_sin_shape", kPaged, "rotary_sin", {"shape"}, [](Call& c) { c.cache.rotary_sin->shape[1] -= 1; }),
      rule("rotary_dim_above_head_dim", kContiguous, "rotary_cos", {"rotary_dim"},
           [](Call& c) { c.cache.rotary_cos->shape[1] = c.cache.rotary_sin->shape[1] = 12; }),
      rule("rotary_dim_zero", kPaged, "rotary_cos", {"rotary_dim"},
           [](Call& c) { c.cache.rotary_cos->shape[1] = c.cache.rotary_sin->shape[1] = 0; }),
      rule("seqlen_ro_below_capacity", kContiguous, "rotary_cos", {"seqlen_ro", "capacity"},
           [](Call& c) { c.cache.rotary_cos->shape[0] = c.cache.rotary_sin->shape[0] = c.capacity() - 1; }),
      // Not a rule of the validation (see the report): the CPU backend refuses a query rotated past seqlen_ro.
      rule("rotary_query_past_seqlen_ro", kContiguous, "rotary_cos", {"seqlen_ro", "query position"},
           [](Call& c) {
             c.options.causal = true;
             c.cache.k_new->shape[1] = c.cache.v_new->shape[1] = 1;
             c.cache.rotary_cos->shape[0] = c.cache.rotary_sin->shape[0] = c.capacity();
             c.ints(c.cache.cache_seqlens)[0] = static_cast<std::int32_t>(c.capacity() - 1);
           }),
      // out and lse.
      rule("out_rank", kContiguous, "out", {"4 dimensions"}, [](Call& c) { c.out.rank = 3; }),
      rule("out_dtype", kPaged, "out", {"dtype"}, [](Call& c) { c.out.dtype = DType::kFloat16; }),
      rule("out_device", kContiguous, "out", {"device"}, [cuda](Call& c) { c.out.device = cuda; }),
      rule("out_broadcast", kPaged, "out", {"stride 0"}, [](Call& c) { c.out.strides[1] = 0; }),
      rule("out_shape", kContiguous, "out", {"shape"}, [](Call& c) { c.out.shape[3] = 16; }),
      rule("lse_dtype", kPaged, "lse", {"fp32"}, [](Call& c) { c.lse.dtype = DType::kBFloat16; }),
      rule("lse_rank", kContiguous, "lse", {"3 dimensions"}, [](Call& c) { c.lse.rank = 2; }),
      rule("lse_device", kPaged, "lse", {"device"}, [cuda](Call& c) { c.lse.device = cuda; }),
      rule("lse_broadcast", kContiguous, "lse", {"stride 0"}, [](Call& c) { c.lse.strides[1] = 0; }),
      rule("lse_shape", kPaged, "lse", {"shape"}, [](Call& c) { c.lse.shape[2] = 1; }),
      // Options and schedule.
      rule("softcap_negative", kContiguous, "softcap", {">= 0"}, [](Call& c) { c.options.softcap = -1.0f; }),
      rule("causal_with_window_right", kPaged, "window_right", {"causal"},
           [](Call& c) { c.options.causal = true, c.options.window_right = 1; }),
      rule("num_threads_negative", kContiguous, "num_threads", {">= 0"}, [](Call& c) { c.options.num_threads = -2; }),
      rule("alibi_heads", kPaged, "alibi_slopes", {"heads_q"},
           [](Call& c) { c.options.alibi_slopes = c.keep(make_dense(DType::kFloat32, {c.q.shape[2] + 1})).view; }),
      rule("cuda_backend_with_cpu_tensors", kContiguous, "backend", {"cuda"},
           [](Call& c) { c.options.backend = Backend::kCUDA; }),
      rule("num_splits_negative", kPaged, "num_splits", {">= 0"}, [](Call& c) { c.schedule.num_splits = -1; }),
      rule("workspace_dtype", kContiguous, "workspace", {"fp32"},
           [](Call& c) { c.schedule.workspace = c.keep(make_dense(DType::kBFloat16, {64})).view; }),
      rule("workspace_rank", kPaged, "workspace", {"1 dimensions"},
           [](Call& c) {
             c.schedule.workspace = c.keep(make_dense(DType::kFloat32, {8, 8})).view;
           }),
      rule("workspace_device", kContiguous, "workspace", {"device"},
           [cuda](Call& c) {
             c.schedule.workspace = c.keep(make_dense(DType::kFloat32, {64})).view;
             c.schedule.workspace->device = cuda;
           }),
      // Index contents, checked on the host.
      rule("cache_seqlens_negative", kContiguous, "cache_seqlens", {"outside"},
           [](Call& c) { c.ints(c.cache.cache_seqlens)[1] = -1; }),
      rule("cache_seqlens_past_capacity", kPaged, "cache_seqlens", {"capacity"},
           [](Call& c) { c.ints(c.cache.cache_seqlens)[0] = static_cast<std::int32_t>(c.capacity() - 1); }),
      rule("leftpad_above_cache_seqlens", kContiguous, "cache_leftpad", {"outside"},
           [](Call& c) { c.ints(*c.cache.cache_leftpad)[1] = 4; }),
      rule("leftpad_negative", kPaged, "cache_leftpad", {"outside"},
           [](Call& c) { c.ints(*c.cache.cache_leftpad)[0] = -1; }),
      rule("cache_batch_idx_past_rows", kContiguous, "cache_batch_idx", {"outside"},
           [](Call& c) { c.ints(*c.cache.cache_batch_idx)[1] = static_cast<std::int32_t>(c.cache.k_cache.shape[0]); }),
      rule("cache_batch_idx_negative", kContiguous, "cache_batch_idx", {"outside"},
           [](Call& c) { c.ints(*c.cache.cache_batch_idx)[0] = -1; }),
      rule("block_table_entry_past_pages", kPaged, "block_table", {"outside", "pages"},
           [](Call& c) { c.ints(*c.cache.block_table)[1] = static_cast<std::int32_t>(c.cache.k_cache.shape[0]); }),
      // merge_attention_states.
      rule("merge_out_rank", kMerge, "out", {"dimensions"}, [](Call& c) { c.out.rank = 2; }),
      rule("merge_out_a_shape", kMerge, "out_a", {"shape"}, [](Call& c) { c.out_a.shape[2] = 2; }),
      rule("merge_out_b_dtype", kMerge, "out_b", {"fp32, fp16 or bf16"},
           [](Call& c) { c.out_b.dtype = DType::kInt32; }),
      rule("merge_out_b_device", kMerge, "out_b", {"device"}, [cuda](Call& c) { c.out_b.device = cuda; }),
      rule("merge_lse_a_dtype", kMerge, "lse_a", {"fp32"}, [](Call& c) { c.lse_a.dtype = DType::kFloat16; }),
      rule("merge_lse_b_shape", kMerge, "lse_b", {"shape"}, [](Call& c) { c.lse_b.shape[1] = 3; }),
      rule("merge_lse_rank", kMerge, "lse", {"3 dimensions"}, [](Call& c) { c.lse.rank = 2; }),
      rule("merge_lse_device", kMerge, "lse", {"device"}, [cuda](Call& c) { c.lse.device = cuda; }),
      rule("merge_out_broadcast", kMerge, "out", {"stride 0"}, [](Call& c) { c.out.strides[1] = 0; }),
      rule("merge_lse_broadcast", kMerge, "lse", {"stride 0"}, [](Call& c) { c.lse.strides[2] = 0; }),
      rule("merge_cuda_backend_with_cpu_tensors", kMerge, "backend", {"cuda", "got out on cpu"},
           [](Call& c) { c.options.backend = Backend::kCUDA; }),
  };
  // A build with the CUDA backend would run its kernels on these host pointers: CUDA rules belong on a GPU.
  if (!build_info().cuda_compiled) {
    list.push_back(unsupported_rule("cuda_tensors_in_cpu_only_build", kPaged, "q", {"cuda"}, [cuda](Call& c) {
      for (TensorView* t : {&c.q, &c.out, &c.lse, &c.cache.k_cache, &c.cache.v_cache, &c.cache.cache_seqlens}) {
        t->device = cuda;
      }
      for (auto* t : {&c.cache.k_new, &c.cache.v_new, &c.cache.block_table, &c.cache.cache_leftpad, &c.cache.rotary_cos,
                      &c.cache.rotary_sin}) {
        (*t)->device = cuda;
      }
      c.options.backend = Backend::kAuto;
    }));
  }
  return list;
}

class KVCacheValidationRule : public testing::TestWithParam<Rule> {};

TEST_P(KVCacheValidationRule, RejectsAndLeavesOutputsUntouched) {
  const Rule& rule = GetParam();
  Call call = make_call(rule.target);
  rule.break_rule(call);
  expect_rejected([&] { invoke(rule.target, call); }, rule.kind, rule.argument, rule.keywords);
  EXPECT_TRUE(nothing_written(call));
}

INSTANTIATE_TEST_SUITE_P(Rules, KVCacheValidationRule, testing::ValuesIn(rules()),
                         [](const testing::TestParamInfo<Rule>& info) { return std::string(info.param.name); });

// The unbroken calls the rules start from are accepted, so each rule test fails for its own reason.
TEST(KVCacheValidCall, IsAccepted) {
  for (Target target : {Target::kContiguous, Target::kPaged, Target::kMerge}) {
    EXPECT_NO_THROW(invoke(target, make_call(target)));
  }
}

}  // namespace
}  // namespace flashattn::test
