#include "test_case.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <set>
#include <sstream>
#include <stdexcept>

#include "device_memory.hpp"

namespace flashattn::test {
namespace {

// The rounding unit of atol. fp16 and bf16: the unit roundoff (half an ulp at 1) of the significand, as
// FA3. fp32: FA3's premise, that the backend's fp32 arithmetic is far more accurate than the naive
// computation in the input dtype, fails when the input dtype is fp32 itself: both are fp32 and either can
// be luckier (measured: the backend up to 5x the naive error; exact cancellations, e.g. a row with one
// visible key, leave the naive error 0 and the backend's at ~1e-6). 2^-14 (~1000 fp32 ulps) absorbs that
// and still sits 8x below the fp16 unit, while the algorithmic bugs this guards against (masks,
// alignment, scaling, softcap, ALiBi) cause errors of the order of the values themselves.
constexpr double kAtolUnitFloat32 = 0x1p-14;
constexpr double kAtolUnitFloat16 = 0x1p-11;
constexpr double kAtolUnitBFloat16 = 0x1p-8;
// FA3 measures the dtype's rounding error at ref + 0.3: the offset keeps atol meaningful near zero.
constexpr double kAtolOffset = 0.3;
constexpr double kRelativeFactor = 2.0;  // FA3's rtol: the backend may be twice as far off as naive

// ALiBi slopes are drawn from this range: enough to reshape a row of N(0, 1) scores.
constexpr double kAlibiSlopeLow = 0.02;
constexpr double kAlibiSlopeHigh = 0.3;

double atol_unit(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return kAtolUnitFloat16;
    case DType::kBFloat16:
      return kAtolUnitBFloat16;
    default:
      return kAtolUnitFloat32;
  }
}

const char* dtype_tag(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return "f16";
    case DType::kBFloat16:
      return "bf16";
    default:
      return "f32";
  }
}

// 1.5f -> "1p5": a float in a test name.
std::string number_tag(float value) {
  std::ostringstream text;
  text << value;
  std::string s = text.str();
  std::replace(s.begin(), s.end(), '.', 'p');
  std::replace(s.begin(), s.end(), '-', 'm');
  return s;
}

std::int64_t total_q(const Config& c) {
  std::int64_t total = 0;
  for (const auto& s : c.sequences) total += s.first;
  return total;
}

std::int64_t total_k(const Config& c) {
  std::int64_t total = 0;
  for (const auto& s : c.sequences) total += s.second;
  return total;
}

TokenShape q_tokens(const Config& c) {
  return c.varlen() ? TokenShape{true, 0, total_q(c) + c.trailing_tokens} : TokenShape{false, c.batch, c.seqlen_q};
}

TokenShape k_tokens(const Config& c) {
  return c.varlen() ? TokenShape{true, 0, total_k(c) + c.trailing_tokens} : TokenShape{false, c.batch, c.seqlen_k};
}

std::vector<std::int32_t> prefix_sums(const Config& c, bool keys) {
  std::vector<std::int32_t> cu{0};
  for (const auto& s : c.sequences) cu.push_back(cu.back() + (keys ? s.second : s.first));
  return cu;
}

// Elements of a token tensor (rows of `width` values per head) in packed rows >= first_unused_row.
std::vector<bool> rows_from(std::int64_t rows, std::int64_t heads, std::int64_t width, std::int64_t first_unused_row) {
  std::vector<bool> mask(static_cast<std::size_t>(rows * heads * width), false);
  std::fill(mask.begin() + std::min<std::int64_t>(first_unused_row, rows) * heads * width, mask.end(), true);
  return mask;
}

// lse (heads, tokens) entries of tokens >= first_unused_token.
std::vector<bool> lse_columns_from(std::int64_t heads, std::int64_t tokens, std::int64_t first_unused_token) {
  std::vector<bool> mask(static_cast<std::size_t>(heads * tokens), false);
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t t = first_unused_token; t < tokens; ++t) mask[h * tokens + t] = true;
  }
  return mask;
}

