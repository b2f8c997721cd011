// The reference is the yardstick of every other test, so it is checked on its own first: element
// conversions bit by bit, masks against hand-written tables, ALiBi and softcap against closed forms, and
// the backward against finite differences of the forward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "reference/reference.hpp"
#include "test_case.hpp"
#include "test_tensors.hpp"

namespace flashattn::test {
namespace {

using reference::Precision;

std::uint16_t bits16(double value, DType dtype) {
  std::uint16_t bits;
  reference::store_element(value, dtype, &bits);
  return bits;
}

double from_bits16(std::uint16_t bits, DType dtype) { return reference::load_element(&bits, dtype); }

void set(const Tensor& t, std::int64_t index, double value) {
  reference::store_element(value, t.view.dtype,
                           static_cast<std::byte*>(t.view.data) + index * dtype_size(t.view.dtype));
}

TEST(ReferenceConversion, Float16KnownValues) {
  EXPECT_EQ(bits16(1.0, DType::kFloat16), 0x3c00);
  EXPECT_EQ(bits16(-2.0, DType::kFloat16), 0xc000);
  EXPECT_EQ(bits16(65504.0, DType::kFloat16), 0x7bff);               // largest finite
  EXPECT_EQ(bits16(65519.0, DType::kFloat16), 0x7bff);               // below the halfway point to 2^16
  EXPECT_EQ(bits16(65520.0, DType::kFloat16), 0x7c00);               // halfway rounds to even: infinity
  EXPECT_EQ(bits16(std::ldexp(1.0, -14), DType::kFloat16), 0x0400);  // smallest normal
  EXPECT_EQ(bits16(std::ldexp(1.0, -24), DType::kFloat16), 0x0001);  // smallest subnormal
  EXPECT_EQ(bits16(std::ldexp(1.0, -25), DType::kFloat16), 0x0000);  // tie to even: zero
  EXPECT_EQ(bits16(std::ldexp(3.0, -25), DType::kFloat16), 0x0002);  // tie to even: 2 units
  EXPECT_EQ(bits16(1.0 + std::ldexp(1.0, -11), DType::kFloat16), 0x3c00);
  EXPECT_EQ(bits16(1.0 + std::ldexp(3.0, -11), DType::kFloat16), 0x3c02);
  EXPECT_EQ(bits16(1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -20), DType::kFloat16), 0x3c01);
  EXPECT_TRUE(std::isnan(from_bits16(bits16(std::nan(""), DType::kFloat16), DType::kFloat16)));
  EXPECT_EQ(from_bits16(0x3555, DType::kFloat16), 0.333251953125);
  EXPECT_EQ(from_bits16(0x8001, DType::kFloat16), -std::ldexp(1.0, -24));
}

TEST(ReferenceConversion, BFloat16KnownValues) {
  EXPECT_EQ(bits16(1.0, DType::kBFloat16), 0x3f80);
  EXPECT_EQ(bits16(-1.0, DType::kBFloat16), 0xbf80);
  EXPECT_EQ(bits16(1.0 + std::ldexp(1.0, -8), DType::kBFloat16), 0x3f80);  // tie to even
  EXPECT_EQ(bits16(1.0 + std::ldexp(3.0, -8), DType::kBFloat16), 0x3f82);
  EXPECT_EQ(bits16(std::numeric_limits<float>::max(), DType::kBFloat16), 0x7f80);  // rounds to infinity
  EXPECT_TRUE(std::isnan(from_bits16(bits16(std::nan(""), DType::kBFloat16), DType::kBFloat16)));
  EXPECT_EQ(from_bits16(0x4049, DType::kBFloat16), 3.140625);
}

TEST(ReferenceConversion, EveryHalfPatternRoundTrips) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    for (std::uint32_t bits = 0; bits <= 0xffff; ++bits) {
      const double value = from_bits16(static_cast<std::uint16_t>(bits), dtype);
      if (std::isnan(value)) continue;
      ASSERT_EQ(bits16(value, dtype), bits) << dtype_name(dtype) << " pattern " << bits;
      ASSERT_EQ(reference::round_to_dtype(static_cast<float>(value), dtype), value);
    }
  }
}

