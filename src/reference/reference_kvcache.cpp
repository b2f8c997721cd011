// Written for clarity: every index is recomputed from the views, one element at a time.
#include "reference_kvcache.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <stdexcept>

namespace flashattn::reference {
namespace {

constexpr double kNegativeInfinity = -std::numeric_limits<double>::infinity();

double element(const TensorView& t, std::initializer_list<std::int64_t> index) {
  std::int64_t offset = 0;
  int d = 0;
  for (std::int64_t i : index) offset += i * t.strides[d++];
  return load_element(static_cast<const char*>(t.data) + offset * dtype_size(t.dtype), t.dtype);
}

std::int64_t index_at(const TensorView& t, std::int64_t i) { return static_cast<std::int64_t>(element(t, {i})); }

double round_to(double value, DType dtype) {
  double stored = 0.0;  // large enough for any dtype's bytes
  store_element(value, dtype, &stored);
  return load_element(&stored, dtype);
}

// A dense row-major tensor that owns its bytes, for the per-sequence inputs of reference::forward.
struct DenseTensor {
  std::vector<std::byte> bytes;
  TensorView view;

  DenseTensor(DType dtype, std::int64_t d0, std::int64_t d1, std::int64_t d2, std::int64_t d3)
      : bytes(static_cast<std::size_t>(d0 * d1 * d2 * d3) * dtype_size(dtype)) {
    view = TensorView::contiguous(bytes.data(), dtype, {d0, d1, d2, d3});
  }
  void set(std::int64_t token, std::int64_t head, std::int64_t channel, double value) {
    const std::int64_t offset = token * view.strides[1] + head * view.strides[2] + channel;
    store_element(value, view.dtype, bytes.data() + offset * dtype_size(view.dtype));
  }
};

struct Geometry {
  std::int64_t batch = 0, seqlen_q = 0, heads_q = 0, heads_kv = 0, head_dim = 0, head_dim_v = 0;
  std::int64_t seqlen_new = 0;
  std::int64_t page_size = 0;     // 0: contiguous
  std::int64_t cache_tokens = 0;  // dimension 1 of the cache views: seqlen_cache or page_size
};

Geometry describe(const TensorView& q, const KVCache& cache) {
  for (const TensorView* t : {&q, &cache.k_cache, &cache.v_cache}) {
    if (t->device.type != DeviceType::kCPU || t->rank != 4) {
      throw std::invalid_argument("reference::forward_kvcache: q and the caches must be rank-4 host tensors");
    }
  }
  Geometry g;
  g.batch = q.shape[0];
  g.seqlen_q = q.shape[1];
  g.heads_q = q.shape[2];
  g.head_dim = q.shape[3];
  g.heads_kv = cache.k_cache.shape[2];
  g.head_dim_v = cache.v_cache.shape[3];
  g.seqlen_new = cache.k_new ? cache.k_new->shape[1] : 0;
  g.cache_tokens = cache.k_cache.shape[1];
  g.page_size = cache.block_table ? g.cache_tokens : 0;
  return g;
}

// Row-major index, in the cache views, of channel 0 of (sequence b, cache position, KV head h).
std::int64_t cache_index(const KVCache& cache, const Geometry& g, std::int64_t b, std::int64_t position, std::int64_t h,
                         std::int64_t width) {
  std::int64_t row = cache.cache_batch_idx ? index_at(*cache.cache_batch_idx, b) : b;
  std::int64_t slot = position;
  if (cache.block_table) {
    row = static_cast<std::int64_t>(element(*cache.block_table, {b, position / g.page_size}));
    slot = position % g.page_size;
  }
  return ((row * g.cache_tokens + slot) * g.heads_kv + h) * width;
}

CacheContents read_cache(const TensorView& t) {
  CacheContents c;
  for (std::int64_t i0 = 0; i0 < t.shape[0]; ++i0) {
    for (std::int64_t i1 = 0; i1 < t.shape[1]; ++i1) {
      for (std::int64_t i2 = 0; i2 < t.shape[2]; ++i2) {
        for (std::int64_t i3 = 0; i3 < t.shape[3]; ++i3) c.exact.push_back(element(t, {i0, i1, i2, i3}));
      }
    }
  }
  c.rounded = c.exact;
  c.written.assign(c.exact.size(), false);
  c.rotated.assign(c.exact.size(), false);
  c.term_magnitude.assign(c.exact.size(), 0.0);
  return c;
}

// A head_dim row rotated to `position` in the arithmetic of Real (the header's formula), unrounded; also the
// size of each output's two terms. Without rotary the row is returned as it is.
template <typename Real>
std::vector<Real> rotate(const std::vector<double>& row, const KVCache& cache, std::int64_t position,
                         std::vector<double>* term_magnitude = nullptr) {
  std::vector<Real> out(row.begin(), row.end());
  if (term_magnitude != nullptr) term_magnitude->assign(row.size(), 0.0);
  if (!cache.rotary_cos) return out;
  const std::int64_t half = cache.rotary_cos->shape[1];
  for (std::int64_t i = 0; i < half; ++i) {
    const std::int64_t c0 = cache.rotary_interleaved ? 2 * i : i;
    const std::int64_t c1 = cache.rotary_interleaved ? 2 * i + 1 : i + half;
    const Real cos = static_cast<Real>(element(*cache.rotary_cos, {position, i}));
    const Real sin = static_cast<Real>(element(*cache.rotary_sin, {position, i}));
    const Real x0 = static_cast<Real>(row[c0]), x1 = static_cast<Real>(row[c1]);
    out[c0] = x0 * cos - x1 * sin;
    out[c1] = x0 * sin + x1 * cos;
    if (term_magnitude != nullptr) {
      (*term_magnitude)[c0] = std::abs(row[c0] * cos) + std::abs(row[c1] * sin);
      (*term_magnitude)[c1] = std::abs(row[c0] * sin) + std::abs(row[c1] * cos);
    }
  }
  return out;
}

std::vector<double> token_row(const TensorView& t, std::int64_t b, std::int64_t token, std::int64_t h) {
  std::vector<double> row(static_cast<std::size_t>(t.shape[3]));
  for (std::int64_t c = 0; c < t.shape[3]; ++c) row[c] = element(t, {b, token, h, c});
  return row;
}

// The rotated row as the chosen precision sees it: float64, or fp32 arithmetic rounded to the input dtype.
std::vector<double> rotate_in(Precision precision, DType dtype, const std::vector<double>& row, const KVCache& cache,
                              std::int64_t position) {
  if (precision == Precision::kFloat64) return rotate<double>(row, cache, position);
  std::vector<double> rounded;
  for (float x : rotate<float>(row, cache, position)) rounded.push_back(round_to_dtype(x, dtype));
  return rounded;
}

void append(const KVCache& cache, const Geometry& g, std::int64_t b, KVCacheResult& result) {
  const std::int64_t cached = index_at(cache.cache_seqlens, b);
  const DType dtype = cache.k_cache.dtype;
  std::vector<double> magnitude;
  for (std::int64_t j = 0; j < g.seqlen_new; ++j) {
    for (std::int64_t h = 0; h < g.heads_kv; ++h) {
      const std::vector<double> key = rotate<double>(token_row(*cache.k_new, b, j, h), cache, cached + j, &magnitude);
      const std::int64_t k_base = cache_index(cache, g, b, cached + j, h, g.head_dim);
      for (std::int64_t c = 0; c < g.head_dim; ++c) {
        CacheContents& k = result.k_cache;
        k.exact[k_base + c] = key[c];
        k.rounded[k_base + c] = round_to(key[c], dtype);
        k.written[k_base + c] = true;
        k.rotated[k_base + c] = cache.rotary_cos && c < 2 * cache.rotary_cos->shape[1];
        k.term_magnitude[k_base + c] = magnitude[c];
      }
      const std::vector<double> value = token_row(*cache.v_new, b, j, h);
      const std::int64_t v_base = cache_index(cache, g, b, cached + j, h, g.head_dim_v);
      for (std::int64_t c = 0; c < g.head_dim_v; ++c) {
        CacheContents& v = result.v_cache;
        v.exact[v_base + c] = v.rounded[v_base + c] = value[c];
        v.written[v_base + c] = true;
      }
    }
  }
}

// Sequence b's attention: its queries, keys and values as batch-1 dense tensors, then reference::forward.
// The keys before the append come from `contents` (the cache as read, appended to); the new ones are rotated
// in the chosen precision.
void attend(const TensorView& q, const KVCache& cache, const AttentionOptions& options, Precision precision,
            const Geometry& g, std::int64_t b, const KVCacheResult& contents, ForwardResult& out) {
  const std::int64_t cached = index_at(cache.cache_seqlens, b);
  const std::int64_t leftpad = cache.cache_leftpad ? index_at(*cache.cache_leftpad, b) : 0;
  const std::int64_t seqlen_k = cached + g.seqlen_new - leftpad;
  // kFloat64 attends in double whatever the tensors' dtype; kInputDType takes its precision from it.
  const DType dtype = precision == Precision::kFloat64 ? DType::kFloat32 : q.dtype;
  const bool per_row = options.causal || options.window_left >= 0 || options.window_right >= 0;

  DenseTensor queries(dtype, 1, g.seqlen_q, g.heads_q, g.head_dim);
  for (std::int64_t i = 0; i < g.seqlen_q; ++i) {
    for (std::int64_t h = 0; h < g.heads_q; ++h) {
      const auto row = rotate_in(precision, q.dtype, token_row(q, b, i, h), cache, per_row ? cached + i : cached);
      for (std::int64_t c = 0; c < g.head_dim; ++c) queries.set(i, h, c, row[c]);
    }
  }
  DenseTensor keys(dtype, 1, seqlen_k, g.heads_kv, g.head_dim);
  DenseTensor values(dtype, 1, seqlen_k, g.heads_kv, g.head_dim_v);
  for (std::int64_t j = 0; j < seqlen_k; ++j) {
    const std::int64_t position = leftpad + j;
    for (std::int64_t h = 0; h < g.heads_kv; ++h) {
      std::vector<double> key, value;
      if (position < cached) {
        const auto k_old = contents.k_cache.exact.begin() + cache_index(cache, g, b, position, h, g.head_dim);
        const auto v_old = contents.v_cache.exact.begin() + cache_index(cache, g, b, position, h, g.head_dim_v);
        key.assign(k_old, k_old + g.head_dim);
        value.assign(v_old, v_old + g.head_dim_v);
      } else {
        key = rotate_in(precision, q.dtype, token_row(*cache.k_new, b, position - cached, h), cache, position);
        value = token_row(*cache.v_new, b, position - cached, h);
      }
      for (std::int64_t c = 0; c < g.head_dim; ++c) keys.set(j, h, c, key[c]);
      for (std::int64_t c = 0; c < g.head_dim_v; ++c) values.set(j, h, c, value[c]);
    }
  }

  AttentionOptions sequence_options = options;
  if (options.alibi_slopes && options.alibi_slopes->rank == 2) {
    // Per-(batch, head) slopes: sequence b's row, as the slopes of a batch of one.
    TensorView slopes = *options.alibi_slopes;
    slopes.data = static_cast<float*>(slopes.data) + b * slopes.strides[0];
    slopes.shape[0] = 1;
    sequence_options.alibi_slopes = slopes;
  }
  const ForwardResult r = forward(queries.view, keys.view, values.view, sequence_options, nullptr, precision);
  const std::size_t out_block = static_cast<std::size_t>(g.seqlen_q * g.heads_q * g.head_dim_v);
  const std::size_t lse_block = static_cast<std::size_t>(g.heads_q * g.seqlen_q);
  std::copy(r.out.begin(), r.out.end(), out.out.begin() + static_cast<std::ptrdiff_t>(b * out_block));
  std::copy(r.lse.begin(), r.lse.end(), out.lse.begin() + static_cast<std::ptrdiff_t>(b * lse_block));
}

}  // namespace

KVCacheResult forward_kvcache(const TensorView& q, const KVCache& cache, const AttentionOptions& options,
                              Precision precision) {
  const Geometry g = describe(q, cache);
  KVCacheResult result;
  result.k_cache = read_cache(cache.k_cache);
  result.v_cache = read_cache(cache.v_cache);
  result.attention.out.assign(static_cast<std::size_t>(g.batch * g.seqlen_q * g.heads_q * g.head_dim_v), 0.0);
  result.attention.lse.assign(static_cast<std::size_t>(g.batch * g.heads_q * g.seqlen_q), kNegativeInfinity);
  for (std::int64_t b = 0; b < g.batch && cache.k_new; ++b) append(cache, g, b, result);
  for (std::int64_t b = 0; b < g.batch; ++b) attend(q, cache, options, precision, g, b, result, result.attention);
  return result;
}

ForwardResult merge_attention_states(const TensorView& out_a, const TensorView& lse_a, const TensorView& out_b,
                                     const TensorView& lse_b) {
  const bool packed = out_a.rank == 3;
  const std::int64_t batch = packed ? 1 : out_a.shape[0];
  const std::int64_t seqlen = out_a.shape[out_a.rank - 3];
  const std::int64_t heads = out_a.shape[out_a.rank - 2];
  const std::int64_t head_dim = out_a.shape[out_a.rank - 1];
  const auto lse_at = [packed](const TensorView& t, std::int64_t b, std::int64_t h, std::int64_t s) {
    return packed ? element(t, {h, s}) : element(t, {b, h, s});
  };
  const auto out_at = [packed](const TensorView& t, std::int64_t b, std::int64_t s, std::int64_t h, std::int64_t c) {
    return packed ? element(t, {s, h, c}) : element(t, {b, s, h, c});
  };
  ForwardResult result;
  result.out.assign(static_cast<std::size_t>(batch * seqlen * heads * head_dim), 0.0);
  result.lse.assign(static_cast<std::size_t>(batch * heads * seqlen), kNegativeInfinity);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t s = 0; s < seqlen; ++s) {
      for (std::int64_t h = 0; h < heads; ++h) {
        const double la = lse_at(lse_a, b, h, s), lb = lse_at(lse_b, b, h, s);
        if (la == kNegativeInfinity && lb == kNegativeInfinity) continue;
        const double larger = std::max(la, lb);
        const double lse = larger + std::log(std::exp(la - larger) + std::exp(lb - larger));
        result.lse[(b * heads + h) * seqlen + s] = lse;
        for (std::int64_t c = 0; c < head_dim; ++c) {
          double value = 0.0;
          if (la != kNegativeInfinity) value += std::exp(la - lse) * out_at(out_a, b, s, h, c);
          if (lb != kNegativeInfinity) value += std::exp(lb - lse) * out_at(out_b, b, s, h, c);
          result.out[((b * seqlen + s) * heads + h) * head_dim + c] = value;
        }
      }
    }
  }
  return result;
}

}  // namespace flashattn::reference
