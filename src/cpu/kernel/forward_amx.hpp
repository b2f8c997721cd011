// bf16 forward on AMX tiles. Same algorithm and task split as kernel/forward.hpp, but the two products run
// as bf16 tile dot products with fp32 accumulation, and the score tile is row-major (queries x keys):
//   S = Q K^T   (A: Q rows, B: K in the VNNI layout)      P = exp2(S - m) rounded to bf16
//   O = O * alpha + P V   (A: P rows, B: V in the VNNI layout), O kept in memory as fp32
// K and V are repacked once per call into the tile-operand layouts below, each sequence starting at a
// multiple of the key tile so that no tile straddles two sequences. Tile registers: 0-3 accumulators of a
// 32 x 32 output block, 4-5 the A operands of its two row halves, 6-7 the B operands of its column halves.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernel/amx_layouts.hpp"
#include "kernel/amx_tiles.hpp"
#include "kernel/convert.hpp"
#include "kernel/entry.hpp"
#include "kernel/mask.hpp"
#include "kernel/score_mod.hpp"
#include "kernel/simd.hpp"
#include "kernel/tensor_access.hpp"
#include "plan.hpp"
#include "tiles.hpp"

namespace flashattn::cpu {
namespace {

static_assert(kLanes == amx::kFloatsPerRow, "the AMX kernel runs with 16-float vectors (AVX-512)");

inline constexpr std::int64_t kAmxQueryTile = kForwardQueryTile;  // the plan's tasks
static_assert(kAmxQueryTile % kBlock == 0 && kAmxKeyTile % kBlock == 0, "tiles come in 2 x 2 blocks");

// K as the B operand of S = Q K^T (channel pairs), V as the B operand of O += P V (token pairs).
struct VnniKv {
  FloatBuffer storage;
  const std::int64_t* key_base = nullptr;  // packed key index of each sequence's key 0 (ForwardPlan)
  ChannelPairs k;
  TokenPairs v;
};

inline VnniKv pack_vnni(const detail::Problem& p, const ForwardPlan& plan) {
  VnniKv packed;
  packed.key_base = plan.vnni_key_base.data();
  const std::int64_t k_elems = ChannelPairs::elems(p.heads_kv, plan.vnni_keys, p.head_dim);
  const std::int64_t v_elems = TokenPairs::elems(p.heads_kv, plan.vnni_keys, p.head_dim_v);
  packed.storage = FloatBuffer(static_cast<std::size_t>((k_elems + v_elems + 1) / 2));
  auto* bits = reinterpret_cast<std::uint16_t*>(packed.storage.data());
  parallel_zero(bits, sizeof(std::uint16_t) * static_cast<std::size_t>(k_elems + v_elems), plan.threads);
  packed.k = {bits, plan.vnni_keys, round_up_block(p.head_dim) / 2};
  packed.v = {bits + k_elems, plan.vnni_keys, round_up_block(p.head_dim_v) / amx::kFloatsPerRow};
  pack_tokens(p, p.k, false, p.heads_kv, p.head_dim, packed.key_base, packed.k, plan.threads);
  pack_tokens(p, p.v, false, p.heads_kv, p.head_dim_v, packed.key_base, packed.v, plan.threads);
  return packed;
}

struct AmxScratch {
  std::uint16_t* q;  // kAmxQueryTile x d32 (bf16)
  float* s;          // kAmxQueryTile x kAmxKeyTile
  std::uint16_t* p;  // kAmxQueryTile x kAmxKeyTile (bf16)
  float* o;          // kAmxQueryTile x dv32
  float* row_max;    // kAmxQueryTile, log2 domain
  float* row_sum;    // kAmxQueryTile