// q = 0 makes every score 0, so a row's output is the mean of the visible value rows and its lse is
// log(number of visible keys). Value row j holds (j, j^2, 1, ...), which pins down the visible set.
struct VisibilityCase {
  const char* name;
  std::int64_t seqlen_q, seqlen_k;
  bool causal;
  CausalAlignment alignment;
  int window_left, window_right;
  std::vector<std::vector<int>> visible;  // per query row
};

void expect_visibility(const VisibilityCase& vc) {
  SCOPED_TRACE(vc.name);
  constexpr std::int64_t kDim = 8;
  Tensor q = make_dense(DType::kFloat32, {1, vc.seqlen_q, 1, kDim});
  Tensor k = make_dense(DType::kFloat32, {1, vc.seqlen_k, 1, kDim});
  Tensor v = make_dense(DType::kFloat32, {1, vc.seqlen_k, 1, kDim});
  for (std::int64_t i = 0; i < vc.seqlen_q * kDim; ++i) set(q, i, 0.0);
  fill_normal(k, 1);
  for (std::int64_t j = 0; j < vc.seqlen_k; ++j) {
    for (std::int64_t c = 0; c < kDim; ++c) set(v, j * kDim + c, c == 0 ? j : c == 1 ? j * j : 1.0);
  }
  AttentionOptions options;
  options.causal = vc.causal;
  options.causal_alignment = vc.alignment;
  options.window_left = vc.window_left;
  options.window_right = vc.window_right;
  const auto result = reference::forward(q.view, k.view, v.view, options, nullptr, Precision::kFloat64);
  for (std::int64_t i = 0; i < vc.seqlen_q; ++i) {
    const auto& keys = vc.visible[i];
    if (keys.empty()) {
      EXPECT_EQ(result.lse[i], -std::numeric_limits<double>::infinity()) << "row " << i;
      for (std::int64_t c = 0; c < kDim; ++c) EXPECT_EQ(result.out[i * kDim + c], 0.0) << "row " << i;
      continue;
    }
    double mean = 0.0, mean_square = 0.0;
    for (int j : keys) {
      mean += j / static_cast<double>(keys.size());
      mean_square += j * j / static_cast<double>(keys.size());
    }
    EXPECT_NEAR(result.lse[i], std::log(static_cast<double>(keys.size())), 1e-12) << "row " << i;
    EXPECT_NEAR(result.out[i * kDim], mean, 1e-12) << "row " << i;
    EXPECT_NEAR(result.out[i * kDim + 1], mean_square, 1e-12) << "row " << i;
  }
}

constexpr auto kBottomRight = CausalAlignment::kBottomRight;
constexpr auto kTopLeft = CausalAlignment::kTopLeft;

TEST(ReferenceMasks, HandWrittenTables) {
  const std::vector<VisibilityCase> cases = {
      {"none", 2, 3, false, kBottomRight, -1, -1, {{0, 1, 2}, {0, 1, 2}}},
      {"causal_br_q3_k5", 3, 5, true, kBottomRight, -1, -1, {{0, 1, 2}, {0, 1, 2, 3}, {0, 1, 2, 3, 4}}},
      {"causal_tl_q3_k5", 3, 5, true, kTopLeft, -1, -1, {{0}, {0, 1}, {0, 1, 2}}},
      {"causal_br_q5_k3", 5, 3, true, kBottomRight, -1, -1, {{}, {}, {0}, {0, 1}, {0, 1, 2}}},
      {"causal_tl_q5_k3", 5, 3, true, kTopLeft, -1, -1, {{0}, {0, 1}, {0, 1, 2}, {0, 1, 2}, {0, 1, 2}}},
      {"window_1_1", 4, 4, false, kBottomRight, 1, 1, {{0, 1}, {0, 1, 2}, {1, 2, 3}, {2, 3}}},
      {"window_tl_1_0_q5_k3", 5, 3, false, kTopLeft, 1, 0, {{0}, {0, 1}, {1, 2}, {2}, {}}},
      {"window_br_0_0_q2_k4", 2, 4, false, kBottomRight, 0, 0, {{2}, {3}}},
      {"window_left_only", 3, 3, false, kBottomRight, 1, -1, {{0, 1, 2}, {0, 1, 2}, {1, 2}}},
      {"window_right_only", 3, 3, false, kBottomRight, -1, 0, {{0}, {0, 1}, {0, 1, 2}}},
      {"causal_window_left", 4, 4, true, kBottomRight, 1, -1, {{0}, {0, 1}, {1, 2}, {2, 3}}},
      {"causal_ignores_unbounded_right", 2, 2, true, kBottomRight, -1, -1, {{0}, {0, 1}}},
      {"window_br_1_1_q4_k2", 4, 2, false, kBottomRight, 1, 1, {{}, {0}, {0, 1}, {0, 1}}},
      {"seqlen_k_0", 2, 0, false, kBottomRight, -1, -1, {{}, {}}},
  };
  for (const auto& vc : cases) expect_visibility(vc);
}

