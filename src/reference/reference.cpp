// The reference follows the documented semantics step by step, one score row at a time; it is written
// for clarity, not speed, and shares nothing with the backends so that their bugs cannot hide in it.
#include "reference.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace flashattn::reference {
namespace {

// IEEE binary16 and bfloat16 bit layouts.
constexpr std::uint32_t kFloatAbsMask = 0x7fffffffu;
constexpr std::uint32_t kFloatInfBits = 0x7f800000u;
constexpr std::uint32_t kHalfSignBit = 0x8000u;
constexpr std::uint32_t kHalfInfBits = 0x7c00u;
constexpr std::uint32_t kHalfQuietNan = 0x7e00u;
constexpr int kHalfMantissaBits = 10;
constexpr int kHalfExponentBias = 15;
constexpr int kFloatMantissaBits = 23;
constexpr int kFloatExponentBias = 127;
constexpr int kHalfSubnormalExponent = -24;                // value of the lowest mantissa bit of a subnormal half
constexpr std::uint32_t kHalfOverflowBits = 0x477ff000u;   // 65520.0f: rounds to infinity in fp16
constexpr std::uint32_t kHalfMinNormalBits = 0x38800000u;  // 2^-14.0f: the smallest normal fp16
constexpr int kMantissaDropBits = kFloatMantissaBits - kHalfMantissaBits;
constexpr std::uint32_t kBFloat16QuietNan = 0x7fc0u;
constexpr int kBFloat16Shift = 16;

std::uint16_t float_to_half_bits(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t sign = (bits >> 16) & kHalfSignBit;
  const std::uint32_t magnitude = bits & kFloatAbsMask;
  if (magnitude > kFloatInfBits) return static_cast<std::uint16_t>(sign | kHalfQuietNan);
  if (magnitude >= kHalfOverflowBits) return static_cast<std::uint16_t>(sign | kHalfInfBits);
  if (magnitude < kHalfMinNormalBits) {
    // Subnormal: count units of 2^-24 (exact in float), rounding to nearest even.
    const float units = std::nearbyint(std::ldexp(std::bit_cast<float>(magnitude), -kHalfSubnormalExponent));
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(units));
  }
  const std::uint32_t exponent = (magnitude >> kFloatMantissaBits) - kFloatExponentBias + kHalfExponentBias;
  const std::uint32_t mantissa = magnitude & ((1u << kFloatMantissaBits) - 1);
  std::uint32_t half = (exponent << kHalfMantissaBits) | (mantissa >> kMantissaDropBits);
  const std::uint32_t dropped = mantissa & ((1u << kMantissaDropBits) - 1);
  const std::uint32_t halfway = 1u << (kMantissaDropBits - 1);
  // A carry out of the mantissa correctly bumps the exponent.
  if (dropped > halfway || (dropped == halfway && (half & 1u) != 0)) ++half;
  return static_cast<std::uint16_t>(sign | half);
}

float half_bits_to_float(std::uint16_t bits) {
  const bool negative = (bits & kHalfSignBit) != 0;
  const int exponent = (bits >> kHalfMantissaBits) & 0x1f;
  const int mantissa = bits & ((1 << kHalfMantissaBits) - 1);
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), kHalfSubnormalExponent);
  } else if (exponent == 0x1f) {
    magnitude = mantissa == 0 ? std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
  } else {
    const int implicit_one = 1 << kHalfMantissaBits;
    magnitude =
        std::ldexp(static_cast<float>(implicit_one + mantissa), exponent - kHalfExponentBias - kHalfMantissaBits);
  }
  return negative ? -magnitude : magnitude;
}

std::uint16_t float_to_bfloat16_bits(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  if ((bits & kFloatAbsMask) > kFloatInfBits) {
    return static_cast<std::uint16_t>((bits >> kBFloat16Shift) | kBFloat16QuietNan);
  }
  // Round to nearest even on the dropped low half; overflow carries into infinity as it should.
  const std::uint32_t lsb = (bits >> kBFloat16Shift) & 1u;
  return static_cast<std::uint16_t>((bits + 0x7fffu + lsb) >> kBFloat16Shift);
}

float bfloat16_bits_to_float(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << kBFloat16Shift);
}

// ---- Reading the problem from the views ------------------------------------------------------------

