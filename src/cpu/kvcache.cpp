// The CPU backend of the KV-cache call and of merge_attention_states. Written for clarity over speed:
// decoding problems are small (a few query rows against one cache), so each (sequence, KV head) gathers
// its keys and values once into fp32 rows and every query row of the group runs a plain two-pass softmax
// over them. The inner loops run over channels and are vectorised by the compiler (omp simd).
//
// Rounding, as flash-attn's kernels do: the rotated new keys are computed in fp32 and rounded once to the
// cache's dtype when stored; the rotated query is rounded to the input dtype too before it is used (flash-
// attn rotates q in the input precision before its q.k products), so that a query scores the same whether
// it was rotated here or by the caller. Everything after that accumulates in fp32.
#define FLASHATTN_CPU_VECTOR_BYTES 16  // convert.hpp's SIMD vocabulary needs a width; only its scalars are used

#include "kvcache.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "flashattn/errors.hpp"
#include "kernel/convert.hpp"

namespace flashattn::cpu {
namespace {

using detail::CacheLayout;
using detail::KVCacheProblem;
using detail::KVDType;
using detail::MergeProblem;
using detail::RotaryEmbedding;
using detail::TokenTensor;

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

int thread_count(int requested) { return requested > 0 ? requested : omp_get_max_threads(); }

template <typename T>
T* token_row(const TokenTensor& t, std::int64_t b, std::int64_t token, std::int64_t h) {
  return static_cast<T*>(t.data) + b * t.batch_stride + token * t.token_stride + h * t.head_stride;
}

// Head h of the token at cache position `position` of sequence b (see CacheLayout).
template <typename T>
T* cache_row(const CacheLayout& c, const TokenTensor& t, std::int64_t b, std::int64_t position, std::int64_t h) {
  std::int64_t row = c.cache_batch_idx != nullptr ? c.cache_batch_idx[b] : b;
  std::int64_t slot = position;
  if (c.page_size > 0) {
    row = c.block_table[b * c.block_table_stride + position / c.page_size];
    slot = position % c.page_size;
  }
  return static_cast<T*>(t.data) + row * t.batch_stride + slot * t.token_stride + h * t.head_stride;
}

template <typename T>
void load_floats(const T* src, float* dst, std::int64_t n) {
  for (std::int64_t c = 0; c < n; ++c) dst[c] = to_float(src[c]);
}

// dst = src (head_dim values) with the first rotary_dim channels rotated to `position`, in fp32, unrounded.
template <typename T>
void rotate(const T* src, float* dst, std::int64_t head_dim, const RotaryEmbedding& r, std::int64_t position) {
  load_floats(src, dst, head_dim);
  const T* cos = static_cast<const T*>(r.cos) + position * r.cos_stride;
  const T* sin = static_cast<const T*>(r.sin) + position * r.sin_stride;
  const std::int64_t half = r.rotary_dim / 2;
  // Interleaved pairs are (2i, 2i + 1); otherwise channel i pairs with i + rotary_dim / 2.
  const std::int64_t pair_step = r.interleaved ? 2 : 1;
  const std::int64_t partner_offset = r.interleaved ? 1 : half;
  for (std::int64_t i = 0; i < half; ++i) {
    const std::int64_t first = i * pair_step;
    const float x0 = dst[first];
    const float x1 = dst[first + partner_offset];
    const float c = to_float(cos[i]);
    const float s = to_float(sin[i]);
    dst[first] = x0 * c - x1 * s;
    dst[first + partner_offset] = x0 * s + x1 * c;
  }
}

// Writes the new tokens of (sequence b, KV head h) into the cache, the keys rotated when asked.
template <typename T>
void append(const KVCacheProblem& p, std::int64_t b, std::int64_t h, std::vector<float>& rotated) {
  const std::int64_t cached = p.cache_seqlens[b];
  for (std::int64_t j = 0; j < p.seqlen_new; ++j) {
    const T* k_src = token_row<const T>(p.k_new, b, j, h);
    const T* v_src = token_row<const T>(p.v_new, b, j, h);
    T* k_dst = cache_row<T>(p.cache, p.cache.k, b, cached + j, h);
    T* v_dst = cache_row<T>(p.cache, p.cache.v, b, cached + j, h);
    if (p.rotary.cos != nullptr) {
      rotate(k_src, rotated.data(), p.head_dim, p.rotary, cached + j);
      for (std::int64_t c = 0; c < p.head_dim; ++c) k_dst[c] = from_float<T>(rotated[c]);
    } else {
      std::copy(k_src, k_src + p.head_dim, k_dst);
    }
    std::copy(v_src, v_src + p.head_dim_v, v_dst);
  }
}

// Per-thread scratch: the gathered keys and values of one (sequence, KV head), one query row, its scores.
struct Scratch {
  std::vector<float> keys, values, query, scores, out;
};

// Attention of every query row of (sequence b, KV head kv) over the cache positions [leftpad, end).
template <typename T>
void attend(const KVCacheProblem& p, std::int64_t b, std::int64_t kv, Scratch& s) {
  const std::int64_t d = p.head_dim, dv = p.head_dim_v;
  const std::int64_t cached = p.cache_seqlens[b];
  const std::int64_t leftpad = p.cache_leftpad != nullptr ? p.cache_leftpad[b] : 0;
  const std::int64_t seqlen_k = cached + p.seqlen_new - leftpad;
  for (std::int64_t j = 0; j < seqlen_k; ++j) {
    load_floats(cache_row<const T>(p.cache, p.cache.k, b, leftpad + j, kv), s.keys.data() + j * d, d);
    load_floats(cache_row<const T>(p.cache, p.cache.v, b, leftpad + j, kv), s.values.data() + j * dv, dv);
  }
  const bool rotary = p.rotary.cos != nullptr;
  for (std::int64_t h = kv * p.group_size(); h < (kv + 1) * p.group_size(); ++h) {
    const float slope = p.alibi_slopes != nullptr ? p.alibi_slopes[b * p.alibi_batch_stride + h] : 0.0f;
    for (std::int64_t i = 0; i < p.seqlen_q; ++i) {
      const T* q_src = token_row<const T>(p.q, b, i, h);
      T* out = token_row<T>(p.out, b, i, h);
      float* lse = p.lse.data + b * p.lse.batch_stride + h * p.lse.head_stride + i;
      // The query's key on the diagonal, which causal masks, windows and ALiBi distances are measured from.
      const std::int64_t diagonal = p.bottom_right ? i + seqlen_k - p.seqlen_q : i;
      const std::int64_t first = p.window_left >= 0 ? std::max<std::int64_t>(0, diagonal - p.window_left) : 0;
      const std::int64_t end =
          p.window_right >= 0 ? std::min<std::int64_t>(seqlen_k, diagonal + p.window_right + 1) : seqlen_k;
      if (end <= first) {
        for (std::int64_t c = 0; c < dv; ++c) out[c] = from_float<T>(0.0f);
        *lse = kNegativeInfinity;
        continue;
      }
      float* query = s.query.data();
      if (rotary) {
        rotate(q_src, query, d, p.rotary, p.rotary_per_row() ? cached + i : cached);
        for (std::int64_t c = 0; c < d; ++c) query[c] = to_float(from_float<T>(query[c]));
      } else {
        load_floats(q_src, query, d);
      }

      float max_score = kNegativeInfinity;
      for (std::int64_t j = first; j < end; ++j) {
        const float* key = s.keys.data() + j * d;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (std::int64_t c = 0; c < d; ++c) dot += query[c] * key[c];
        float score = p.softmax_scale * dot;
        if (p.softcap > 0.0f) score = p.softcap * std::tanh(score / p.softcap);
        score -= slope * static_cast<float>(std::abs(diagonal - j));
        s.scores[j - first] = score;
        max_score = std::max(max_score, score);
      }
      std::fill(s.out.begin(), s.out.begin() + dv, 0.0f);
      float sum = 0.0f;
      for (std::int64_t j = first; j < end; ++j) {
        const float weight = std::exp(s.scores[j - first] - max_score);
        sum += weight;
        const float* value = s.values.data() + j * dv;
        float* acc = s.out.data();
#pragma omp simd
        for (std::int64_t c = 0; c < dv; ++c) acc[c] += weight * value[c];
      }
      const float inverse_sum = 1.0f / sum;
      for (std::int64_t c = 0; c < dv; ++c) out[c] = from_float<T>(s.out[c] * inverse_sum);
      *lse = max_score + std::log(sum);
    }
  }
}

template <typename T>
void run_forward_kvcache(const KVCacheProblem& p) {
  const std::int64_t tasks = p.batch * p.heads_kv;
  std::int64_t longest = 0;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t leftpad = p.cache_leftpad != nullptr ? p.cache_leftpad[b] : 0;
    longest = std::max<std::int64_t>(longest, p.cache_seqlens[b] + p.seqlen_new - leftpad);
  }
#pragma omp parallel num_threads(thread_count(p.num_threads))
  {
    std::vector<float> rotated(static_cast<std::size_t>(p.head_dim));
    // Every new token is in the cache before any sequence reads it (pages may be shared between sequences).
#pragma omp for schedule(static)
    for (std::int64_t task = 0; task < tasks; ++task) append<T>(p, task / p.heads_kv, task % p.heads_kv, rotated);

    Scratch scratch;
    scratch.keys.resize(static_cast<std::size_t>(longest * p.head_dim));
    scratch.values.resize(static_cast<std::size_t>(longest * p.head_dim_v));
    scratch.query.resize(static_cast<std::size_t>(p.head_dim));
    scratch.scores.resize(static_cast<std::size_t>(longest));
    scratch.out.resize(static_cast<std::size_t>(p.head_dim_v));
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t task = 0; task < tasks; ++task) attend<T>(p, task / p.heads_kv, task % p.heads_kv, scratch);
  }
}

