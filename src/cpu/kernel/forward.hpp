// Forward kernel: one task = one tile of query rows of one head, streaming the visible keys.
// The score tile is kept transposed (keys x queries), so the online softmax runs down the key axis with
// the queries in the vector lanes: row maxima and sums are plain vector max/add, no horizontal reductions.
//   S^T = K Q^T                (Q^T packed once per task, K rows converted per key tile)
//   P^T = exp2(S^T - m_new), l = l * alpha + sum_j P^T,  O = O * alpha + P V
// out = O / l and lse = m + log(l) at the end; rows that saw no key give 0 and -inf.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

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

inline constexpr std::int64_t kQueryTile = kForwardQueryTile;
inline constexpr std::int64_t kKeyTile = kForwardKeyTile;
static_assert(kQueryTile % kLanes == 0, "the query tile is the vector axis of the score tile");

// Per-thread scratch of the forward, carved out of one allocation.
struct ForwardScratch {
  float* q_t;       // head_dim x kQueryTile
  float* k_rows;    // kKeyTile x head_dim
  float* v_rows;    // kKeyTile x head_dim_v (padded)
  float* scores_t;  // kKeyTile x kQueryTile
  float* o;         // kQueryTile x head_dim_v (padded)
  float* row_max;   // kQueryTile, log2 domain
  float* row_sum;   // kQueryTile
  float* rescale;   // kQueryTile

  static std::int64_t floats(std::int64_t d, std::int64_t dv_pad) {
    return d * kQueryTile + kKeyTile * d + kKeyTile * dv_pad + kKeyTile * kQueryTile + kQueryTile * dv_pad +
           3 * kQueryTile;
  }
  static ForwardScratch carve(float* p, std::int64_t d, std::int64_t dv_pad) {
    ForwardScratch s;
    s.q_t = p;
    s.k_rows = s.q_t + d * kQueryTile;
    s.v_rows = s.k_rows + kKeyTile * d;
    s.scores_t = s.v_rows + kKeyTile * dv_pad;
    s.o = s.scores_t + kKeyTile * kQueryTile;
    s.row_max = s.o + kQueryTile * dv_pad;
    s.row_sum = s.row_max + kQueryTile;
    s.rescale = s.row_sum + kQueryTile;
    return s;
  }
};

// Scores of one key tile -> log2-domain scores with the mask applied, in place. Without softcap and
// ALiBi the queries were pre-multiplied by scale * log2(e), so unmasked tiles need no pass at all.
inline void modify_scores_t(const ScoreMod& mod, const MaskPolicy& mask, float* scores_t, std::int64_t row_begin,
                            std::int64_t key_begin, std::int64_t keys, bool needs_mask) {
  const bool prescaled = mod.plain();
  if (prescaled && !needs_mask) return;
  for (std::int64_t j = 0; j < keys; ++j) {
    float* s = scores_t + j * kQueryTile;
    const std::int64_t key = key_begin + j;
    const int visible_begin =
        static_cast<int>(std::clamp<std::int64_t>(mask.first_row(key) - row_begin, 0, kQueryTile));
    const int visible_end = static_cast<int>(std::clamp<std::int64_t>(mask.end_row(key) - row_begin, 0, kQueryTile));
    // ALiBi distance of lane t: d_i - key with i = row_begin + t.
    const float distance = static_cast<float>(mask.diagonal(row_begin) - key);
    for (std::int64_t t = 0; t < kQueryTile; t += kLanes) {
      const int lane0 = static_cast<int>(t);
      const VecF x = load(s + t);
      store(s + t, prescaled ? ScoreMod::mask_only(x, visible_begin - lane0, visible_end - lane0)
                             : mod.apply(x, visible_begin - lane0, visible_end - lane0,
                                         distance + static_cast<float>(t), 1.0f, nullptr));
    }
  }
}

// Online softmax of one transposed tile: scores -> probabilities in place; updates the running max and
// sum of each query lane and leaves in `rescale` the factor the accumulated output must be scaled by.
inline void online_softmax_t(float* scores_t, std::int64_t keys, float* row_max, float* row_sum, float* rescale) {
  for (std::int64_t t = 0; t < kQueryTile; t += kLanes) {
    VecF tile_max = splat(kNegInf);
    for (std::int64_t j = 0; j < keys; ++j) tile_max = vmax(tile_max, load(scores_t + j * kQueryTile + t));
    const VecF old_max = load(row_max + t);
    const VecF new_max = vmax(old_max, tile_max);
    // A lane that has seen only masked keys keeps max -inf; subtracting 0 instead keeps exp2 at 0, not NaN.
    const VecF base = new_max == kNegInf ? VecF{} : new_max;
    VecF sum{};
    for (std::int64_t j = 0; j < keys; ++j) {
      float* s = scores_t + j * kQueryTile + t;
      const VecF p = exp2(load(s) - base);
      store(s, p);
      sum += p;
    }
    const VecF alpha = exp2(old_max - base);
    store(row_sum + t, load(row_sum + t) * alpha + sum);
    store(row_max + t, new_max);
    store(rescale + t, alpha);
  }
}

// fp32 rows of one key tile: the packed copy when the plan made one, else converted into scratch.
struct KeyTile {
  const float* k;
  std::int64_t ld_k;
  const float* v;
  std::int64_t ld_v;
};

template <typename T>
KeyTile key_tile(const ForwardPlan& plan, const HeadRows<const T>& k, const HeadRows<const T>& v,
                 const ForwardScratch& scratch, std::int64_t packed_key, std::int64_t kv_head, std::int64_t key_begin,
                 std::int64_t keys, std::int64_t d, std::int64_t dv, std::int64_t dv_pad) {
  if (!plan.k.empty()) {
    return {plan.k.row(kv_head, packed_key), plan.k.ld, plan.v.row(kv_head, packed_key), plan.v.ld};
  }
  for (std::int64_t j = 0; j < keys; ++j) {
    load_row(k.row(key_begin + j), scratch.k_rows + j * d, d, d);
    load_row(v.row(key_begin + j), scratch.v_rows + j * dv_pad, dv, dv_pad);
  }
  return {scratch.k_rows, d, scratch.v_rows, dv_pad};
}

