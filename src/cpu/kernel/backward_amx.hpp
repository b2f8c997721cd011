// bf16 backward on AMX tiles. Same tasks as kernel/backward.hpp (a key range of one KV head, all query
// heads of its group), computed in the transposed orientation so that every product has a tile layout:
//   S^T = K Q^T,  dP^T = V dO^T          (A: K, V rows of the key tile; B: Q, dO in channel pairs)
//   P^T = exp2(S^T - lse),  dS^T = P^T (dP^T - D) scale [softcap']      (fp32, query rows in the lanes)
//   dV += P^T dO,  dK += dS^T Q          (A: P^T, dS^T as bf16 rows; B: dO, Q in token pairs)
//   dQ^T += K^T dS^T                     (A: K^T rows; B: dS^T in key pairs, written by the step above)
// Q and dO are repacked once per call, each sequence from a multiple of the query tile; K, K^T and V once
// per key tile. dQ partials are fp32 and transposed, summed over the key chunks at the end.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernel/amx_layouts.hpp"
#include "kernel/amx_tiles.hpp"
#include "kernel/backward.hpp"
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

static_assert(kGradQueryTile % kBlock == 0 && kGradKeyTile % kBlock == 0, "tiles come in 2 x 2 blocks");
static_assert(kGradQueryTile % kLanes == 0, "query rows fill whole vectors");

// Q and dO in both B layouts.
struct VnniQdo {
  FloatBuffer storage;
  ChannelPairs q_pairs, dout_pairs;
  TokenPairs q_tokens, dout_tokens;
};

inline VnniQdo pack_vnni_qdo(const detail::Problem& p, const BackwardPlan& plan) {
  VnniQdo packed;
  const std::int64_t q_elems = ChannelPairs::elems(p.heads_q, plan.vnni_rows, p.head_dim);
  const std::int64_t do_elems = ChannelPairs::elems(p.heads_q, plan.vnni_rows, p.head_dim_v);
  packed.storage = FloatBuffer(static_cast<std::size_t>(q_elems + do_elems));  // 2 x (q + do) bf16 values
  auto* bits = reinterpret_cast<std::uint16_t*>(packed.storage.data());
  parallel_zero(bits, sizeof(float) * static_cast<std::size_t>(q_elems + do_elems), plan.threads);
  const std::int64_t q_blocks = round_up_block(p.head_dim) / amx::kFloatsPerRow;
  const std::int64_t do_blocks = round_up_block(p.head_dim_v) / amx::kFloatsPerRow;
  packed.q_pairs = {bits, plan.vnni_rows, round_up_block(p.head_dim) / 2};
  packed.q_tokens = {bits + q_elems, plan.vnni_rows, q_blocks};
  packed.dout_pairs = {bits + 2 * q_elems, plan.vnni_rows, round_up_block(p.head_dim_v) / 2};
  packed.dout_tokens = {bits + 2 * q_elems + do_elems, plan.vnni_rows, do_blocks};
  const std::int64_t* base = plan.vnni_row_base.data();
  pack_tokens(p, p.q, true, p.heads_q, p.head_dim, base, packed.q_pairs, plan.threads);
  pack_tokens(p, p.q, true, p.heads_q, p.head_dim, base, packed.q_tokens, plan.threads);
  pack_tokens(p, p.dout, true, p.heads_q, p.head_dim_v, base, packed.dout_pairs, plan.threads);
  pack_tokens(p, p.dout, true, p.heads_q, p.head_dim_v, base, packed.dout_tokens, plan.threads);
  return packed;
}

struct AmxGradScratch {
  std::uint16_t* k_rows;    // kGradKeyTile x d32
  std::uint16_t* k_t;       // d32 x kGradKeyTile
  std::uint16_t* v_rows;    // kGradKeyTile x dv32
  std::uint16_t* p_t;       // kGradKeyTile x kGradQueryTile
  std::uint16_t* ds_t;      // kGradKeyTile x kGradQueryTile
  std::uint16_t* ds_pairs;  // dS^T as B: (kGradKeyTile / 32) x (kGradQueryTile / 16) token-pair tiles
  float* dk;                // kGradKeyTile x d32
  float* dv;                // kGradKeyTile x dv32
  float* s_t;               // kGradKeyTile x kGradQueryTile
  float* dp_t;              // kGradKeyTile x kGradQueryTile
  float* softcap_grad;      // kGradKeyTile x kGradQueryTile
  float* lse2;              // kGradQueryTile: lse in the log2 domain, +inf where no probability is owed
  float* delta;             // kGradQueryTile

