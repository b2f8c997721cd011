// Backward kernel: one task = a range of keys of one (batch, KV head), with every query head of its group.
// Per key tile, K, K^T, V^T and the dK, dV accumulators stay resident while the query tiles stream:
//   S = Q K^T,  P = exp2(S - lse),  dV += P^T dO,  dP = dO V^T,  dS = P (dP - D) scale [softcap'],
//   dK += dS^T Q,  dQ_partial += dS K
// D = rowsum(dO * O) comes from a pre-pass; dQ partials of the key chunks are summed at the end in a fixed
// order, so the result does not depend on the thread count's scheduling.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernel/convert.hpp"
#include "kernel/gemm.hpp"
#include "kernel/mask.hpp"
#include "kernel/pack.hpp"
#include "kernel/score_mod.hpp"
#include "kernel/simd.hpp"
#include "kernel/tensor_access.hpp"
#include "plan.hpp"
#include "tiles.hpp"

namespace flashattn::cpu {
namespace {

inline constexpr std::int64_t kGradQueryTile = kBackwardQueryTile;
inline constexpr std::int64_t kGradKeyTile = kBackwardKeyTile;
static_assert(kGradKeyTile % kLanes == 0, "the key tile is the vector axis of the score tile");

struct BackwardScratch {
  float* k_rows;        // kGradKeyTile x d_pad
  float* k_t;           // d x kGradKeyTile
  float* v_t;           // dv x kGradKeyTile
  float* dk;            // kGradKeyTile x d_pad
  float* dv;            // kGradKeyTile x dv_pad
  float* probs;         // kGradQueryTile x kGradKeyTile
  float* dscores;       // kGradQueryTile x kGradKeyTile
  float* softcap_grad;  // kGradQueryTile x kGradKeyTile

  static std::int64_t floats(std::int64_t d_pad, std::int64_t dv_pad) {
    return kGradKeyTile * d_pad * 3 + kGradKeyTile * dv_pad * 2 + 3 * kGradQueryTile * kGradKeyTile;
  }
  static BackwardScratch carve(float* p, std::int64_t d_pad, std::int64_t dv_pad) {
    BackwardScratch s;
    s.k_rows = p;
    s.k_t = s.k_rows + kGradKeyTile * d_pad;
    s.v_t = s.k_t + kGradKeyTile * d_pad;
    s.dk = s.v_t + kGradKeyTile * dv_pad;
    s.dv = s.dk + kGradKeyTile * d_pad;
    s.probs = s.dv + kGradKeyTile * dv_pad;
    s.dscores = s.probs + kGradQueryTile * kGradKeyTile;
    s.softcap_grad = s.dscores + kGradQueryTile * kGradKeyTile;
    return s;
  }
};

// Probabilities of one query tile against the resident key tile, recomputed from the saved lse.
inline void recompute_probs(const ScoreMod& mod, const MaskPolicy& mask, const float* lse, float* probs,
                            float* softcap_grad, std::int64_t row_begin, std::int64_t rows, std::int64_t key_begin,
                            std::int64_t keys, bool needs_mask) {
  const bool fast = !needs_mask && mod.plain() && keys == kGradKeyTile;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t row = row_begin + r;
    // lse = -inf marks a row that saw no key: subtracting +inf turns every probability into 0.
    const float lse2 = lse[row] == kNegInf ? __builtin_inff() : lse[row] * kLog2e;
    float* p = probs + r * kGradKeyTile;
    if (fast) {
      for (std::int64_t t = 0; t < kGradKeyTile; t += kLanes) store(p + t, exp2(mod.apply_plain(load(p + t)) - lse2));
      continue;
    }
    const int visible_begin = static_cast<int>(std::clamp<std::int64_t>(mask.first_key(row) - key_begin, 0, keys));
    const int visible_end = static_cast<int>(std::clamp<std::int64_t>(mask.end_key(row) - key_begin, 0, keys));
    const float distance = static_cast<float>(mask.diagonal(row) - key_begin);
    for (std::int64_t t = 0; t < kGradKeyTile; t += kLanes) {
      const int lane0 = static_cast<int>(t);
      float* grad = mod.softcap != 0.0f ? softcap_grad + r * kGradKeyTile + t : nullptr;
      const VecF x = mod.apply(load(p + t), visible_begin - lane0, visible_end - lane0,
                               distance - static_cast<float>(t), -1.0f, grad);
      store(p + t, exp2(x - lse2));
    }
  }
}

// dS = P (dP - D) * scale * softcap', in place of dP.
inline void score_grads(const ScoreMod& mod, const float* probs, const float* softcap_grad, const float* delta,
                        float* dscores, std::int64_t row_begin, std::int64_t rows) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float d_row = delta[row_begin + r];
    for (std::int64_t t = 0; t < kGradKeyTile; t += kLanes) {
      const std::int64_t at = r * kGradKeyTile + t;
      VecF ds = load(probs + at) * (load(dscores + at) - d_row) * mod.scale;
      if (mod.softcap != 0.0f) ds *= load(softcap_grad + at);
      store(dscores + at, ds);
    }
  }
}