std::int32_t load_index(const TensorView& t, std::int64_t i) {
  return static_cast<const std::int32_t*>(t.data)[i * t.strides[0]];
}

// Reads element (b, token, head, channel) of a rank-4 batched or rank-3 packed view; `token` indexes the
// view's token dimension (for packed layouts it already includes the sequence's first token).
class TokenReader {
 public:
  TokenReader(const TensorView& view, bool varlen)
      : view_(view),
        batch_stride_(varlen ? 0 : view.strides[0]),
        token_stride_(view.strides[varlen ? 0 : 1]),
        head_stride_(view.strides[view.rank - 2]),
        channel_stride_(view.strides[view.rank - 1]) {}

  double at(std::int64_t b, std::int64_t token, std::int64_t head, std::int64_t channel) const {
    const std::int64_t offset =
        b * batch_stride_ + token * token_stride_ + head * head_stride_ + channel * channel_stride_;
    return load_element(static_cast<const char*>(view_.data) + offset * dtype_size(view_.dtype), view_.dtype);
  }

 private:
  const TensorView& view_;
  std::int64_t batch_stride_, token_stride_, head_stride_, channel_stride_;
};

// One sequence: where its tokens sit in the views and in the dense results.
struct Span {
  std::int64_t b = 0;
  std::int64_t q_token = 0;  // first query token in the view's token dimension (0 when batched)
  std::int64_t k_token = 0;
  std::int64_t q_row = 0;  // first query row of the dense results (b * seqlen_q when batched)
  std::int64_t k_row = 0;
  std::int64_t seqlen_q = 0;
  std::int64_t seqlen_k = 0;  // keys used
};

struct Geometry {
  bool varlen = false;
  std::int64_t heads_q = 0, heads_kv = 0, head_dim = 0, head_dim_v = 0;
  std::int64_t rows_q = 0, rows_k = 0;  // token rows of the dense results
  std::int64_t batched_seqlen_q = 0;
  std::vector<Span> spans;

  std::int64_t group_size() const { return heads_q / heads_kv; }
  std::size_t lse_index(const Span& s, std::int64_t h, std::int64_t i) const {
    return static_cast<std::size_t>(varlen ? h * rows_q + s.q_row + i : (s.b * heads_q + h) * batched_seqlen_q + i);
  }
};

Geometry describe(const TensorView& q, const TensorView& k, const TensorView& v, const VarlenSeqlens* varlen) {
  for (const TensorView* t : {&q, &k, &v}) {
    if (t->device.type != DeviceType::kCPU) throw std::invalid_argument("reference: tensors must be on the CPU");
    if (t->rank != (varlen != nullptr ? 3 : 4)) throw std::invalid_argument("reference: unexpected tensor rank");
  }
  Geometry g;
  g.varlen = varlen != nullptr;
  g.heads_q = q.shape[q.rank - 2];
  g.heads_kv = k.shape[k.rank - 2];
  g.head_dim = q.shape[q.rank - 1];
  g.head_dim_v = v.shape[v.rank - 1];
  if (g.heads_kv <= 0 || g.heads_q % g.heads_kv != 0) throw std::invalid_argument("reference: bad head counts");
  if (!g.varlen) {
    const std::int64_t batch = q.shape[0];
    g.batched_seqlen_q = q.shape[1];
    g.rows_q = batch * q.shape[1];
    g.rows_k = batch * k.shape[1];
    for (std::int64_t b = 0; b < batch; ++b) {
      g.spans.push_back({b, 0, 0, b * q.shape[1], b * k.shape[1], q.shape[1], k.shape[1]});
    }
    return g;
  }
  g.rows_q = q.shape[0];
  g.rows_k = k.shape[0];
  const std::int64_t batch = varlen->cu_seqlens_q.shape[0] - 1;
  for (std::int64_t b = 0; b < batch; ++b) {
    Span s;
    s.b = b;
    s.q_token = s.q_row = load_index(varlen->cu_seqlens_q, b);
    s.k_token = s.k_row = load_index(varlen->cu_seqlens_k, b);
    s.seqlen_q = load_index(varlen->cu_seqlens_q, b + 1) - s.q_token;
    s.seqlen_k =
        varlen->seqused_k ? load_index(*varlen->seqused_k, b) : load_index(varlen->cu_seqlens_k, b + 1) - s.k_token;
    g.spans.push_back(s);
  }
  return g;
}