// Storage outside every output view must still hold the poison, and so must the guards around its device copy.
testing::AssertionResult untouched_outside(const std::string& what, const std::vector<const Tensor*>& views) {
  const Storage& storage = *views.front()->storage;
  if (storage.device_copy) {
    testing::AssertionResult guards = device_guards_intact(storage);
    if (!guards) return testing::AssertionFailure() << what << ": " << guards.message();
  }
  std::vector<const TensorView*> view_list;
  for (const Tensor* t : views) view_list.push_back(&t->view);
  const std::vector<bool> covered = covered_elements(storage, view_list);
  for (std::int64_t i = 0; i < storage.elements(); ++i) {
    if (!covered[i] && !std::isnan(reference::load_element(storage.at(i), storage.dtype))) {
      return testing::AssertionFailure() << what << ": storage element " << i << " outside the views was written";
    }
  }
  return testing::AssertionSuccess();
}

// Rows of a fully masked query (lse -inf in the reference) must be exactly zero.
testing::AssertionResult zero_rows_where_masked(const std::string& what, const std::vector<double>& values,
                                                const Instance& c, const std::vector<double>& ref_lse,
                                                std::int64_t width) {
  const std::int64_t heads = c.config.heads_q;
  const std::int64_t rows = static_cast<std::int64_t>(values.size()) / (heads * width);
  const bool varlen = c.config.varlen();
  const std::int64_t seqlen = c.config.seqlen_q;
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t h = 0; h < heads; ++h) {
      const std::int64_t lse_index = varlen ? h * rows + r : ((r / seqlen) * heads + h) * seqlen + r % seqlen;
      if (!std::isinf(ref_lse[lse_index])) continue;
      for (std::int64_t x = 0; x < width; ++x) {
        const double value = values[(r * heads + h) * width + x];
        if (value != 0.0) {
          return testing::AssertionFailure() << what << ": fully masked row " << r << " head " << h << " has " << value
                                             << " at " << x << ", expected 0";
        }
      }
    }
  }
  return testing::AssertionSuccess();
}

// The distinct storages under some tensors (packed q/k/v views share one); tensors without storage (the
// index tensors of a batched case) are left out.
std::vector<Storage*> distinct_storages(const std::vector<const Tensor*>& tensors) {
  std::vector<Storage*> storages;
  std::set<const Storage*> seen;
  for (const Tensor* t : tensors) {
    if (t->storage && seen.insert(t->storage.get()).second) storages.push_back(t->storage.get());
  }
  return storages;
}

// Waits for the case's stream, then copies the tensors' device copies back into their host storages.
void copy_to_host(const Instance& c, const std::vector<const Tensor*>& tensors) {
  void* stream = c.args.options.stream;
  finish(stream);
  for (Storage* storage : distinct_storages(tensors)) download(*storage, stream);
}

// The library's arguments for c: the host views themselves, or for a CUDA case the views of the device
// copies of every storage (made here).
Arguments make_arguments(const Instance& c) {
  Arguments a;
  a.options = c.options;
  a.seqlens = c.seqlens;
  const bool on_cuda = c.on_cuda();
  if (on_cuda) {
    for (Storage* storage : distinct_storages({&c.q, &c.k, &c.v, &c.out, &c.lse, &c.dout, &c.dq, &c.dk, &c.dv,
                                               &c.cu_seqlens_q, &c.cu_seqlens_k, &c.seqused_k, &c.alibi_slopes})) {
      copy_to_device(*storage, c.config.device);
    }
  }
  const auto view = [on_cuda](const Tensor& t) { return on_cuda ? device_view(t) : t.view; };
  a.q = view(c.q);
  a.k = view(c.k);
  a.v = view(c.v);
  a.out = view(c.out);
  a.lse = view(c.lse);
  a.dout = view(c.dout);
  a.dq = view(c.dq);
  a.dk = view(c.dk);
  a.dv = view(c.dv);
  if (a.options.alibi_slopes) a.options.alibi_slopes = view(c.alibi_slopes);
  if (a.seqlens) {
    a.seqlens->cu_seqlens_q = view(c.cu_seqlens_q);
    a.seqlens->cu_seqlens_k = view(c.cu_seqlens_k);
    if (a.seqlens->seqused_k) a.seqlens->seqused_k = view(c.seqused_k);
  }
  return a;
}

}  // namespace