  static std::int64_t floats(std::int64_t d32, std::int64_t dv32) {
    const std::int64_t bf16_values = kGradKeyTile * (2 * d32 + dv32) + 3 * kGradKeyTile * kGradQueryTile;
    return bf16_values / 2 + kGradKeyTile * (d32 + dv32) + 3 * kGradKeyTile * kGradQueryTile + 2 * kGradQueryTile;
  }
  static AmxGradScratch carve(float* base, std::int64_t d32, std::int64_t dv32) {
    AmxGradScratch s;
    s.dk = base;
    s.dv = s.dk + kGradKeyTile * d32;
    s.s_t = s.dv + kGradKeyTile * dv32;
    s.dp_t = s.s_t + kGradKeyTile * kGradQueryTile;
    s.softcap_grad = s.dp_t + kGradKeyTile * kGradQueryTile;
    s.lse2 = s.softcap_grad + kGradKeyTile * kGradQueryTile;
    s.delta = s.lse2 + kGradQueryTile;
    s.k_rows = reinterpret_cast<std::uint16_t*>(s.delta + kGradQueryTile);
    s.k_t = s.k_rows + kGradKeyTile * d32;
    s.v_rows = s.k_t + kGradKeyTile * d32;
    s.p_t = s.v_rows + kGradKeyTile * dv32;
    s.ds_t = s.p_t + kGradKeyTile * kGradQueryTile;
    s.ds_pairs = s.ds_t + kGradKeyTile * kGradQueryTile;
    return s;
  }
};

// K rows, K^T and V rows of one key tile as bf16, zero past the tile's keys and the channels.
inline void pack_key_tile(const HeadRows<const BFloat16>& k, const HeadRows<const BFloat16>& v,
                          const AmxGradScratch& scratch, std::int64_t key_begin, std::int64_t keys, std::int64_t d,
                          std::int64_t dv, std::int64_t d32, std::int64_t dv32) {
  std::memset(scratch.k_rows, 0, sizeof(std::uint16_t) * kGradKeyTile * (2 * d32 + dv32));
  for (std::int64_t j = 0; j < keys; ++j) {
    const BFloat16* k_row = k.row(key_begin + j);
    for (std::int64_t c = 0; c < d; ++c) {
      scratch.k_rows[j * d32 + c] = k_row[c].bits;
      scratch.k_t[c * kGradKeyTile + j] = k_row[c].bits;
    }
    const BFloat16* v_row = v.row(key_begin + j);
    for (std::int64_t c = 0; c < dv; ++c) scratch.v_rows[j * dv32 + c] = v_row[c].bits;
  }
}

// The elementwise middle of one (key tile, query tile): P^T and dS^T from S^T and dP^T, as bf16 rows and
// dS^T also in key pairs. Keys past the tile's `keys` get zero rows.
inline void probabilities_and_grads(const AmxGradScratch& scratch, const ScoreMod& mod, const MaskPolicy& mask,
                                    std::int64_t row_begin, std::int64_t key_begin, std::int64_t keys,
                                    bool needs_mask) {
  const bool fast = !needs_mask && mod.plain();
  constexpr std::int64_t kRowVectors = kGradQueryTile / kLanes;
  for (std::int64_t j = 0; j < kGradKeyTile; j += 2) {
    VecI ds_bits[2][kRowVectors];
    for (std::int64_t e = 0; e < 2; ++e) {
      const std::int64_t jj = j + e;
      const std::int64_t key = key_begin + jj;
      const int visible_begin =
          jj < keys ? static_cast<int>(std::clamp<std::int64_t>(mask.first_row(key) - row_begin, 0, kGradQueryTile))
                    : 0;
      const int visible_end =
          jj < keys ? static_cast<int>(std::clamp<std::int64_t>(mask.end_row(key) - row_begin, 0, kGradQueryTile)) : 0;
      const float distance = static_cast<float>(mask.diagonal(row_begin) - key);
      for (std::int64_t v = 0; v < kRowVectors; ++v) {
        const std::int64_t t = v * kLanes;
        const std::int64_t at = jj * kGradQueryTile + t;
        const int lane0 = static_cast<int>(t);
        float* grad = mod.softcap != 0.0f ? scratch.softcap_grad + at : nullptr;
        const VecF x = fast && jj < keys ? mod.apply_plain(load(scratch.s_t + at))
                                         : mod.apply(load(scratch.s_t + at), visible_begin - lane0, visible_end - lane0,
                                                     distance + static_cast<float>(t), 1.0f, grad);
        const VecF prob = exp2(x - load(scratch.lse2 + t));
        VecF ds = prob * (load(scratch.dp_t + at) - load(scratch.delta + t)) * mod.scale;
        if (grad != nullptr) ds *= load(grad);
        store_bf16(scratch.p_t + at, prob);
        ds_bits[e][v] = bf16_bits(ds);
        store_bf16_bits(scratch.ds_t + at, ds_bits[e][v]);
      }
    }
    // Key pair (j, j + 1) of dS^T as one row of its token-pair tile: per query row, (ds[j], ds[j + 1]).
    for (std::int64_t v = 0; v < kRowVectors; ++v) {
      const VecI pair = ds_bits[0][v] | (ds_bits[1][v] << 16);
      std::uint16_t* tile = scratch.ds_pairs + ((j / kBlock) * (kGradQueryTile / amx::kTileRows) + v) * kTileElems;
      std::memcpy(tile + ((j % kBlock) / 2) * amx::kBf16PerRow, &pair, sizeof pair);
    }
  }
}