// ---- Arithmetic -----------------------------------------------------------------------------------

// The compute type Real and where results are rounded to the input's storage type (PyTorch eager
// attention in fp16/bf16: every matmul, the probabilities and each gradient product).
template <typename Real>
struct Arithmetic {
  DType storage = DType::kFloat32;
  bool rounds_products = false;
  // Eager attention differentiates the softmax as P * (dP - sum(P * dP)); the float64 ground truth uses
  // the equal D = dout . out as flash-attn does.
  bool eager_softmax_backward = false;

  Real product(Real x) const {
    return rounds_products ? static_cast<Real>(round_to_dtype(static_cast<float>(x), storage)) : x;
  }
};

// Everything a score row needs besides the data.
template <typename Real>
struct RowSetup {
  std::int64_t seqlen_q = 0, seqlen_k = 0, head_dim = 0;
  Real scale = 0;
  Real softcap = 0;
  Real alibi_slope = 0;
  CausalAlignment alignment = CausalAlignment::kBottomRight;
  std::int64_t window_left = -1, window_right = -1;  // causal already folded into window_right
};

template <typename Real>
RowSetup<Real> row_setup(const AttentionOptions& options, const Geometry& g, const Span& s, std::int64_t h) {
  RowSetup<Real> r;
  r.seqlen_q = s.seqlen_q;
  r.seqlen_k = s.seqlen_k;
  r.head_dim = g.head_dim;
  r.scale = options.softmax_scale ? static_cast<Real>(*options.softmax_scale)
                                  : Real{1} / std::sqrt(static_cast<Real>(g.head_dim));
  r.softcap = static_cast<Real>(options.softcap);
  if (options.alibi_slopes) {
    const TensorView& slopes = *options.alibi_slopes;
    const std::int64_t offset =
        slopes.rank == 1 ? h * slopes.strides[0] : s.b * slopes.strides[0] + h * slopes.strides[1];
    r.alibi_slope = static_cast<Real>(static_cast<const float*>(slopes.data)[offset]);
  }
  r.alignment = options.causal_alignment;
  r.window_left = options.window_left;
  r.window_right = options.causal ? 0 : options.window_right;
  return r;
}

// The probabilities of one query row over its visible keys [first, first + p.size()).
template <typename Real>
struct ScoreRow {
  std::int64_t first = 0;
  std::vector<Real> p;
  std::vector<Real> capped_tanh;  // tanh(s / softcap) of each visible key, for the softcap gradient
  Real lse = -std::numeric_limits<Real>::infinity();
};

template <typename Real>
void score_row(const RowSetup<Real>& r, const Arithmetic<Real>& arith, const Real* q_row, const std::vector<Real>& keys,
               std::int64_t i, ScoreRow<Real>& row) {
  const std::int64_t diagonal = r.alignment == CausalAlignment::kBottomRight ? i + r.seqlen_k - r.seqlen_q : i;
  const std::int64_t first = r.window_left >= 0 ? std::max<std::int64_t>(0, diagonal - r.window_left) : 0;
  const std::int64_t end =
      r.window_right >= 0 ? std::min<std::int64_t>(r.seqlen_k, diagonal + r.window_right + 1) : r.seqlen_k;
  row.first = first;
  row.p.clear();
  row.capped_tanh.clear();
  row.lse = -std::numeric_limits<Real>::infinity();
  if (end <= first) return;

  std::vector<Real>& scores = row.p;
  Real max_score = -std::numeric_limits<Real>::infinity();
  for (std::int64_t j = first; j < end; ++j) {
    const Real* key = keys.data() + j * r.head_dim;
    Real dot = 0;
    for (std::int64_t c = 0; c < r.head_dim; ++c) dot += q_row[c] * key[c];
    Real s = r.scale * arith.product(dot);
    if (r.softcap > 0) {
      const Real t = std::tanh(s / r.softcap);
      row.capped_tanh.push_back(t);
      s = r.softcap * t;
    }
    s -= r.alibi_slope * static_cast<Real>(std::abs(diagonal - j));
    scores.push_back(s);
    max_score = std::max(max_score, s);
  }
  Real sum = 0;
  for (Real& s : scores) {
    s = std::exp(s - max_score);
    sum += s;
  }
  for (Real& s : scores) s = arith.product(s / sum);
  row.lse = max_score + std::log(sum);
}

