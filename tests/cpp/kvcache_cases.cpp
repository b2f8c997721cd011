#include "kvcache_cases.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <utility>

#include "device_memory.hpp"

namespace flashattn::test {
namespace {

// Capacity past the longest sequence after the call: room for one more decoding step (advance_step) and
// positions past every sequence's end that hold NaN.
constexpr std::int64_t kSpareTokens = 8;
constexpr std::int64_t kSpareRows = 2;      // cache_batch_idx: rows of the larger cache that no sequence uses
constexpr std::int64_t kSparePages = 3;     // paged: pages that no block table entry names
constexpr std::int64_t kRotaryPadding = 5;  // padded cos / sin: elements between positions
constexpr double kRotaryBase = 10000.0;     // the usual RoPE frequencies: position * base^(-2i / rotary_dim)
constexpr double kAlibiSlopeLow = 0.02;
constexpr double kAlibiSlopeHigh = 0.3;
// A rotated key is rounded twice: fp32 arithmetic (three roundings of terms at most |x0 c| + |x1 s|, the
// term magnitude) then the dtype. Allowed: one ulp of the dtype plus this many fp32 units of the terms,
// which only matters where the terms cancel.
constexpr double kFloat32Unit = 0x1p-24;
constexpr double kRotaryTermUnits = 4.0;

std::string joined(const std::vector<std::int32_t>& values) {
  std::ostringstream text;
  for (std::size_t i = 0; i < values.size(); ++i) text << (i > 0 ? "x" : "") << values[i];
  return text.str();
}

Layout layout_of(bool padded, const Device& device) {
  if (!padded) return Layout::kDense;
  // The CUDA kernels need 16-byte aligned rows (tests/cuda/test_cuda_validation.cpp).
  return device.type == DeviceType::kCUDA ? Layout::kPaddedAligned : Layout::kPadded;
}

std::int64_t longest_after_call(const KVCaseConfig& c) {
  std::int64_t longest = 0;
  for (std::int32_t cached : c.cache_seqlens) longest = std::max<std::int64_t>(longest, cached);
  return longest + c.new_tokens();
}

std::int64_t pages_per_sequence(const KVCaseConfig& c) {
  return (longest_after_call(c) + kSpareTokens + c.page_size - 1) / c.page_size;
}

std::int64_t capacity_of(const KVCaseConfig& c) {
  return c.page_size > 0 ? pages_per_sequence(c) * c.page_size : longest_after_call(c) + kSpareTokens;
}

std::int32_t int_at(const Tensor& t, std::int64_t offset) {
  return static_cast<const std::int32_t*>(t.view.data)[offset];
}

// Element offset, from the view's data, of channel 0 of (sequence b, cache position, KV head h).
std::int64_t cache_offset(const KVInstance& c, const TensorView& view, std::int64_t b, std::int64_t position,
                          std::int64_t h) {
  std::int64_t row = c.config.cache_batch_idx ? int_at(c.cache_batch_idx, b) : b;
  std::int64_t slot = position;
  if (c.config.page_size > 0) {
    row = int_at(c.block_table, b * c.block_table.view.strides[0] + position / c.config.page_size);
    slot = position % c.config.page_size;
  }
  return row * view.strides[0] + slot * view.strides[1] + h * view.strides[2];
}

// The cache: random values at the positions [leftpad, cache_seqlens) of every sequence, NaN elsewhere.
void fill_cache(KVInstance& c, std::uint64_t seed) {
  std::mt19937_64 engine(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (Tensor* t : {&c.k_cache, &c.v_cache}) {
    poison(*t->storage);
    const TensorView& view = t->view;
    const std::size_t size = dtype_size(view.dtype);
    for (std::int64_t b = 0; b < c.config.batch(); ++b) {
      const std::int64_t leftpad = c.config.leftpad.empty() ? 0 : int_at(c.cache_leftpad, b);
      for (std::int64_t position = leftpad; position < int_at(c.cache_seqlens, b); ++position) {
        for (std::int64_t h = 0; h < view.shape[2]; ++h) {
          auto* row = static_cast<std::byte*>(view.data) + cache_offset(c, view, b, position, h) * size;
          for (std::int64_t x = 0; x < view.shape[3]; ++x) {
            reference::store_element(normal(engine), view.dtype, row + x * size);
          }
        }
      }
    }
  }
}

void fill_rotary(KVInstance& c) {
  const std::int64_t positions = c.rotary_cos.view.shape[0], half = c.rotary_cos.view.shape[1];
  for (std::int64_t p = 0; p < positions; ++p) {
    for (std::int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(p) * std::pow(kRotaryBase, -static_cast<double>(i) / half);
      const std::int64_t offset = p * c.rotary_cos.view.strides[0] + i;
      reference::store_element(std::cos(angle), c.config.dtype, c.rotary_cos.storage->at(offset));
      reference::store_element(std::sin(angle), c.config.dtype, c.rotary_sin.storage->at(offset));
    }
  }
}

// Every tensor the case owns (those of an unused option have no storage).
std::vector<const Tensor*> all_tensors(const KVInstance& c) {
  return {&c.q,          &c.k_cache,    &c.v_cache,       &c.k_new,           &c.v_new,         &c.out,
          &c.lse,        &c.workspace,  &c.cache_seqlens, &c.cache_batch_idx, &c.cache_leftpad, &c.block_table,
          &c.rotary_cos, &c.rotary_sin, &c.alibi_slopes};
}

void upload_all(const KVInstance& c, const std::vector<const Tensor*>& tensors) {
  if (!c.on_cuda()) return;
  for (const Tensor* t : tensors) {
    if (t->storage) upload(*t->storage, c.options_arg.stream);
  }
}

void fill_inputs(KVInstance& c, const std::string& tag) {
  const std::string name = c.config.name() + tag;
  fill_normal(c.q, seed_from(name + "/q"));
  if (c.config.append) {
    fill_normal(c.k_new, seed_from(name + "/k_new"));
    fill_normal(c.v_new, seed_from(name + "/v_new"));
  }
  poison(*c.out.storage);
  poison(*c.lse.storage);
}

// Views for the library: the host ones, or for CUDA cases those of device copies made here.
void make_arguments(KVInstance& c) {
  const bool on_cuda = c.on_cuda();
  if (on_cuda) {
    for (const Tensor* t : all_tensors(c)) {
      if (t->storage) copy_to_device(*t->storage, c.config.device);
    }
  }
  const auto view = [on_cuda](const Tensor& t) { return on_cuda ? device_view(t) : t.view; };
  const auto optional_view = [&view](const Tensor& t) { return t.storage ? std::optional(view(t)) : std::nullopt; };
  c.q_arg = view(c.q);
  c.out_arg = view(c.out);
  c.lse_arg = view(c.lse);
  KVCache& a = c.cache_arg;
  a.k_cache = view(c.k_cache);
  a.v_cache = view(c.v_cache);
  a.cache_seqlens = view(c.cache_seqlens);
  a.k_new = optional_view(c.k_new);
  a.v_new = optional_view(c.v_new);
  a.cache_batch_idx = optional_view(c.cache_batch_idx);
  a.cache_leftpad = optional_view(c.cache_leftpad);
  a.block_table = optional_view(c.block_table);
  a.rotary_cos = optional_view(c.rotary_cos);
  a.rotary_sin = optional_view(c.rotary_sin);
  a.rotary_interleaved = c.config.rotary_interleaved;
  c.options_arg = c.options;
  c.options_arg.alibi_slopes = optional_view(c.alibi_slopes);
  c.schedule_arg.num_splits = c.config.num_splits;
  if (c.config.workspace) {
    const std::int64_t size = kvcache_workspace_size(c.q_arg, c.cache_arg, c.options_arg, c.schedule_arg);
    c.workspace = make_dense(DType::kFloat32, {std::max<std::int64_t>(size, 1)});
    if (on_cuda) copy_to_device(*c.workspace.storage, c.config.device);
    c.schedule_arg.workspace = view(c.workspace);
  }
}

std::int64_t storage_base(const Tensor& t) {
  return (static_cast<const std::byte*>(t.view.data) - t.storage->bytes.data()) /
         static_cast<std::int64_t>(dtype_size(t.view.dtype));
}

double ulp(double value, DType dtype) {
  int mantissa_bits = 23, min_exponent = -126;
  if (dtype == DType::kFloat16) mantissa_bits = 10, min_exponent = -14;
  if (dtype == DType::kBFloat16) mantissa_bits = 7;
  const int exponent = value == 0.0 ? min_exponent : std::max(std::ilogb(value), min_exponent);
  return std::ldexp(1.0, exponent - mantissa_bits);
}

// The cache storage after the call: appended elements as expected, every other byte as before.
testing::AssertionResult cache_as_expected(const std::string& what, const Tensor& t,
                                           const reference::CacheContents& expected,
                                           const std::vector<std::byte>& before) {
  const Storage& storage = *t.storage;
  const std::size_t size = dtype_size(storage.dtype);
  const std::int64_t base = storage_base(t);
  std::vector<std::int64_t> expected_index(static_cast<std::size_t>(storage.elements()), -1);
  for_each_element(t.view, [&](std::int64_t i, std::int64_t offset) {
    if (expected.written[i]) expected_index[base + offset] = i;
  });
  for (std::int64_t e = 0; e < storage.elements(); ++e) {
    const std::int64_t i = expected_index[e];
    if (i < 0) {
      if (std::memcmp(storage.at(e), before.data() + e * size, size) != 0) {
        return testing::AssertionFailure()
               << what << ": storage element " << e << " was changed, the call must not write it";
      }
      continue;
    }
    const double got = reference::load_element(storage.at(e), storage.dtype);
    const double error = std::abs(got - expected.exact[i]);
    const double allowed = expected.rotated[i] ? ulp(expected.exact[i], storage.dtype) +
                                                     kRotaryTermUnits * kFloat32Unit * expected.term_magnitude[i]
                                               : 0.0;
    if (!(error <= allowed)) {
      return testing::AssertionFailure() << what << ": appended element " << i << " is " << got << ", expected "
                                         << expected.exact[i] << (expected.rotated[i] ? " (rotated)" : " exactly");
    }
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult guards_intact(const std::vector<const Tensor*>& tensors) {
  for (const Tensor* t : tensors) {
    if (!t->storage || !t->storage->device_copy) continue;
    testing::AssertionResult intact = device_guards_intact(*t->storage);
    if (!intact) return intact;
  }
  return testing::AssertionSuccess();
}

}  // namespace

testing::AssertionResult untouched_outside_view(const std::string& what, const Tensor& t) {
  const Storage& storage = *t.storage;
  std::vector<bool> covered = covered_elements(storage, {&t.view});
  for (std::int64_t e = 0; e < storage.elements(); ++e) {
    if (!covered[e] && !std::isnan(reference::load_element(storage.at(e), storage.dtype))) {
      return testing::AssertionFailure() << what << ": storage element " << e << " outside the view was written";
    }
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult zero_where_no_key(const std::vector<double>& out, const std::vector<double>& ref_lse,
                                           std::int64_t seqlen, std::int64_t heads, std::int64_t width) {
  const std::int64_t rows = static_cast<std::int64_t>(out.size()) / (heads * width);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t h = 0; h < heads; ++h) {
      if (!std::isinf(ref_lse[((r / seqlen) * heads + h) * seqlen + r % seqlen])) continue;
      for (std::int64_t x = 0; x < width; ++x) {
        if (out[(r * heads + h) * width + x] != 0.0) {
          return testing::AssertionFailure() << "out: row " << r << " head " << h << " sees no key but holds "
                                             << out[(r * heads + h) * width + x] << ", expected 0";
        }
      }
    }
  }
  return testing::AssertionSuccess();
}

std::string KVCaseConfig::name() const {
  std::ostringstream n;
  // Long batches by their size and total length: a name per sequence would run to hundreds of characters.
  constexpr std::size_t kNamedLengths = 8;
  if (cache_seqlens.size() <= kNamedLengths) {
    n << dtype_name(dtype) << "_c" << joined(cache_seqlens);
  } else {
    n << dtype_name(dtype) << "_c" << cache_seqlens.size() << "seqs"
      << std::accumulate(cache_seqlens.begin(), cache_seqlens.end(), std::int64_t{0}) << "keys";
  }
  if (!leftpad.empty()) n << "_lp" << joined(leftpad);
  n << "_q" << seqlen_q << (append ? "_n" + std::to_string(seqlen_new) : "_noappend");
  n << "_h" << heads_q << "kv" << heads_kv << "_d" << head_dim << "dv" << head_dim_v;
  if (page_size > 0) n << "_page" << page_size;
  if (cache_batch_idx) n << "_idx";
  if (rotary_dim > 0) n << "_rot" << rotary_dim << (rotary_interleaved ? "i" : "");
  if (causal) n << "_causal";
  if (window_left >= 0) n << "_wl" << window_left;
  if (window_right >= 0) n << "_wr" << window_right;
  if (alignment == CausalAlignment::kTopLeft) n << "_TL";
  if (softcap > 0.0f) n << "_cap" << static_cast<int>(softcap);
  if (alibi == Alibi::kPerHead) n << "_alibiH";
  if (alibi == Alibi::kPerBatch) n << "_alibiB";
  if (padded) n << "_padded";
  if (num_splits > 0) n << "_splits" << num_splits;
  if (workspace) n << "_ws";
  return n.str();
}

void PrintTo(const KVCaseConfig& config, std::ostream* os) { *os << config.name(); }

KVInstance make_kvcache_instance(const KVCaseConfig& config) {
  KVInstance c;
  c.config = config;
  const std::string name = config.name();
  const Layout layout = layout_of(config.padded, config.device);
  const std::int64_t batch = config.batch();
  const DType dtype = config.dtype;
  c.q = make_token_tensor(dtype, {false, batch, config.seqlen_q}, {config.heads_q, config.head_dim}, layout);
  c.out = make_token_tensor(dtype, {false, batch, config.seqlen_q}, {config.heads_q, config.head_dim_v}, layout);
  c.lse = make_lse_tensor({false, batch, config.seqlen_q}, config.heads_q, layout);
  if (config.append) {
    c.k_new = make_token_tensor(dtype, {false, batch, config.seqlen_new}, {config.heads_kv, config.head_dim}, layout);
    c.v_new = make_token_tensor(dtype, {false, batch, config.seqlen_new}, {config.heads_kv, config.head_dim_v}, layout);
  }

  std::mt19937_64 engine(seed_from(name + "/indices"));
  std::int64_t rows = batch, tokens = capacity_of(config);
  if (config.page_size > 0) {
    const std::int64_t per_sequence = pages_per_sequence(config);
    rows = batch * per_sequence + kSparePages;
    tokens = config.page_size;
    std::vector<std::int32_t> pages(static_cast<std::size_t>(rows));
    std::iota(pages.begin(), pages.end(), 0);
    std::shuffle(pages.begin(), pages.end(), engine);
    c.block_table = make_dense(DType::kInt32, {batch, per_sequence});
    std::copy_n(pages.begin(), batch * per_sequence, static_cast<std::int32_t*>(c.block_table.view.data));
  } else if (config.cache_batch_idx) {
    rows = batch + kSpareRows;
    std::vector<std::int32_t> cache_rows(static_cast<std::size_t>(rows));
    std::iota(cache_rows.begin(), cache_rows.end(), 0);
    std::shuffle(cache_rows.begin(), cache_rows.end(), engine);
    cache_rows.resize(static_cast<std::size_t>(batch));
    c.cache_batch_idx = make_int32(cache_rows);
  }
  c.k_cache = make_token_tensor(dtype, {false, rows, tokens}, {config.heads_kv, config.head_dim}, layout);
  c.v_cache = make_token_tensor(dtype, {false, rows, tokens}, {config.heads_kv, config.head_dim_v}, layout);
  c.cache_seqlens = make_int32(config.cache_seqlens);
  if (!config.leftpad.empty()) c.cache_leftpad = make_int32(config.leftpad);
  if (config.rotary_dim > 0) {
    // Positions up to the capacity, and the query rows past it when they are rotated per row.
    const std::int64_t positions = capacity_of(config) + config.seqlen_q, half = config.rotary_dim / 2;
    const std::int64_t stride = half + (config.padded ? kRotaryPadding : 0);
    c.rotary_cos = make_view(make_storage(dtype, positions * stride), 0, {positions, half}, {stride, 1});
    c.rotary_sin = make_view(make_storage(dtype, positions * stride), 0, {positions, half}, {stride, 1});
    fill_rotary(c);
  }

  KVCache& cache = c.cache;
  cache.k_cache = c.k_cache.view;
  cache.v_cache = c.v_cache.view;
  cache.cache_seqlens = c.cache_seqlens.view;
  const auto optional_view = [](const Tensor& t) { return t.storage ? std::optional(t.view) : std::nullopt; };
  cache.k_new = optional_view(c.k_new);
  cache.v_new = optional_view(c.v_new);
  cache.cache_batch_idx = optional_view(c.cache_batch_idx);
  cache.cache_leftpad = optional_view(c.cache_leftpad);
  cache.block_table = optional_view(c.block_table);
  cache.rotary_cos = optional_view(c.rotary_cos);
  cache.rotary_sin = optional_view(c.rotary_sin);
  cache.rotary_interleaved = config.rotary_interleaved;

  AttentionOptions& o = c.options;
  o.causal = config.causal;
  o.causal_alignment = config.alignment;
  o.window_left = config.window_left;
  o.window_right = config.window_right;
  o.softcap = config.softcap;
  o.backend = c.on_cuda() ? Backend::kCUDA : Backend::kCPU;
  if (config.alibi != Alibi::kNone) {
    c.alibi_slopes = config.alibi == Alibi::kPerHead ? make_dense(DType::kFloat32, {config.heads_q})
                                                     : make_dense(DType::kFloat32, {batch, config.heads_q});
    fill_uniform(c.alibi_slopes, seed_from(name + "/alibi"), kAlibiSlopeLow, kAlibiSlopeHigh);
    o.alibi_slopes = c.alibi_slopes.view;
  }
  fill_inputs(c, "");
  fill_cache(c, seed_from(name + "/cache"));
  make_arguments(c);
  return c;
}

void refill_inputs(KVInstance& c, const std::string& seed_tag) {
  fill_inputs(c, seed_tag);
  fill_cache(c, seed_from(c.config.name() + seed_tag + "/cache"));
  upload_all(c, {&c.q, &c.k_new, &c.v_new, &c.out, &c.lse, &c.k_cache, &c.v_cache});
}

void advance_step(KVInstance& c, const std::string& seed_tag) {
  auto* seqlens = static_cast<std::int32_t*>(c.cache_seqlens.view.data);
  for (std::int64_t b = 0; b < c.config.batch(); ++b) seqlens[b] += static_cast<std::int32_t>(c.config.new_tokens());
  fill_inputs(c, seed_tag);
  upload_all(c, {&c.q, &c.k_new, &c.v_new, &c.out, &c.lse, &c.cache_seqlens, &c.k_cache, &c.v_cache});
}

KVExpected expect_kvcache(const KVInstance& c) {
  KVExpected e;
  e.ref64 = reference::forward_kvcache(c.q.view, c.cache, c.options, reference::Precision::kFloat64);
  e.naive = reference::forward_kvcache(c.q.view, c.cache, c.options, reference::Precision::kInputDType);
  e.k_cache_before = c.k_cache.storage->bytes;
  e.v_cache_before = c.v_cache.storage->bytes;
  return e;
}

void call_kvcache(const KVInstance& c) {
  forward_kvcache(c.q_arg, c.cache_arg, c.out_arg, c.lse_arg, c.options_arg, c.schedule_arg);
  fetch_results(c);
}

void fetch_results(const KVInstance& c) {
  if (!c.on_cuda()) return;
  finish(c.options_arg.stream);
  for (const Tensor* t : {&c.out, &c.lse, &c.k_cache, &c.v_cache}) download(*t->storage, c.options_arg.stream);
}

void check_kvcache(const KVInstance& c, const KVExpected& expected) {
  const KVCaseConfig& cfg = c.config;
  const std::vector<double> out = read(c.out), lse = read(c.lse);
  const reference::ForwardResult &ref64 = expected.ref64.attention, &naive = expected.naive.attention;
  EXPECT_TRUE(check_close("out", out, ref64.out, naive.out, cfg.dtype));
  EXPECT_TRUE(check_close("lse", lse, ref64.lse, naive.lse, cfg.dtype));
  EXPECT_TRUE(zero_where_no_key(out, ref64.lse, cfg.seqlen_q, cfg.heads_q, cfg.head_dim_v));
  EXPECT_TRUE(untouched_outside_view("out", c.out));
  EXPECT_TRUE(untouched_outside_view("lse", c.lse));
  EXPECT_TRUE(cache_as_expected("k_cache", c.k_cache, expected.ref64.k_cache, expected.k_cache_before));
  EXPECT_TRUE(cache_as_expected("v_cache", c.v_cache, expected.ref64.v_cache, expected.v_cache_before));
  EXPECT_TRUE(guards_intact(all_tensors(c)));
}

void run_kvcache_instance(const KVInstance& c) {
  SCOPED_TRACE(c.config.name());
  const KVExpected expected = expect_kvcache(c);
  ASSERT_NO_THROW(call_kvcache(c));
  check_kvcache(c, expected);
}

void run_kvcache_case(const KVCaseConfig& config) { run_kvcache_instance(make_kvcache_instance(config)); }

// ---- Grids ----------------------------------------------------------------------------------------

namespace {

constexpr auto kTopLeft = CausalAlignment::kTopLeft;

KVCaseConfig kv_case(DType dtype, std::vector<std::int32_t> cache_seqlens, std::int64_t seqlen_q,
                     std::int64_t seqlen_new) {
  KVCaseConfig c;
  c.dtype = dtype;
  c.cache_seqlens = std::move(cache_seqlens);
  c.seqlen_q = seqlen_q;
  c.seqlen_new = seqlen_new;
  return c;
}

}  // namespace

std::vector<KVCaseConfig> kvcache_lengths_grid() {
  // One batch holds every cache length; several query rows are a chunk of prefill (causal, bottom-right).
  const std::pair<std::int64_t, std::int64_t> queries_and_new[] = {{1, 0}, {1, 1}, {5, 5}, {5, 0}};
  std::vector<KVCaseConfig> configs;
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    for (std::int64_t page_size : {0, 1, 16, 64, 256}) {
      for (const auto& [seqlen_q, seqlen_new] : queries_and_new) {
        KVCaseConfig c = kv_case(dtype, {0, 1, 7, 64, 300}, seqlen_q, seqlen_new);
        c.page_size = page_size;
        c.causal = seqlen_q > 1;
        configs.push_back(c);
      }
    }
  }
  return configs;
}

std::vector<KVCaseConfig> kvcache_long_grid() {
  std::vector<KVCaseConfig> configs;
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    for (std::int64_t page_size : {0, 256}) {
      KVCaseConfig c = kv_case(dtype, {4096, 1000}, 1, 1);
      c.heads_q = 8;
      c.heads_kv = 2;
      c.head_dim = c.head_dim_v = 128;
      c.page_size = page_size;
      configs.push_back(c);
    }
  }
  KVCaseConfig chunk = kv_case(DType::kFloat16, {4090}, 5, 5);
  chunk.page_size = 64;
  chunk.causal = true;
  chunk.rotary_dim = 64;
  configs.push_back(chunk);
  return configs;
}

std::vector<KVCaseConfig> kvcache_shapes_grid() {
  const std::pair<std::int64_t, std::int64_t> head_dims[] = {{40, 40}, {64, 64}, {128, 128}, {64, 40}, {40, 128}};
  std::vector<KVCaseConfig> configs;
  std::size_t n = 0;
  for (std::int64_t heads_kv : {8, 2, 1}) {  // GQA groups of 1, 4 and 8
    for (const auto& [head_dim, head_dim_v] : head_dims) {
      KVCaseConfig c = kv_case(DType::kFloat16, {17, 64, 0}, 2, 2);
      c.heads_q = 8;
      c.heads_kv = heads_kv;
      c.head_dim = head_dim;
      c.head_dim_v = head_dim_v;
      c.page_size = n++ % 2 == 0 ? 0 : 16;
      c.causal = true;
      configs.push_back(c);
    }
  }
  return configs;
}

std::vector<KVCaseConfig> kvcache_rotary_grid() {
  constexpr DType kDTypes[] = {DType::kBFloat16, DType::kFloat32, DType::kFloat16};
  std::vector<KVCaseConfig> configs;
  std::size_t n = 0;
  for (bool interleaved : {false, true}) {
    for (std::int64_t rotary_dim : {64, 32}) {
      // No mask rotates every query at cache_seqlens; causal and a window rotate each at its own position.
      for (int mask = 0; mask < 3; ++mask) {
        KVCaseConfig c = kv_case(kDTypes[(n + n / 3) % 3], {0, 9, 40}, 3, 3);
        c.rotary_dim = rotary_dim;
        c.rotary_interleaved = interleaved;
        c.causal = mask == 1;
        c.window_left = mask == 2 ? 8 : -1;
        c.page_size = n++ % 2 == 0 ? 0 : 16;
        configs.push_back(c);
      }
    }
  }
  KVCaseConfig nothing_new = kv_case(DType::kBFloat16, {5, 12}, 2, 0);  // q alone is rotated
  nothing_new.rotary_dim = 64;
  nothing_new.causal = true;
  configs.push_back(nothing_new);
  KVCaseConfig odd = kv_case(DType::kFloat32, {3, 30}, 1, 1);
  odd.head_dim = odd.head_dim_v = 40;
  odd.rotary_dim = 16;
  odd.rotary_interleaved = true;
  odd.cache_batch_idx = true;
  configs.push_back(odd);
  KVCaseConfig leftpad = kv_case(DType::kBFloat16, {20, 6}, 4, 4);
  leftpad.leftpad = {7, 6};
  leftpad.rotary_dim = 64;
  leftpad.causal = true;
  leftpad.page_size = 16;
  configs.push_back(leftpad);
  return configs;
}

std::vector<KVCaseConfig> kvcache_indices_grid() {
  std::vector<KVCaseConfig> configs;
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    KVCaseConfig c = kv_case(dtype, {10, 64, 7, 0}, 1, 1);
    c.leftpad = {3, 64, 0, 0};  // leftpad = cache_seqlens leaves the new tokens alone
    configs.push_back(c);
    c.page_size = 16;
    configs.push_back(c);
    c.page_size = 0;
    c.cache_batch_idx = true;
    configs.push_back(c);
    c.seqlen_q = c.seqlen_new = 5;
    c.causal = true;
    configs.push_back(c);
    KVCaseConfig idx = kv_case(dtype, {10, 64, 7, 0}, 2, 2);
    idx.cache_batch_idx = true;
    configs.push_back(idx);
    KVCaseConfig no_append = kv_case(dtype, {10, 64, 1}, 3, 0);
    no_append.append = false;
    configs.push_back(no_append);
    no_append.page_size = 16;
    configs.push_back(no_append);
  }
  KVCaseConfig padded = kv_case(DType::kFloat16, {10, 33}, 3, 3);
  padded.padded = true;
  configs.push_back(padded);
  padded.page_size = 16;
  configs.push_back(padded);
  padded.page_size = 0;
  padded.cache_batch_idx = true;
  padded.leftpad = {2, 5};
  padded.rotary_dim = 32;
  padded.alibi = Alibi::kPerBatch;
  configs.push_back(padded);
  return configs;
}

std::vector<KVCaseConfig> kvcache_options_grid() {
  std::vector<KVCaseConfig> configs;
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    const auto add = [&](std::int64_t seqlen_q, std::int64_t seqlen_new, const auto& set) {
      KVCaseConfig c = kv_case(dtype, {0, 5, 40, 130}, seqlen_q, seqlen_new);
      c.heads_kv = 2;
      set(c);
      configs.push_back(c);
    };
    add(5, 5, [](KVCaseConfig& c) { c.causal = true; });
    add(5, 1, [](KVCaseConfig& c) { c.causal = true; });  // more queries than new tokens: speculative checks
    add(5, 5, [](KVCaseConfig& c) {
      c.causal = true;
      c.alignment = kTopLeft;
    });
    add(5, 5, [](KVCaseConfig& c) {
      c.window_left = 16;
      c.window_right = 0;
    });
    add(5, 2, [](KVCaseConfig& c) {
      c.window_left = 10;
      c.window_right = 3;
      c.alignment = kTopLeft;
    });
    add(3, 3, [](KVCaseConfig& c) {
      c.causal = true;
      c.window_left = 20;
    });
    add(1, 1, [](KVCaseConfig& c) { c.softcap = 2.0f; });
    add(1, 1, [](KVCaseConfig& c) { c.alibi = Alibi::kPerHead; });
    add(5, 5, [](KVCaseConfig& c) {
      c.causal = true;
      c.alibi = Alibi::kPerBatch;
    });
    add(4, 4, [](KVCaseConfig& c) {
      c.causal = true;
      c.window_left = 30;
      c.softcap = 5.0f;
      c.alibi = Alibi::kPerBatch;
      c.page_size = 16;
      c.rotary_dim = 64;
    });
  }
  // Rows that see no key: empty caches with nothing appended, and queries left of every key.
  KVCaseConfig empty = kv_case(DType::kFloat32, {0, 1}, 5, 0);
  empty.causal = true;
  configs.push_back(empty);
  KVCaseConfig window = kv_case(DType::kBFloat16, {2, 9}, 4, 1);
  window.window_left = 0;
  window.window_right = 0;
  window.alignment = kTopLeft;
  window.leftpad = {0, 6};
  configs.push_back(window);
  return configs;
}

}  // namespace flashattn::test