inline void backward_task_amx(const detail::Problem& p, const BackwardPlan& plan, const VnniQdo& qdo,
                              const BackwardTask& task, const AmxGradScratch& scratch) {
  const detail::SequenceSpan seq = p.sequence(task.batch);
  const MaskPolicy mask = MaskPolicy::of(p, seq);
  const std::int64_t d = p.head_dim;
  const std::int64_t dv = p.head_dim_v;
  const std::int64_t d32 = round_up_block(d);
  const std::int64_t dv32 = round_up_block(dv);
  const auto k = head_rows<const BFloat16>(p.k, task.batch, seq.k_begin, task.kv_head);
  const auto v = head_rows<const BFloat16>(p.v, task.batch, seq.k_begin, task.kv_head);
  const auto dk = head_rows<BFloat16>(p.dk, task.batch, seq.k_begin, task.kv_head);
  const auto dv_out = head_rows<BFloat16>(p.dv, task.batch, seq.k_begin, task.kv_head);
  const std::int64_t row_base = plan.row_base[task.batch];
  const std::int64_t tile_row_base = plan.vnni_row_base[task.batch];
  const std::int64_t dq_head_floats = d32 * plan.vnni_rows;

  for (std::int64_t key_begin = task.key_begin; key_begin < task.key_end; key_begin += kGradKeyTile) {
    const std::int64_t keys = std::min(kGradKeyTile, task.key_end - key_begin);
    pack_key_tile(k, v, scratch, key_begin, keys, d, dv, d32, dv32);
    fill(scratch.dk, kGradKeyTile * d32, 0.0f);
    fill(scratch.dv, kGradKeyTile * dv32, 0.0f);
    const std::int64_t rows_end = mask.end_row_of_keys(key_begin + keys);
    for (std::int64_t g = 0; g < p.group_size(); ++g) {
      const std::int64_t head = task.kv_head * p.group_size() + g;
      const float* lse = lse_row(p, task.batch, seq.q_begin, head);
      const float* delta = plan.delta.data() + head * plan.rows_total + row_base;
      const ScoreMod mod{p.softmax_scale, p.softcap, p.alibi_slope(task.batch, head)};
      float* dq_t = plan.dq_accum.data() + (task.chunk * p.heads_q + head) * dq_head_floats;
      for (std::int64_t row_begin = mask.first_row_of_keys(key_begin) / kGradQueryTile * kGradQueryTile;
           row_begin < rows_end; row_begin += kGradQueryTile) {
        const std::int64_t rows = std::min(kGradQueryTile, seq.seqlen_q - row_begin);
        for (std::int64_t r = 0; r < kGradQueryTile; ++r) {
          // lse = -inf marks a row that saw no key: subtracting +inf turns its probabilities into 0.
          const bool owed = r < rows && lse[row_begin + r] != kNegInf;
          scratch.lse2[r] = owed ? lse[row_begin + r] * kLog2e : __builtin_inff();
          scratch.delta[r] = r < rows ? delta[row_begin + r] : 0.0f;
        }
        const std::int64_t row_token = tile_row_base + row_begin;
        for (std::int64_t j = 0; j < kGradKeyTile; j += kBlock) {
          for (std::int64_t r = 0; r < kGradQueryTile; r += kBlock) {
            tile_block(scratch.s_t + j * kGradQueryTile + r, kGradQueryTile * 4, false, scratch.k_rows + j * d32,
                       d32 * 2, kBlock, qdo.q_pairs.tile(head, row_token + r, 0),
                       qdo.q_pairs.tile(head, row_token + r + amx::kTileRows, 0), qdo.q_pairs.pair_step(),
                       d32 / kBlock);
            tile_block(scratch.dp_t + j * kGradQueryTile + r, kGradQueryTile * 4, false, scratch.v_rows + j * dv32,
                       dv32 * 2, kBlock, qdo.dout_pairs.tile(head, row_token + r, 0),
                       qdo.dout_pairs.tile(head, row_token + r + amx::kTileRows, 0), qdo.dout_pairs.pair_step(),
                       dv32 / kBlock);
          }
        }
        probabilities_and_grads(
            scratch, mod, mask, row_begin, key_begin, keys,
            mask.tile_needs_mask(row_begin, row_begin + rows, key_begin, key_begin + keys) || rows < kGradQueryTile);
        for (std::int64_t j = 0; j < kGradKeyTile; j += kBlock) {
          for (std::int64_t c = 0; c < dv32; c += kBlock) {
            tile_block(scratch.dv + j * dv32 + c, dv32 * 4, true, scratch.p_t + j * kGradQueryTile, kGradQueryTile * 2,
                       kBlock, qdo.dout_tokens.tile(head, row_token, c),
                       qdo.dout_tokens.tile(head, row_token, c + amx::kTileRows), qdo.dout_tokens.token_step(),
                       kGradQueryTile / kBlock);
          }
          for (std::int64_t c = 0; c < d32; c += kBlock) {
            tile_block(scratch.dk + j * d32 + c, d32 * 4, true, scratch.ds_t + j * kGradQueryTile, kGradQueryTile * 2,
                       kBlock, qdo.q_tokens.tile(head, row_token, c),
                       qdo.q_tokens.tile(head, row_token, c + amx::kTileRows), qdo.q_tokens.token_step(),
                       kGradQueryTile / kBlock);
          }
        }
        const std::int64_t ds_step = (kGradQueryTile / amx::kTileRows) * kTileElems;  // one 32-key block of dS^T
        for (std::int64_t c = 0; c < d32; c += kBlock) {
          for (std::int64_t r = 0; r < kGradQueryTile; r += kBlock) {
            const std::uint16_t* b0 = scratch.ds_pairs + (r / amx::kTileRows) * kTileElems;
            tile_block(dq_t + c * plan.vnni_rows + row_token + r, plan.vnni_rows * 4, true,
                       scratch.k_t + c * kGradKeyTile, kGradKeyTile * 2, kBlock, b0, b0 + kTileElems, ds_step,
                       kGradKeyTile / kBlock);
          }
        }
      }
    }
    for (std::int64_t j = 0; j < keys; ++j) {
      store_row(scratch.dk + j * d32, dk.row(key_begin + j), d, 1.0f);
      store_row(scratch.dv + j * dv32, dv_out.row(key_begin + j), dv, 1.0f);
    }
  }
}