std::string Config::name() const {
  std::ostringstream n;
  n << dtype_tag(dtype) << '_';
  if (varlen()) {
    n << "varlen_" << varlen_label << '_';
    if (!seqused_k.empty()) n << "used_";
    if (trailing_tokens > 0) n << "trail" << trailing_tokens << '_';
  } else {
    n << 'b' << batch << "_q" << seqlen_q << "_k" << seqlen_k << '_';
  }
  n << 'h' << heads_q << "kv" << heads_kv << "_d" << head_dim << "dv" << head_dim_v;
  if (causal) n << "_causal";
  if (window_left >= 0) n << "_wl" << window_left;
  if (window_right >= 0) n << "_wr" << window_right;
  if (alignment == CausalAlignment::kTopLeft) n << "_TL";
  if (softcap > 0.0f) n << "_cap" << number_tag(softcap);
  if (alibi == Alibi::kPerHead) n << "_alibiH";
  if (alibi == Alibi::kPerBatch) n << "_alibiB";
  if (softmax_scale) n << "_scale" << number_tag(*softmax_scale);
  if (layout != Layout::kDense) n << '_' << layout_name(layout);
  if (num_threads > 0) n << "_thr" << num_threads;
  if (!backward) n << "_fwd";
  if (deterministic) n << "_det";
  return n.str();
}

void PrintTo(const Config& config, std::ostream* os) { *os << config.name(); }

Instance make_instance(const Config& config) {
  Instance c;
  c.config = config;
  const std::string name = config.name();
  const TokenShape tq = q_tokens(config), tk = k_tokens(config);
  const HeadShape qk_heads{config.heads_q, config.head_dim}, kv_heads{config.heads_kv, config.head_dim},
      v_heads{config.heads_kv, config.head_dim_v}, out_heads{config.heads_q, config.head_dim_v};
  if (config.layout == Layout::kPacked) {
    if (tq.tokens != tk.tokens) throw std::invalid_argument("packed layout needs as many query as key tokens");
    auto inputs = make_packed_tensors(config.dtype, tq, {qk_heads, kv_heads, v_heads});
    auto grads = make_packed_tensors(config.dtype, tq, {qk_heads, kv_heads, v_heads});
    c.q = inputs[0], c.k = inputs[1], c.v = inputs[2];
    c.dq = grads[0], c.dk = grads[1], c.dv = grads[2];
  } else {
    c.q = make_token_tensor(config.dtype, tq, qk_heads, config.layout);
    c.k = make_token_tensor(config.dtype, tk, kv_heads, config.layout);
    c.v = make_token_tensor(config.dtype, tk, v_heads, config.layout);
    c.dq = make_token_tensor(config.dtype, tq, qk_heads, config.layout);
    c.dk = make_token_tensor(config.dtype, tk, kv_heads, config.layout);
    c.dv = make_token_tensor(config.dtype, tk, v_heads, config.layout);
  }
  c.out = make_token_tensor(config.dtype, tq, out_heads, config.layout);
  c.dout = make_token_tensor(config.dtype, tq, out_heads, config.layout);
  c.lse = make_lse_tensor(tq, config.heads_q, config.layout);
  fill_normal(c.q, seed_from(name + "/q"));
  fill_normal(c.k, seed_from(name + "/k"));
  fill_normal(c.v, seed_from(name + "/v"));
  fill_normal(c.dout, seed_from(name + "/dout"));

  std::int64_t batch = config.batch;
  if (config.varlen()) {
    batch = static_cast<std::int64_t>(config.sequences.size());
    c.cu_seqlens_q = make_int32(prefix_sums(config, false));
    c.cu_seqlens_k = make_int32(prefix_sums(config, true));
    VarlenSeqlens seqlens;
    seqlens.cu_seqlens_q = c.cu_seqlens_q.view;
    seqlens.cu_seqlens_k = c.cu_seqlens_k.view;
    for (const auto& s : config.sequences) {
      seqlens.max_seqlen_q = std::max<std::int64_t>(seqlens.max_seqlen_q, s.first);
      seqlens.max_seqlen_k = std::max<std::int64_t>(seqlens.max_seqlen_k, s.second);
    }
    if (!config.seqused_k.empty()) {
      c.seqused_k = make_int32(config.seqused_k);
      seqlens.seqused_k = c.seqused_k.view;
    }
    c.seqlens = seqlens;
  }

  AttentionOptions& o = c.options;
  o.softmax_scale = config.softmax_scale;
  o.causal = config.causal;
  o.causal_alignment = config.alignment;
  o.window_left = config.window_left;
  o.window_right = config.window_right;
  o.softcap = config.softcap;
  o.num_threads = config.num_threads;
  o.deterministic = config.deterministic;
  o.backend = config.device.type == DeviceType::kCUDA ? Backend::kCUDA : Backend::kCPU;
  if (config.alibi != Alibi::kNone) {
    c.alibi_slopes = config.alibi == Alibi::kPerHead ? make_dense(DType::kFloat32, {config.heads_q})
                                                     : make_dense(DType::kFloat32, {batch, config.heads_q});
    fill_uniform(c.alibi_slopes, seed_from(name + "/alibi"), kAlibiSlopeLow, kAlibiSlopeHigh);
    o.alibi_slopes = c.alibi_slopes.view;
  }
  c.args = make_arguments(c);
  return c;
}