// One (sequence, KV head) slice of the inputs in the compute type, rows of `width` values.
template <typename Real>
std::vector<Real> load_rows(const TokenReader& reader, std::int64_t b, std::int64_t first_token, std::int64_t rows,
                            std::int64_t head, std::int64_t width) {
  std::vector<Real> data(static_cast<std::size_t>(rows * width));
  for (std::int64_t t = 0; t < rows; ++t) {
    for (std::int64_t c = 0; c < width; ++c) {
      data[t * width + c] = static_cast<Real>(reader.at(b, first_token + t, head, c));
    }
  }
  return data;
}

struct Inputs {
  TokenReader q, k, v;
};

template <typename Real>
ForwardResult forward_in(const Inputs& in, const Geometry& g, const AttentionOptions& options,
                         const Arithmetic<Real>& arith) {
  ForwardResult result;
  result.out.assign(static_cast<std::size_t>(g.rows_q * g.heads_q * g.head_dim_v), 0.0);
  result.lse.assign(static_cast<std::size_t>(g.rows_q * g.heads_q), 0.0);
  ScoreRow<Real> row;
  std::vector<Real> out_row(static_cast<std::size_t>(g.head_dim_v));
  for (const Span& s : g.spans) {
    for (std::int64_t kv = 0; kv < g.heads_kv; ++kv) {
      const auto keys = load_rows<Real>(in.k, s.b, s.k_token, s.seqlen_k, kv, g.head_dim);
      const auto values = load_rows<Real>(in.v, s.b, s.k_token, s.seqlen_k, kv, g.head_dim_v);
      for (std::int64_t h = kv * g.group_size(); h < (kv + 1) * g.group_size(); ++h) {
        const auto setup = row_setup<Real>(options, g, s, h);
        const auto queries = load_rows<Real>(in.q, s.b, s.q_token, s.seqlen_q, h, g.head_dim);
        for (std::int64_t i = 0; i < s.seqlen_q; ++i) {
          score_row(setup, arith, queries.data() + i * g.head_dim, keys, i, row);
          std::fill(out_row.begin(), out_row.end(), Real{0});
          for (std::size_t n = 0; n < row.p.size(); ++n) {
            const Real* value = values.data() + (row.first + static_cast<std::int64_t>(n)) * g.head_dim_v;
            for (std::int64_t c = 0; c < g.head_dim_v; ++c) out_row[c] += row.p[n] * value[c];
          }
          double* out = result.out.data() + ((s.q_row + i) * g.heads_q + h) * g.head_dim_v;
          for (std::int64_t c = 0; c < g.head_dim_v; ++c) out[c] = arith.product(out_row[c]);
          result.lse[g.lse_index(s, h, i)] = static_cast<double>(row.lse);
        }
      }
    }
  }
  return result;
}