// out = O / l and lse = m + log(l) for rows that saw a key; 0 and -inf for the others.
template <typename T>
void write_output_rows(const float* o, std::int64_t ld_o, const float* row_max, const float* row_sum,
                       const HeadRows<T>& out, float* lse, std::int64_t row_begin, std::int64_t rows, std::int64_t dv) {
  for (std::int64_t r = 0; r < rows; ++r) {
    if (row_sum[r] > 0.0f) {
      store_row(o + r * ld_o, out.row(row_begin + r), dv, 1.0f / row_sum[r]);
      lse[row_begin + r] = (row_max[r] + std::log2(row_sum[r])) * kLn2;
    } else {
      store_zero_row(out.row(row_begin + r), dv);
      lse[row_begin + r] = kNegInf;
    }
  }
}

template <typename T>
void forward_task(const detail::Problem& p, const ForwardPlan& plan, const ForwardTask& task,
                  const ForwardScratch& scratch) {
  const detail::SequenceSpan seq = p.sequence(task.batch);
  const MaskPolicy mask = MaskPolicy::of(p, seq);
  const std::int64_t d = p.head_dim;
  const std::int64_t dv = p.head_dim_v;
  const std::int64_t dv_pad = round_up(dv, kLanes);
  const std::int64_t row_begin = task.row_begin;
  const std::int64_t rows = task.row_end - task.row_begin;
  const std::int64_t kv_head = task.head / p.group_size();
  const auto q = head_rows<const T>(p.q, task.batch, seq.q_begin, task.head);
  const auto k = head_rows<const T>(p.k, task.batch, seq.k_begin, kv_head);
  const auto v = head_rows<const T>(p.v, task.batch, seq.k_begin, kv_head);
  const auto out = head_rows<T>(p.out, task.batch, seq.q_begin, task.head);
  float* lse = lse_row(p, task.batch, seq.q_begin, task.head);
  const ScoreMod mod{p.softmax_scale, p.softcap, p.alibi_slope(task.batch, task.head)};

  // Q^T, zero beyond the task's rows so that the padded lanes stay finite; pre-scaled when that is all
  // the score modification there is (modify_scores_t).
  const float q_scale = mod.plain() ? p.softmax_scale * kLog2e : 1.0f;
  fill(scratch.q_t, d * kQueryTile, 0.0f);
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* q_row = q.row(row_begin + r);
    for (std::int64_t c = 0; c < d; ++c) scratch.q_t[c * kQueryTile + r] = to_float(q_row[c]) * q_scale;
  }
  fill(scratch.o, kQueryTile * dv_pad, 0.0f);
  fill(scratch.row_max, kQueryTile, kNegInf);
  fill(scratch.row_sum, kQueryTile, 0.0f);

  const std::int64_t key_end = mask.end_key_of_rows(task.row_end);
  for (std::int64_t key_begin = mask.first_key_of_rows(row_begin); key_begin < key_end; key_begin += kKeyTile) {
    const std::int64_t keys = std::min(kKeyTile, key_end - key_begin);
    const KeyTile tile = key_tile<T>(plan, k, v, scratch, plan.key_base[task.batch] + key_begin, kv_head, key_begin,
                                     keys, d, dv, dv_pad);
    gemm(keys, kQueryTile, d, {tile.k, tile.ld_k, 1}, scratch.q_t, kQueryTile, scratch.scores_t, kQueryTile, false);
    modify_scores_t(mod, mask, scratch.scores_t, row_begin, key_begin, keys,
                    mask.tile_needs_mask(row_begin, task.row_end, key_begin, key_begin + keys));
    online_softmax_t(scratch.scores_t, keys, scratch.row_max, scratch.row_sum, scratch.rescale);
    for (std::int64_t r = 0; r < rows; ++r) {
      const float alpha = scratch.rescale[r];
      if (alpha == 1.0f) continue;
      float* o_row = scratch.o + r * dv_pad;
      for (std::int64_t c = 0; c < dv_pad; c += kLanes) store(o_row + c, load(o_row + c) * alpha);
    }
    gemm(rows, dv_pad, keys, {scratch.scores_t, 1, kQueryTile}, tile.v, tile.ld_v, scratch.o, dv_pad, true);
  }

  write_output_rows(scratch.o, dv_pad, scratch.row_max, scratch.row_sum, out, lse, row_begin, rows, dv);
}

template <typename T>
void run_forward_typed(const detail::Problem& p, const ForwardPlan& plan) {
  const std::int64_t dv_pad = round_up(p.head_dim_v, kLanes);
  const std::int64_t task_count = static_cast<std::int64_t>(plan.tasks.size());
  if (!plan.k.empty()) {
    pack_keys<T>(p, p.k, p.head_dim, plan.key_base, plan.k, plan.threads);
    pack_keys<T>(p, p.v, p.head_dim_v, plan.key_base, plan.v, plan.threads);
  }
#pragma omp parallel num_threads(plan.threads)
  {
    FloatBuffer storage(static_cast<std::size_t>(ForwardScratch::floats(p.head_dim, dv_pad)));
    const ForwardScratch scratch = ForwardScratch::carve(storage.data(), p.head_dim, dv_pad);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < task_count; ++t) forward_task<T>(p, plan, plan.tasks[t], scratch);
  }
}

}  // namespace
}  // namespace flashattn::cpu