// Two keys, q = 0 so only ALiBi shapes the scores: row 0 sees (0, -slope), row 1 (-slope, 0).
TEST(ReferenceAlibi, ClosedForm) {
  constexpr double kSlope = 0.75;
  Tensor q = make_dense(DType::kFloat32, {1, 2, 1, 8}), k = make_dense(DType::kFloat32, {1, 2, 1, 8});
  Tensor v = make_dense(DType::kFloat32, {1, 2, 1, 8}), slopes = make_dense(DType::kFloat32, {1});
  for (std::int64_t i = 0; i < 16; ++i) {
    set(q, i, 0.0);
    set(k, i, 1.0);
    set(v, i, i < 8 ? 1.0 : 3.0);  // value rows 1 and 3
  }
  set(slopes, 0, kSlope);
  AttentionOptions options;
  options.alibi_slopes = slopes.view;
  const auto result = reference::forward(q.view, k.view, v.view, options, nullptr, Precision::kFloat64);
  const double e = std::exp(-kSlope);
  EXPECT_NEAR(result.out[0], (1.0 + 3.0 * e) / (1.0 + e), 1e-12);
  EXPECT_NEAR(result.out[8], (e + 3.0) / (1.0 + e), 1e-12);
  EXPECT_NEAR(result.lse[0], std::log(1.0 + e), 1e-12);
  EXPECT_NEAR(result.lse[1], std::log(1.0 + e), 1e-12);
}

// One query, two keys: s0 = softcap * tanh(scale * a / softcap), s1 = 0.
TEST(ReferenceSoftcap, ClosedForm) {
  constexpr double kA = 6.0, kScale = 0.5, kSoftcap = 2.0;
  Tensor q = make_dense(DType::kFloat32, {1, 1, 1, 8}), k = make_dense(DType::kFloat32, {1, 2, 1, 8});
  Tensor v = make_dense(DType::kFloat32, {1, 2, 1, 8});
  for (std::int64_t c = 0; c < 8; ++c) {
    set(q, c, c == 0 ? kA : 0.0);
    set(k, c, c == 0 ? 1.0 : 0.0);
    set(k, 8 + c, 0.0);
    set(v, c, 1.0);
    set(v, 8 + c, 0.0);
  }
  AttentionOptions options;
  options.softmax_scale = static_cast<float>(kScale);
  options.softcap = static_cast<float>(kSoftcap);
  const auto result = reference::forward(q.view, k.view, v.view, options, nullptr, Precision::kFloat64);
  const double s0 = kSoftcap * std::tanh(kScale * kA / kSoftcap);
  EXPECT_NEAR(result.out[0], std::exp(s0) / (std::exp(s0) + 1.0), 1e-12);
  EXPECT_NEAR(result.lse[0], std::log(std::exp(s0) + 1.0), 1e-12);
}

// sum(dout * out) as a function of one input element, differentiated numerically.
class FiniteDifference {
 public:
  explicit FiniteDifference(const Instance& c) : c_(c), dout_(read(c.dout)) {}