  static std::int64_t floats(std::int64_t d32, std::int64_t dv32) {
    return kAmxQueryTile * d32 / 2 + kAmxQueryTile * kAmxKeyTile * 3 / 2 + kAmxQueryTile * dv32 + 2 * kAmxQueryTile;
  }
  static AmxScratch carve(float* base, std::int64_t d32, std::int64_t dv32) {
    AmxScratch s;
    s.s = base;
    s.o = s.s + kAmxQueryTile * kAmxKeyTile;
    s.row_max = s.o + kAmxQueryTile * dv32;
    s.row_sum = s.row_max + kAmxQueryTile;
    s.q = reinterpret_cast<std::uint16_t*>(s.row_sum + kAmxQueryTile);
    s.p = s.q + kAmxQueryTile * d32;
    return s;
  }
};

// S[32 x 32 block at (row0, col0)] = Q[row0 .. +32] K^T over all channel pairs.
inline void score_block(const AmxScratch& scratch, const VnniKv& kv, std::int64_t kv_head, std::int64_t d32,
                        std::int64_t row0, std::int64_t key0, std::int64_t col0) {
  tile_block(scratch.s + row0 * kAmxKeyTile + col0, kAmxKeyTile * 4, false, scratch.q + row0 * d32, d32 * 2, kBlock,
             kv.k.tile(kv_head, key0 + col0, 0), kv.k.tile(kv_head, key0 + col0 + amx::kTileRows, 0), kv.k.pair_step(),
             d32 / kBlock);
}

// O[32 x 32 block at (row0, channel0)] += P[row0 .. +32][0 .. keys32] V.
inline void output_block(const AmxScratch& scratch, const VnniKv& kv, std::int64_t kv_head, std::int64_t dv32,
                         std::int64_t row0, std::int64_t key0, std::int64_t keys32, std::int64_t channel0) {
  tile_block(scratch.o + row0 * dv32 + channel0, dv32 * 4, true, scratch.p + row0 * kAmxKeyTile, kAmxKeyTile * 2,
             kBlock, kv.v.tile(kv_head, key0, channel0), kv.v.tile(kv_head, key0, channel0 + amx::kTileRows),
             kv.v.token_step(), keys32 / kBlock);
}

// Online softmax of the row-major tile, keys [0, keys32) of which [0, keys) exist: S -> P (bf16), running
// max and sum updated, the output rows rescaled.
inline void online_softmax_rows(const AmxScratch& scratch, const ScoreMod& mod, const MaskPolicy& mask,
                                std::int64_t row_begin, std::int64_t rows, std::int64_t key_begin, std::int64_t keys,
                                std::int64_t keys32, std::int64_t dv32, bool needs_mask) {
  const bool fast = !needs_mask && mod.plain() && keys == keys32;
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t row = row_begin + r;
    float* s = scratch.s + r * kAmxKeyTile;
    VecF tile_max = splat(kNegInf);
    if (fast) {
      for (std::int64_t t = 0; t < keys32; t += kLanes) {
        const VecF x = mod.apply_plain(load(s + t));
        store(s + t, x);
        tile_max = vmax(tile_max, x);
      }
    } else {
      const int visible_begin = static_cast<int>(std::clamp<std::int64_t>(mask.first_key(row) - key_begin, 0, keys));
      const int visible_end = static_cast<int>(std::clamp<std::int64_t>(mask.end_key(row) - key_begin, 0, keys));
      const float distance = static_cast<float>(mask.diagonal(row) - key_begin);
      for (std::int64_t t = 0; t < keys32; t += kLanes) {
        const int lane0 = static_cast<int>(t);
        const VecF x = mod.apply(load(s + t), visible_begin - lane0, visible_end - lane0,
                                 distance - static_cast<float>(t), -1.0f, nullptr);
        store(s + t, x);
        tile_max = vmax(tile_max, x);
      }
    }
    const float old_max = scratch.row_max[r];
    const float new_max = std::max(old_max, reduce_max(tile_max));
    // A row that has seen only masked keys keeps max -inf; subtracting 0 keeps exp2 at 0 instead of NaN.
    const float base = new_max == kNegInf ? 0.0f : new_max;
    VecF sum{};
    for (std::int64_t t = 0; t < keys32; t += kLanes) {
      const VecF prob = exp2(load(s + t) - base);
      sum += prob;
      store_bf16(scratch.p + r * kAmxKeyTile + t, prob);
    }
    const float alpha = exp2(splat(old_max - base))[0];
    scratch.row_sum[r] = scratch.row_sum[r] * alpha + reduce_sum(sum);
    scratch.row_max[r] = new_max;
    if (alpha != 1.0f) {
      float* o_row = scratch.o + r * dv32;
      for (std::int64_t c = 0; c < dv32; c += kLanes) store(o_row + c, load(o_row + c) * alpha);
    }
  }
}

inline void forward_task_amx(const detail::Problem& p, const VnniKv& kv, const ForwardTask& task,
                             const AmxScratch& scratch) {
  const detail::SequenceSpan seq = p.sequence(task.batch);
  const MaskPolicy mask = MaskPolicy::of(p, seq);
  const std::int64_t d = p.head_dim;
  const std::int64_t dv = p.head_dim_v;
  const std::int64_t d32 = round_up_block(d);
  const std::int64_t dv32 = round_up_block(dv);
  const std::int64_t row_begin = task.row_begin;
  const std::int64_t rows = task.row_end - task.row_begin;
  const std::int64_t kv_head = task.head / p.group_size();
  const auto q = head_rows<const BFloat16>(p.q, task.batch, seq.q_begin, task.head);
  const auto out = head_rows<BFloat16>(p.out, task.batch, seq.q_begin, task.head);
  float* lse = lse_row(p, task.batch, seq.q_begin, task.head);
  const ScoreMod mod{p.softmax_scale, p.softcap, p.alibi_slope(task.batch, task.head)};

  // Q rows as bf16, zero past the task's rows and channels; P rows past the task's rows stay 0 too.
  std::memset(scratch.q, 0, sizeof(std::uint16_t) * kAmxQueryTile * d32);
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < d; ++c) scratch.q[r * d32 + c] = q.row(row_begin + r)[c].bits;
  }
  std::memset(scratch.p, 0, sizeof(std::uint16_t) * kAmxQueryTile * kAmxKeyTile);
  fill(scratch.o, kAmxQueryTile * dv32, 0.0f);
  fill(scratch.row_max, kAmxQueryTile, kNegInf);
  fill(scratch.row_sum, kAmxQueryTile, 0.0f);
  const std::int64_t row_blocks = round_up_block(rows);

  const std::int64_t key_end = mask.end_key_of_rows(task.row_end);
  // Tiles start on 32-key boundaries of the packed layout; keys before the window are masked.
  for (std::int64_t key_begin = mask.first_key_of_rows(row_begin) / kBlock * kBlock; key_begin < key_end;
       key_begin += kAmxKeyTile) {
    const std::int64_t keys = std::min(kAmxKeyTile, key_end - key_begin);
    const std::int64_t keys32 = round_up_block(keys);
    const std::int64_t key0 = kv.key_base[task.batch] + key_begin;
    for (std::int64_t r = 0; r < row_blocks; r += kBlock) {
      for (std::int64_t j = 0; j < keys32; j += kBlock) score_block(scratch, kv, kv_head, d32, r, key0, j);
    }
    online_softmax_rows(scratch, mod, mask, row_begin, rows, key_begin, keys, keys32, dv32,
                        mask.tile_needs_mask(row_begin, task.row_end, key_begin, key_begin + keys));
    for (std::int64_t r = 0; r < row_blocks; r += kBlock) {
      for (std::int64_t c = 0; c < dv32; c += kBlock) output_block(scratch, kv, kv_head, dv32, r, key0, keys32, c);
    }
  }

  write_output_rows(scratch.o, dv32, scratch.row_max, scratch.row_sum, out, lse, row_begin, rows, dv);
}

inline void run_forward_amx(const detail::Problem& p, const ForwardPlan& plan) {
  const VnniKv kv = pack_vnni(p, plan);
  const std::int64_t d32 = round_up_block(p.head_dim);
  const std::int64_t dv32 = round_up_block(p.head_dim_v);
  const std::int64_t task_count = static_cast<std::int64_t>(plan.tasks.size());
#pragma omp parallel num_threads(plan.threads)
  {
    FloatBuffer storage(static_cast<std::size_t>(AmxScratch::floats(d32, dv32)));
    const AmxScratch scratch = AmxScratch::carve(storage.data(), d32, dv32);
    amx::configure();
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < task_count; ++t) forward_task_amx(p, kv, plan.tasks[t], scratch);
    amx::release();
  }
}

// The forward of the AMX kernel sets: bf16 on tiles, the other dtypes on the AVX-512 kernels.
inline void run_forward_with_amx(const detail::Problem& p, const ForwardPlan& plan) {
  if (p.dtype == DType::kBFloat16) {
    run_forward_amx(p, plan);
  } else {
    run_forward(p, plan);
  }
}

}  // namespace
}  // namespace flashattn::cpu