// One row of a merge operand or result, in any of the three dtypes, as fp32.
void load_row(const void* row, KVDType dtype, float* dst, std::int64_t n) {
  switch (dtype) {
    case KVDType::kFloat32:
      return load_floats(static_cast<const float*>(row), dst, n);
    case KVDType::kFloat16:
      return load_floats(static_cast<const _Float16*>(row), dst, n);
    case KVDType::kBFloat16:
      return load_floats(static_cast<const BFloat16*>(row), dst, n);
  }
}

template <typename T>
void store_floats(const float* src, T* dst, std::int64_t n) {
  for (std::int64_t c = 0; c < n; ++c) dst[c] = from_float<T>(src[c]);
}

void store_row(const float* src, KVDType dtype, void* row, std::int64_t n) {
  switch (dtype) {
    case KVDType::kFloat32:
      return store_floats(src, static_cast<float*>(row), n);
    case KVDType::kFloat16:
      return store_floats(src, static_cast<_Float16*>(row), n);
    case KVDType::kBFloat16:
      return store_floats(src, static_cast<BFloat16*>(row), n);
  }
}

void* merge_row(const TokenTensor& t, KVDType dtype, std::int64_t b, std::int64_t token, std::int64_t h) {
  const std::int64_t offset = b * t.batch_stride + token * t.token_stride + h * t.head_stride;
  const std::size_t element = dtype == KVDType::kFloat32 ? sizeof(float) : sizeof(std::uint16_t);
  return static_cast<char*>(t.data) + offset * static_cast<std::int64_t>(element);
}