  double loss() const {
    const auto out =
        reference::forward(c_.q.view, c_.k.view, c_.v.view, c_.options, c_.varlen(), Precision::kFloat64).out;
    double total = 0.0;
    for (std::size_t i = 0; i < out.size(); ++i) total += out[i] * dout_[i];
    return total;
  }

  // Central difference in element `index` (row-major) of `t`; the step is a power of two so that
  // x +- step is exact in fp32 for the inputs' magnitudes.
  double derivative(const Tensor& t, std::int64_t index) const {
    constexpr double kStep = 0x1p-10;
    std::int64_t offset = 0;
    for_each_element(t.view, [&](std::int64_t i, std::int64_t o) {
      if (i == index) offset = o;
    });
    auto* element = static_cast<std::byte*>(t.view.data) + offset * dtype_size(t.view.dtype);
    const double x = reference::load_element(element, t.view.dtype);
    reference::store_element(x + kStep, t.view.dtype, element);
    const double up = loss();
    reference::store_element(x - kStep, t.view.dtype, element);
    const double down = loss();
    reference::store_element(x, t.view.dtype, element);
    return (up - down) / (2.0 * kStep);
  }

 private:
  const Instance& c_;
  std::vector<double> dout_;
};

void expect_gradients_match_finite_differences(const Config& config) {
  SCOPED_TRACE(config.name());
  constexpr double kTolerance = 2e-5;  // the O(step^2) truncation error of the central difference
  const Instance c = make_instance(config);
  const auto grads =
      reference::backward(c.q.view, c.k.view, c.v.view, c.dout.view, c.options, c.varlen(), Precision::kFloat64);
  const FiniteDifference numeric(c);
  const struct {
    const char* name;
    const Tensor* input;
    const std::vector<double>* grad;
  } inputs[] = {{"dq", &c.q, &grads.dq}, {"dk", &c.k, &grads.dk}, {"dv", &c.v, &grads.dv}};
  for (const auto& in : inputs) {
    for (std::int64_t i = 0; i < in.input->view.numel(); ++i) {
      ASSERT_NEAR((*in.grad)[i], numeric.derivative(*in.input, i), kTolerance) << in.name << " element " << i;
    }
  }
}

Config small_gradient_config() {
  Config c;
  c.batch = 1;
  c.seqlen_q = 5;
  c.seqlen_k = 7;
  c.heads_q = 4;
  c.heads_kv = 2;
  c.head_dim = 8;
  c.head_dim_v = 16;
  return c;
}

TEST(ReferenceBackward, MatchesFiniteDifferences) {
  std::vector<Config> configs;
  Config plain = small_gradient_config();
  configs.push_back(plain);
  Config causal = plain;
  causal.causal = true;
  causal.seqlen_q = 7;  // more queries than keys: fully masked top rows
  causal.seqlen_k = 5;
  configs.push_back(causal);
  Config everything = plain;
  everything.window_left = 2;
  everything.window_right = 1;
  everything.softcap = 1.5f;
  everything.alibi = Alibi::kPerBatch;
  everything.alignment = CausalAlignment::kTopLeft;
  configs.push_back(everything);
  Config varlen = plain;
  varlen.sequences = {{3, 4}, {0, 2}, {4, 6}};
  varlen.seqused_k = {3, 1, 6};
  varlen.varlen_label = "grad";
  varlen.causal = true;
  varlen.softcap = 2.0f;
  varlen.alibi = Alibi::kPerHead;
  configs.push_back(varlen);
  for (const Config& config : configs) expect_gradients_match_finite_differences(config);
}