template <typename Real>
BackwardResult backward_in(const Inputs& in, const TokenReader& dout_reader, const Geometry& g,
                           const AttentionOptions& options, const Arithmetic<Real>& arith) {
  BackwardResult result;
  result.dq.assign(static_cast<std::size_t>(g.rows_q * g.heads_q * g.head_dim), 0.0);
  result.dk.assign(static_cast<std::size_t>(g.rows_k * g.heads_kv * g.head_dim), 0.0);
  result.dv.assign(static_cast<std::size_t>(g.rows_k * g.heads_kv * g.head_dim_v), 0.0);
  const std::int64_t d = g.head_dim, dv = g.head_dim_v;
  ScoreRow<Real> row;
  std::vector<Real> out_row(static_cast<std::size_t>(dv)), dp, ds, dq_row(static_cast<std::size_t>(d));
  for (const Span& s : g.spans) {
    for (std::int64_t kv = 0; kv < g.heads_kv; ++kv) {
      const auto keys = load_rows<Real>(in.k, s.b, s.k_token, s.seqlen_k, kv, d);
      const auto values = load_rows<Real>(in.v, s.b, s.k_token, s.seqlen_k, kv, dv);
      // Summed over the group's query heads, rounded once at the end.
      std::vector<Real> dk_sum(keys.size(), Real{0}), dv_sum(values.size(), Real{0});
      for (std::int64_t h = kv * g.group_size(); h < (kv + 1) * g.group_size(); ++h) {
        const auto setup = row_setup<Real>(options, g, s, h);
        const auto queries = load_rows<Real>(in.q, s.b, s.q_token, s.seqlen_q, h, d);
        const auto douts = load_rows<Real>(dout_reader, s.b, s.q_token, s.seqlen_q, h, dv);
        for (std::int64_t i = 0; i < s.seqlen_q; ++i) {
          const Real* q_row = queries.data() + i * d;
          const Real* dout_row = douts.data() + i * dv;
          score_row(setup, arith, q_row, keys, i, row);
          const std::size_t visible = row.p.size();
          dp.assign(visible, Real{0});
          std::fill(out_row.begin(), out_row.end(), Real{0});
          for (std::size_t n = 0; n < visible; ++n) {
            const Real* value = values.data() + (row.first + static_cast<std::int64_t>(n)) * dv;
            Real dot = 0;
            for (std::int64_t c = 0; c < dv; ++c) {
              dot += dout_row[c] * value[c];
              out_row[c] += row.p[n] * value[c];
            }
            dp[n] = arith.product(dot);
          }
          Real row_dot = 0;  // D_i
          if (arith.eager_softmax_backward) {
            for (std::size_t n = 0; n < visible; ++n) row_dot += row.p[n] * dp[n];
          } else {
            for (std::int64_t c = 0; c < dv; ++c) row_dot += dout_row[c] * out_row[c];
          }
          ds.assign(visible, Real{0});
          for (std::size_t n = 0; n < visible; ++n) {
            Real grad = row.p[n] * (dp[n] - row_dot);
            if (setup.softcap > 0) grad *= Real{1} - row.capped_tanh[n] * row.capped_tanh[n];
            ds[n] = arith.product(grad * setup.scale);
          }
          std::fill(dq_row.begin(), dq_row.end(), Real{0});
          for (std::size_t n = 0; n < visible; ++n) {
            const std::int64_t j = row.first + static_cast<std::int64_t>(n);
            const Real* key = keys.data() + j * d;
            for (std::int64_t c = 0; c < d; ++c) {
              dq_row[c] += ds[n] * key[c];
              dk_sum[j * d + c] += ds[n] * q_row[c];
            }
            for (std::int64_t c = 0; c < dv; ++c) dv_sum[j * dv + c] += row.p[n] * dout_row[c];
          }
          double* dq = result.dq.data() + ((s.q_row + i) * g.heads_q + h) * d;
          for (std::int64_t c = 0; c < d; ++c) dq[c] = arith.product(dq_row[c]);
        }
      }
      for (std::int64_t j = 0; j < s.seqlen_k; ++j) {
        double* dk = result.dk.data() + ((s.k_row + j) * g.heads_kv + kv) * d;
        double* dvo = result.dv.data() + ((s.k_row + j) * g.heads_kv + kv) * dv;
        for (std::int64_t c = 0; c < d; ++c) dk[c] = arith.product(dk_sum[j * d + c]);
        for (std::int64_t c = 0; c < dv; ++c) dvo[c] = arith.product(dv_sum[j * dv + c]);
      }
    }
  }
  return result;
}

Arithmetic<float> input_dtype_arithmetic(DType dtype) {
  Arithmetic<float> arith;
  arith.storage = dtype;
  arith.rounds_products = dtype != DType::kFloat32;
  arith.eager_softmax_backward = true;
  return arith;
}

}  // namespace

double load_element(const void* element, DType dtype) {
  switch (dtype) {
    case DType::kFloat32: {
      float value;
      std::memcpy(&value, element, sizeof value);
      return value;
    }
    case DType::kFloat16:
    case DType::kBFloat16: {
      std::uint16_t bits;
      std::memcpy(&bits, element, sizeof bits);
      return dtype == DType::kFloat16 ? half_bits_to_float(bits) : bfloat16_bits_to_float(bits);
    }
    case DType::kInt32: {
      std::int32_t value;
      std::memcpy(&value, element, sizeof value);
      return value;
    }
    case DType::kFloat8E4M3:
      break;
  }
  throw std::invalid_argument(std::string("reference: cannot read dtype ") + dtype_name(dtype));
}