template <typename T>
void backward_task(const detail::Problem& p, const BackwardPlan& plan, const BackwardTask& task,
                   const BackwardScratch& scratch) {
  const detail::SequenceSpan seq = p.sequence(task.batch);
  const MaskPolicy mask = MaskPolicy::of(p, seq);
  const std::int64_t d = p.head_dim;
  const std::int64_t dv = p.head_dim_v;
  const std::int64_t d_pad = round_up(d, kLanes);
  const std::int64_t dv_pad = round_up(dv, kLanes);
  const auto k = head_rows<const T>(p.k, task.batch, seq.k_begin, task.kv_head);
  const auto v = head_rows<const T>(p.v, task.batch, seq.k_begin, task.kv_head);
  const auto dk = head_rows<T>(p.dk, task.batch, seq.k_begin, task.kv_head);
  const auto dv_out = head_rows<T>(p.dv, task.batch, seq.k_begin, task.kv_head);
  const std::int64_t row_base = plan.row_base[task.batch];

  for (std::int64_t key_begin = task.key_begin; key_begin < task.key_end; key_begin += kGradKeyTile) {
    const std::int64_t keys = std::min(kGradKeyTile, task.key_end - key_begin);
    fill(scratch.k_t, d * kGradKeyTile, 0.0f);
    fill(scratch.v_t, dv * kGradKeyTile, 0.0f);
    for (std::int64_t j = 0; j < keys; ++j) {
      float* k_row = scratch.k_rows + j * d_pad;
      load_row(k.row(key_begin + j), k_row, d, d_pad);
      for (std::int64_t c = 0; c < d; ++c) scratch.k_t[c * kGradKeyTile + j] = k_row[c];
      const T* v_row = v.row(key_begin + j);
      for (std::int64_t c = 0; c < dv; ++c) scratch.v_t[c * kGradKeyTile + j] = to_float(v_row[c]);
    }
    fill(scratch.dk, keys * d_pad, 0.0f);
    fill(scratch.dv, keys * dv_pad, 0.0f);

    const std::int64_t rows_end = mask.end_row_of_keys(key_begin + keys);
    for (std::int64_t g = 0; g < p.group_size(); ++g) {
      const std::int64_t head = task.kv_head * p.group_size() + g;
      const float* lse = lse_row(p, task.batch, seq.q_begin, head);
      const float* delta = plan.delta.data() + head * plan.rows_total + row_base;
      const ScoreMod mod{p.softmax_scale, p.softcap, p.alibi_slope(task.batch, head)};
      for (std::int64_t row_begin = mask.first_row_of_keys(key_begin); row_begin < rows_end;
           row_begin += kGradQueryTile) {
        const std::int64_t rows = std::min(kGradQueryTile, rows_end - row_begin);
        const float* q_rows = plan.q.row(head, row_base + row_begin);
        const float* do_rows = plan.dout.row(head, row_base + row_begin);
        gemm(rows, kGradKeyTile, d, {q_rows, plan.q.ld, 1}, scratch.k_t, kGradKeyTile, scratch.probs, kGradKeyTile,
             false);
        recompute_probs(mod, mask, lse, scratch.probs, scratch.softcap_grad, row_begin, rows, key_begin, keys,
                        mask.tile_needs_mask(row_begin, row_begin + rows, key_begin, key_begin + keys));
        gemm(keys, dv_pad, rows, {scratch.probs, 1, kGradKeyTile}, do_rows, plan.dout.ld, scratch.dv, dv_pad, true);
        gemm(rows, kGradKeyTile, dv, {do_rows, plan.dout.ld, 1}, scratch.v_t, kGradKeyTile, scratch.dscores,
             kGradKeyTile, false);
        score_grads(mod, scratch.probs, scratch.softcap_grad, delta, scratch.dscores, row_begin, rows);
        gemm(keys, d_pad, rows, {scratch.dscores, 1, kGradKeyTile}, q_rows, plan.q.ld, scratch.dk, d_pad, true);
        gemm(rows, d_pad, keys, {scratch.dscores, kGradKeyTile, 1}, scratch.k_rows, d_pad,
             plan.dq_partial(task.chunk, head, row_base + row_begin), plan.dq_ld, true);
      }
    }
    for (std::int64_t j = 0; j < keys; ++j) {
      store_row(scratch.dk + j * d_pad, dk.row(key_begin + j), d, 1.0f);
      store_row(scratch.dv + j * dv_pad, dv_out.row(key_begin + j), dv, 1.0f);
    }
  }
}