void call_forward(const Instance& c) {
  const Arguments& a = c.args;
  if (a.seqlens) {
    forward_varlen(a.q, a.k, a.v, a.out, a.lse, *a.seqlens, a.options);
  } else {
    forward(a.q, a.k, a.v, a.out, a.lse, a.options);
  }
  if (c.on_cuda()) copy_to_host(c, {&c.out, &c.lse});
}

void call_backward(const Instance& c) {
  const Arguments& a = c.args;
  if (a.seqlens) {
    backward_varlen(a.q, a.k, a.v, a.out, a.dout, a.lse, a.dq, a.dk, a.dv, *a.seqlens, a.options);
  } else {
    backward(a.q, a.k, a.v, a.out, a.dout, a.lse, a.dq, a.dk, a.dv, a.options);
  }
  if (c.on_cuda()) copy_to_host(c, {&c.dq, &c.dk, &c.dv});
}

void copy_outputs_to_host(const Instance& c) {
  if (c.on_cuda()) copy_to_host(c, {&c.out, &c.lse, &c.dq, &c.dk, &c.dv});
}

void reset_outputs(const Instance& c) {
  for (Storage* storage : distinct_storages({&c.out, &c.lse, &c.dq, &c.dk, &c.dv})) {
    poison(*storage);
    if (c.on_cuda()) upload(*storage, c.args.options.stream);
  }
}

testing::AssertionResult check_close(const std::string& what, const std::vector<double>& backend,
                                     const std::vector<double>& ref64, const std::vector<double>& naive, DType dtype,
                                     const std::vector<bool>& must_stay_poisoned) {
  if (backend.size() != ref64.size() || naive.size() != ref64.size()) {
    return testing::AssertionFailure() << what << ": sizes differ";
  }
  double backend_error = 0.0, naive_error = 0.0, ref_magnitude = 0.0;
  std::size_t worst = 0;
  for (std::size_t i = 0; i < ref64.size(); ++i) {
    if (!must_stay_poisoned.empty() && must_stay_poisoned[i]) {
      if (!std::isnan(backend[i])) {
        return testing::AssertionFailure()
               << what << ": element " << i << " should not be written, holds " << backend[i];
      }
      continue;
    }
    if (std::isnan(backend[i])) return testing::AssertionFailure() << what << ": NaN at element " << i;
    if (std::isinf(ref64[i]) || std::isinf(backend[i])) {
      if (backend[i] != ref64[i]) {
        return testing::AssertionFailure()
               << what << ": element " << i << " is " << backend[i] << ", reference " << ref64[i];
      }
      continue;
    }
    const double error = std::abs(backend[i] - ref64[i]);
    if (error > backend_error) {
      backend_error = error;
      worst = i;
    }
    naive_error = std::max(naive_error, std::abs(naive[i] - ref64[i]));
    ref_magnitude = std::max(ref_magnitude, std::abs(ref64[i]));
  }
  const double atol = 2.0 * atol_unit(dtype) * (ref_magnitude + kAtolOffset);
  const double tolerance = kRelativeFactor * naive_error + atol;
  if (backend_error <= tolerance) return testing::AssertionSuccess();
  return testing::AssertionFailure() << what << ": max|backend - ref64| = " << backend_error
                                     << " > 2 * max|naive - ref64| + atol = 2 * " << naive_error << " + " << atol
                                     << "; worst element " << worst << ": backend " << backend[worst] << ", ref64 "
                                     << ref64[worst] << ", naive " << naive[worst];
}