// dq = the chunks' transposed partials summed in chunk order; dk, dv past seqused_k are zero.
inline void finish_backward_amx(const detail::Problem& p, const BackwardPlan& plan) {
  const std::int64_t d32 = round_up_block(p.head_dim);
#pragma omp parallel for collapse(2) schedule(static) num_threads(plan.threads)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      const detail::SequenceSpan seq = p.sequence(b);
      const auto dq = head_rows<BFloat16>(p.dq, b, seq.q_begin, h);
      for (std::int64_t i = 0; i < seq.seqlen_q; ++i) {
        const std::int64_t row = plan.vnni_row_base[b] + i;
        BFloat16* dst = dq.row(i);
        for (std::int64_t c = 0; c < p.head_dim; ++c) {
          float sum = 0.0f;
          for (std::int64_t chunk = 0; chunk < plan.chunks; ++chunk) {
            sum += plan.dq_accum.data()[((chunk * p.heads_q + h) * d32 + c) * plan.vnni_rows + row];
          }
          dst[c] = from_float<BFloat16>(sum);
        }
      }
      if (h < p.heads_kv) zero_unused_key_grads<BFloat16>(p, b, h);
    }
  }
}

inline void run_backward_amx(const detail::Problem& p, const BackwardPlan& plan) {
  compute_delta<BFloat16>(p, plan);
  const VnniQdo qdo = pack_vnni_qdo(p, plan);
  const std::int64_t d32 = round_up_block(p.head_dim);
  const std::int64_t dv32 = round_up_block(p.head_dim_v);
  const std::int64_t task_count = static_cast<std::int64_t>(plan.tasks.size());
  parallel_zero(plan.dq_accum.data(), sizeof(float) * plan.dq_accum.size(), plan.threads);
#pragma omp parallel num_threads(plan.threads)
  {
    FloatBuffer storage(static_cast<std::size_t>(AmxGradScratch::floats(d32, dv32)));
    const AmxGradScratch scratch = AmxGradScratch::carve(storage.data(), d32, dv32);
    amx::configure();
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t t = 0; t < task_count; ++t) backward_task_amx(p, plan, qdo, plan.tasks[t], scratch);
    amx::release();
  }
  finish_backward_amx(p, plan);
}

// The backward of the AMX kernel sets: bf16 on tiles, the other dtypes on the AVX-512 kernels.
inline void run_backward_with_amx(const detail::Problem& p, const BackwardPlan& plan) {
  if (p.dtype == DType::kBFloat16) {
    run_backward_amx(p, plan);
  } else {
    run_backward(p, plan);
  }
}

}  // namespace
}  // namespace flashattn::cpu