// A packed batch gives, sequence by sequence, what a batch of one gives.
TEST(ReferenceVarlen, MatchesBatchedPerSequence) {
  Config packed = small_gradient_config();
  packed.sequences = {{3, 6}, {0, 2}, {5, 1}, {2, 4}};
  packed.seqused_k = {4, 2, 0, 4};
  packed.varlen_label = "per_sequence";
  packed.causal = true;
  packed.softcap = 3.0f;
  const Instance p = make_instance(packed);
  const auto whole = reference::forward(p.q.view, p.k.view, p.v.view, p.options, p.varlen(), Precision::kFloat64);
  const std::int64_t heads = packed.heads_q, dv = packed.head_dim_v, total_q = p.q.view.shape[0];
  std::int64_t q_begin = 0, k_begin = 0;
  for (std::size_t b = 0; b < packed.sequences.size(); ++b) {
    const auto [len_q, len_k] = packed.sequences[b];
    const std::int64_t used = packed.seqused_k[b];
    auto slice = [](const Tensor& t, std::int64_t begin, std::int64_t length) {
      TensorView view = t.view;
      view.data = static_cast<std::byte*>(view.data) + begin * view.strides[0] * dtype_size(view.dtype);
      return TensorView::strided(view.data, view.dtype, {1, length, view.shape[1], view.shape[2]},
                                 {length * view.strides[0], view.strides[0], view.strides[1], 1});
    };
    const auto one = reference::forward(slice(p.q, q_begin, len_q), slice(p.k, k_begin, used),
                                        slice(p.v, k_begin, used), p.options, nullptr, Precision::kFloat64);
    for (std::int64_t i = 0; i < len_q; ++i) {
      for (std::int64_t h = 0; h < heads; ++h) {
        EXPECT_EQ(one.lse[h * len_q + i], whole.lse[h * total_q + q_begin + i]);
        for (std::int64_t c = 0; c < dv; ++c) {
          EXPECT_EQ(one.out[(i * heads + h) * dv + c], whole.out[((q_begin + i) * heads + h) * dv + c]);
        }
      }
    }
    q_begin += len_q;
    k_begin += len_k;
  }
}

TEST(ReferenceInputDType, StaysCloseAndRoundsItsOutputs) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    Config config = small_gradient_config();
    config.dtype = dtype;
    config.causal = true;
    config.softcap = 2.0f;
    const Instance c = make_instance(config);
    const auto exact = reference::forward(c.q.view, c.k.view, c.v.view, c.options, nullptr, Precision::kFloat64);
    const auto naive = reference::forward(c.q.view, c.k.view, c.v.view, c.options, nullptr, Precision::kInputDType);
    const double tolerance = dtype == DType::kFloat32 ? 1e-6 : dtype == DType::kFloat16 ? 1e-2 : 5e-2;
    for (std::size_t i = 0; i < exact.out.size(); ++i) {
      EXPECT_NEAR(naive.out[i], exact.out[i], tolerance) << dtype_name(dtype) << " out " << i;
      EXPECT_EQ(reference::round_to_dtype(static_cast<float>(naive.out[i]), dtype), naive.out[i]);
    }
    for (std::size_t i = 0; i < exact.lse.size(); ++i) {
      EXPECT_NEAR(naive.lse[i], exact.lse[i], tolerance) << dtype_name(dtype) << " lse " << i;
    }
  }
}

TEST(ReferenceForwardRow, MatchesForward) {
  Config config = small_gradient_config();
  config.sequences = {{2, 3}, {4, 5}};
  config.varlen_label = "rows";
  config.window_left = 1;
  config.alibi = Alibi::kPerBatch;
  const Instance c = make_instance(config);
  const auto whole = reference::forward(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), Precision::kFloat64);
  const std::int64_t total_q = c.q.view.shape[0], heads = config.heads_q, dv = config.head_dim_v;
  double lse = 0.0;
  const auto row = reference::forward_row(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), 1, 3, 2, &lse);
  const std::int64_t token = 2 + 2;  // sequence 1 starts after sequence 0's two queries
  EXPECT_EQ(lse, whole.lse[3 * total_q + token]);
  for (std::int64_t c2 = 0; c2 < dv; ++c2) EXPECT_EQ(row[c2], whole.out[(token * heads + 3) * dv + c2]);
  EXPECT_THROW(reference::forward_row(c.q.view, c.k.view, c.v.view, c.options, c.varlen(), 2, 0, 0, &lse),
               std::out_of_range);
}

}  // namespace
}  // namespace flashattn::test