void store_element(double value, DType dtype, void* element) {
  switch (dtype) {
    case DType::kFloat32: {
      const float narrowed = static_cast<float>(value);
      std::memcpy(element, &narrowed, sizeof narrowed);
      return;
    }
    case DType::kFloat16:
    case DType::kBFloat16: {
      const float narrowed = static_cast<float>(value);
      const std::uint16_t bits =
          dtype == DType::kFloat16 ? float_to_half_bits(narrowed) : float_to_bfloat16_bits(narrowed);
      std::memcpy(element, &bits, sizeof bits);
      return;
    }
    case DType::kInt32: {
      const auto integer = static_cast<std::int32_t>(value);
      std::memcpy(element, &integer, sizeof integer);
      return;
    }
    case DType::kFloat8E4M3:
      break;
  }
  throw std::invalid_argument(std::string("reference: cannot write dtype ") + dtype_name(dtype));
}

float round_to_dtype(float value, DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return half_bits_to_float(float_to_half_bits(value));
    case DType::kBFloat16:
      return bfloat16_bits_to_float(float_to_bfloat16_bits(value));
    default:
      return value;
  }
}

ForwardResult forward(const TensorView& q, const TensorView& k, const TensorView& v, const AttentionOptions& options,
                      const VarlenSeqlens* varlen, Precision precision) {
  const Geometry g = describe(q, k, v, varlen);
  const Inputs in{TokenReader(q, g.varlen), TokenReader(k, g.varlen), TokenReader(v, g.varlen)};
  if (precision == Precision::kFloat64) return forward_in(in, g, options, Arithmetic<double>{});
  return forward_in(in, g, options, input_dtype_arithmetic(q.dtype));
}

BackwardResult backward(const TensorView& q, const TensorView& k, const TensorView& v, const TensorView& dout,
                        const AttentionOptions& options, const VarlenSeqlens* varlen, Precision precision) {
  const Geometry g = describe(q, k, v, varlen);
  const Inputs in{TokenReader(q, g.varlen), TokenReader(k, g.varlen), TokenReader(v, g.varlen)};
  const TokenReader dout_reader(dout, g.varlen);
  if (precision == Precision::kFloat64) return backward_in(in, dout_reader, g, options, Arithmetic<double>{});
  return backward_in(in, dout_reader, g, options, input_dtype_arithmetic(q.dtype));
}

std::vector<double> forward_row(const TensorView& q, const TensorView& k, const TensorView& v,
                                const AttentionOptions& options, const VarlenSeqlens* varlen, std::int64_t b,
                                std::int64_t h, std::int64_t i, double* lse) {
  const Geometry g = describe(q, k, v, varlen);
  if (b < 0 || b >= static_cast<std::int64_t>(g.spans.size()) || h < 0 || h >= g.heads_q || i < 0 ||
      i >= g.spans[b].seqlen_q) {
    throw std::out_of_range("reference::forward_row: row (" + std::to_string(b) + ", " + std::to_string(h) + ", " +
                            std::to_string(i) + ") is outside the problem");
  }
  const Span& s = g.spans[b];
  const std::int64_t kv = h / g.group_size();
  const TokenReader q_reader(q, g.varlen), k_reader(k, g.varlen), v_reader(v, g.varlen);
  const auto keys = load_rows<double>(k_reader, s.b, s.k_token, s.seqlen_k, kv, g.head_dim);
  const auto values = load_rows<double>(v_reader, s.b, s.k_token, s.seqlen_k, kv, g.head_dim_v);
  const auto query = load_rows<double>(q_reader, s.b, s.q_token + i, 1, h, g.head_dim);
  ScoreRow<double> row;
  score_row(row_setup<double>(options, g, s, h), Arithmetic<double>{}, query.data(), keys, i, row);
  std::vector<double> out(static_cast<std::size_t>(g.head_dim_v), 0.0);
  for (std::size_t n = 0; n < row.p.size(); ++n) {
    const double* value = values.data() + (row.first + static_cast<std::int64_t>(n)) * g.head_dim_v;
    for (std::int64_t c = 0; c < g.head_dim_v; ++c) out[c] += row.p[n] * value[c];
  }
  if (lse != nullptr) *lse = row.lse;
  return out;
}

}  // namespace flashattn::reference