float* lse_entry(const detail::LseTensor& t, std::int64_t b, std::int64_t h, std::int64_t token) {
  return t.data + b * t.batch_stride + h * t.head_stride + token;
}

}  // namespace

void forward_kvcache(const KVCacheProblem& problem) {
  switch (problem.dtype) {
    case KVDType::kFloat32:
      return run_forward_kvcache<float>(problem);
    case KVDType::kFloat16:
      return run_forward_kvcache<_Float16>(problem);
    case KVDType::kBFloat16:
      return run_forward_kvcache<BFloat16>(problem);
  }
}

void merge_attention_states(const MergeProblem& p) {
  const std::int64_t rows = p.batch * p.seqlen;
#pragma omp parallel
  {
    std::vector<float> a(static_cast<std::size_t>(p.head_dim)), b_row(a.size());
#pragma omp for schedule(static)
    for (std::int64_t row = 0; row < rows; ++row) {
      const std::int64_t b = row / p.seqlen, t = row % p.seqlen;
      for (std::int64_t h = 0; h < p.heads; ++h) {
        // Both operands are read in full before anything is written: out and lse may alias either of them.
        const float lse_a = *lse_entry(p.lse_a, b, h, t);
        const float lse_b = *lse_entry(p.lse_b, b, h, t);
        load_row(merge_row(p.out_a, p.dtype_a, b, t, h), p.dtype_a, a.data(), p.head_dim);
        load_row(merge_row(p.out_b, p.dtype_b, b, t, h), p.dtype_b, b_row.data(), p.head_dim);
        const float larger = std::max(lse_a, lse_b);
        float lse = kNegativeInfinity;
        if (larger == kNegativeInfinity) {
          std::fill(a.begin(), a.end(), 0.0f);
        } else {
          // log(e^x + e^y) = max + log1p(e^-|x - y|): no overflow, and exact when one side is -inf.
          lse = larger + std::log1p(std::exp(-std::abs(lse_a - lse_b)));
          const float weight_a = std::exp(lse_a - lse);
          const float weight_b = std::exp(lse_b - lse);
          // A side of weight 0 (no key, lse -inf) is left out rather than multiplied: its out may hold anything.
          for (std::int64_t c = 0; c < p.head_dim; ++c) {
            a[c] = (weight_a > 0.0f ? weight_a * a[c] : 0.0f) + (weight_b > 0.0f ? weight_b * b_row[c] : 0.0f);
          }
        }
        store_row(a.data(), p.dtype_out, merge_row(p.out, p.dtype_out, b, t, h), p.head_dim);
        *lse_entry(p.lse, b, h, t) = lse;
      }
    }
  }
}

}  // namespace flashattn::cpu