// delta[h][row] = sum_c dout * out (fp32) for every query row.
template <typename T>
void compute_delta(const detail::Problem& p, const BackwardPlan& plan) {
#pragma omp parallel for collapse(2) schedule(static) num_threads(plan.threads)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      const detail::SequenceSpan seq = p.sequence(b);
      const auto out = head_rows<const T>(p.out, b, seq.q_begin, h);
      const auto dout = head_rows<const T>(p.dout, b, seq.q_begin, h);
      float* delta = plan.delta.data() + h * plan.rows_total + plan.row_base[b];
      for (std::int64_t i = 0; i < seq.seqlen_q; ++i) {
        const T* o = out.row(i);
        const T* g = dout.row(i);
        float sum = 0.0f;
        for (std::int64_t c = 0; c < p.head_dim_v; ++c) sum += to_float(o[c]) * to_float(g[c]);
        delta[i] = sum;
      }
    }
  }
}

// dk, dv of the keys a sequence has past seqused_k: zero (those keys take no part).
template <typename T>
void zero_unused_key_grads(const detail::Problem& p, std::int64_t b, std::int64_t kv_head) {
  if (!p.varlen) return;
  const detail::SequenceSpan seq = p.sequence(b);
  const std::int64_t keys_total = p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b];
  const auto dk = head_rows<T>(p.dk, b, seq.k_begin, kv_head);
  const auto dv = head_rows<T>(p.dv, b, seq.k_begin, kv_head);
  for (std::int64_t j = seq.seqlen_k; j < keys_total; ++j) {
    store_zero_row(dk.row(j), p.head_dim);
    store_zero_row(dv.row(j), p.head_dim_v);
  }
}

// dq = sum over chunks of the partials, in chunk order; dk, dv of keys past seqused_k are zero.
template <typename T>
void finish_backward(const detail::Problem& p, const BackwardPlan& plan) {
#pragma omp parallel for collapse(2) schedule(static) num_threads(plan.threads)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      const detail::SequenceSpan seq = p.sequence(b);
      const auto dq = head_rows<T>(p.dq, b, seq.q_begin, h);
      for (std::int64_t i = 0; i < seq.seqlen_q; ++i) {
        float* sum = plan.dq_partial(0, h, plan.row_base[b] + i);
        for (std::int64_t c = 1; c < plan.chunks; ++c) {
          const float* part = plan.dq_partial(c, h, plan.row_base[b] + i);
          for (std::int64_t x = 0; x < p.head_dim; ++x) sum[x] += part[x];
        }
        store_row(sum, dq.row(i), p.head_dim, 1.0f);
      }
      if (h < p.heads_kv) zero_unused_key_grads<T>(p, b, h);
    }
  }
}

template <typename T>
void run_backward_typed(const detail::Problem& p, const BackwardPlan& plan) {
  compute_delta<T>(p, plan);
  pack_queries<T>(p, p.q, p.head_dim, plan.row_base, plan.q, plan.threads);
  pack_queries<T>(p, p.dout, p.head_dim_v, plan.row_base, plan.dout, plan.threads);
  const std::int64_t d_pad = round_up(p.head_dim, kLanes);
  const std::int64_t dv_pad = round_up(p.head_dim_v, kLanes);
  const std::int64_t task_count = static_cast<std::int64_t>(plan.tasks.size());
  parallel_zero(plan.dq_accum.data(), sizeof(float) * plan.dq_accum.size(), plan.threads);
#pragma omp parallel num_threads(plan.threads)
  {
    FloatBuffer storage(static_cast<std::size_t>(BackwardScratch::floats(d_pad, dv_pad)));
    const BackwardScratch scratch = BackwardScratch::carve(storage.data(), d_pad, dv_pad);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < task_count; ++t) backward_task<T>(p, plan, plan.tasks[t], scratch);
  }
  finish_backward<T>(p, plan);
}

}  // namespace
}  // namespace flashattn::cpu