void check_forward(const Instance& c, const reference::ForwardResult& ref64, const reference::ForwardResult& naive) {
  const Config& cfg = c.config;
  std::vector<bool> out_unwritten, lse_unwritten;
  if (cfg.varlen()) {
    const std::int64_t rows = q_tokens(cfg).tokens;
    out_unwritten = rows_from(rows, cfg.heads_q, cfg.head_dim_v, total_q(cfg));
    lse_unwritten = lse_columns_from(cfg.heads_q, rows, total_q(cfg));
  }
  const std::vector<double> out = read(c.out), lse = read(c.lse);
  EXPECT_TRUE(check_close("out", out, ref64.out, naive.out, cfg.dtype, out_unwritten));
  EXPECT_TRUE(check_close("lse", lse, ref64.lse, naive.lse, cfg.dtype, lse_unwritten));
  EXPECT_TRUE(zero_rows_where_masked("out", out, c, ref64.lse, cfg.head_dim_v));
  EXPECT_TRUE(untouched_outside("out", {&c.out}));
  EXPECT_TRUE(untouched_outside("lse", {&c.lse}));
}

void check_backward(const Instance& c, const reference::BackwardResult& ref64, const reference::BackwardResult& naive,
                    const std::vector<double>& ref_lse) {
  const Config& cfg = c.config;
  std::vector<bool> dq_unwritten, dk_unwritten, dv_unwritten;
  if (cfg.varlen()) {
    dq_unwritten = rows_from(q_tokens(cfg).tokens, cfg.heads_q, cfg.head_dim, total_q(cfg));
    dk_unwritten = rows_from(k_tokens(cfg).tokens, cfg.heads_kv, cfg.head_dim, total_k(cfg));
    dv_unwritten = rows_from(k_tokens(cfg).tokens, cfg.heads_kv, cfg.head_dim_v, total_k(cfg));
  }
  const std::vector<double> dq = read(c.dq);
  EXPECT_TRUE(check_close("dq", dq, ref64.dq, naive.dq, cfg.dtype, dq_unwritten));
  EXPECT_TRUE(check_close("dk", read(c.dk), ref64.dk, naive.dk, cfg.dtype, dk_unwritten));
  EXPECT_TRUE(check_close("dv", read(c.dv), ref64.dv, naive.dv, cfg.dtype, dv_unwritten));
  EXPECT_TRUE(zero_rows_where_masked("dq", dq, c, ref_lse, cfg.head_dim));
  if (cfg.layout == Layout::kPacked) {
    EXPECT_TRUE(untouched_outside("dq/dk/dv", {&c.dq, &c.dk, &c.dv}));
  } else {
    EXPECT_TRUE(untouched_outside("dq", {&c.dq}));
    EXPECT_TRUE(untouched_outside("dk", {&c.dk}));
    EXPECT_TRUE(untouched_outside("dv", {&c.dv}));
  }
}

void run_instance(const Instance& c) {
  SCOPED_TRACE(c.config.name());
  using reference::Precision;
  ASSERT_NO_THROW(call_forward(c));
  const auto forward64 = reference::forward(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), Precision::kFloat64);
  const auto forward_naive =
      reference::forward(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), Precision::kInputDType);
  check_forward(c, forward64, forward_naive);
  if (!c.config.backward) return;
  ASSERT_NO_THROW(call_backward(c));
  const auto backward64 =
      reference::backward(c.q.view, c.k.view, c.v.view, c.dout.view, c.options, c.varlen(), Precision::kFloat64);
  const auto backward_naive =
      reference::backward(c.q.view, c.k.view, c.v.view, c.dout.view, c.options, c.varlen(), Precision::kInputDType);
  check_backward(c, backward64, backward_naive, forward64.lse);
}

void run_case(const Config& config) { run_instance(make_instance(config)); }

std::int64_t fully_masked_rows(const Config& config) {
  Config on_host = config;  // the reference alone answers: no device copies needed
  on_host.device = Device::cpu();
  const Instance c = make_instance(on_host);
  const auto result =
      reference::forward(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), reference::Precision::kFloat64);
  return std::count_if(result.lse.begin(), result.lse.end(), [](double x) { return std::isinf(x); });
}

std::vector<std::uint64_t> bits_of(const Tensor& t) {
  std::vector<std::uint64_t> bits;
  for (double x : read(t)) bits.push_back(std::bit_cast<std::uint64_t>(x));
  return bits;
}

}  // namespace flashattn::test
