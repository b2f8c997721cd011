#include "plan.hpp"

#include <omp.h>

#include <algorithm>

#include "kernel/mask.hpp"
#include "tiles.hpp"

namespace flashattn::cpu {
namespace {

// Backward tasks per thread to aim for: enough that dynamic scheduling evens out causal imbalance.
constexpr std::int64_t kBackwardTasksPerThread = 4;
// The fp32 dQ partials may take at most this much memory; fewer key chunks beyond it.
constexpr std::int64_t kMaxDqAccumBytes = std::int64_t{1} << 30;
// Packed K and V of a forward may take at most this much memory; beyond it tasks convert key tiles.
constexpr std::int64_t kMaxPackedKvBytes = std::int64_t{1} << 30;

std::int64_t padded(std::int64_t dim) { return (dim + kRowPadding - 1) / kRowPadding * kRowPadding; }

// Token bases for the AMX tile layouts: each sequence's queries (or keys) from a multiple of `tile`, so that
// no tile straddles two sequences. Returns the padded total.
std::int64_t aligned_bases(const detail::Problem& p, bool queries, std::int64_t tile,
                           std::vector<std::int64_t>& bases) {
  bases.resize(static_cast<std::size_t>(p.batch));
  std::int64_t total = 0;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    bases[b] = total;
    const detail::SequenceSpan seq = p.sequence(b);
    total += ((queries ? seq.seqlen_q : seq.seqlen_k) + tile - 1) / tile * tile;
  }
  return total;
}

PackedHeads allocate_packed(std::int64_t heads, std::int64_t tokens, std::int64_t dim) {
  PackedHeads packed;
  packed.tokens = tokens;
  packed.ld = padded(dim);
  packed.buffer = FloatBuffer(static_cast<std::size_t>(heads * tokens * packed.ld));
  return packed;
}

}  // namespace

int thread_count(const detail::Problem& problem) {
  return problem.num_threads > 0 ? problem.num_threads : omp_get_max_threads();
}

ForwardPlan plan_forward(const detail::Problem& p, bool vnni) {
  // Each sequence's query tiles, longest first; sequences by total work, largest first.
  struct RowTile {
    std::int64_t row_begin, row_end, cost;
  };
  struct Sequence {
    std::int64_t batch;
    std::int64_t cost;
    std::vector<RowTile> tiles;
  };
  std::vector<Sequence> sequences;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const detail::SequenceSpan seq = p.sequence(b);
    const MaskPolicy mask = MaskPolicy::of(p, seq);
    Sequence s{b, 0, {}};
    for (std::int64_t row = 0; row < seq.seqlen_q; row += kForwardQueryTile) {
      const std::int64_t row_end = std::min(row + kForwardQueryTile, seq.seqlen_q);
      // Rows that see no key still need their out = 0 and lse = -inf written: count them as work too.
      s.tiles.push_back({row, row_end, mask.visible_pairs(row, row_end) + (row_end - row)});
      s.cost += s.tiles.back().cost;
    }
    std::stable_sort(s.tiles.begin(), s.tiles.end(),
                     [](const RowTile& x, const RowTile& y) { return x.cost > y.cost; });
    sequences.push_back(std::move(s));
  }
  std::stable_sort(sequences.begin(), sequences.end(),
                   [](const Sequence& x, const Sequence& y) { return x.cost > y.cost; });
  ForwardPlan plan;
  // Head by head: the threads then work on the same head's keys and values together, which stay in the
  // caches between tasks (interleaving the heads re-read every head's K and V for each task).
  for (const Sequence& s : sequences) {
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      for (const RowTile& t : s.tiles) plan.tasks.push_back({s.batch, h, t.row_begin, t.row_end});
    }
  }
  plan.threads = thread_count(p);
  plan.key_base.resize(static_cast<std::size_t>(p.batch));
  std::int64_t max_query_tiles = 0;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const detail::SequenceSpan seq = p.sequence(b);
    plan.key_base[b] = p.varlen ? seq.k_begin : b * p.seqlen_k;
    max_query_tiles = std::max(max_query_tiles, (seq.seqlen_q + kForwardQueryTile - 1) / kForwardQueryTile);
  }
  // Packing pays when each key is read by more than one query tile (not for decoding-like shapes).
  const std::int64_t keys_total = p.varlen ? (p.batch > 0 ? p.cu_seqlens_k[p.batch] : 0) : p.batch * p.seqlen_k;
  const std::int64_t packed_bytes =
      p.heads_kv * keys_total * (padded(p.head_dim) + padded(p.head_dim_v)) * std::int64_t{sizeof(float)};
  if (vnni) {
    plan.vnni_keys = aligned_bases(p, false, kAmxKeyTile, plan.vnni_key_base);
  } else if (max_query_tiles * p.group_size() > 1 && packed_bytes <= kMaxPackedKvBytes) {
    plan.k = allocate_packed(p.heads_kv, keys_total, p.head_dim);
    plan.v = allocate_packed(p.heads_kv, keys_total, p.head_dim_v);
  }
  return plan;
}

BackwardPlan plan_backward(const detail::Problem& p, bool vnni) {
  BackwardPlan plan;
  plan.threads = thread_count(p);
  plan.heads_q = p.heads_q;
  plan.row_base.resize(static_cast<std::size_t>(p.batch));
  std::int64_t max_key_tiles = 0;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const detail::SequenceSpan seq = p.sequence(b);
    plan.row_base[b] = p.varlen ? seq.q_begin : b * p.seqlen_q;
    max_key_tiles = std::max(max_key_tiles, (seq.seqlen_k + kBackwardKeyTile - 1) / kBackwardKeyTile);
  }
  plan.rows_total = p.varlen ? (p.batch > 0 ? p.cu_seqlens_q[p.batch] : 0) : p.batch * p.seqlen_q;
  plan.dq_ld = padded(p.head_dim);
  if (vnni) plan.vnni_rows = aligned_bases(p, true, kBackwardQueryTile, plan.vnni_row_base);
  // Rows of one chunk's dQ partials, and their length.
  const std::int64_t dq_rows = vnni ? plan.vnni_rows : plan.rows_total;
  const std::int64_t dq_row_floats =
      vnni ? (p.head_dim + kAmxChannelBlock - 1) / kAmxChannelBlock * kAmxChannelBlock : plan.dq_ld;

  // Split each (batch, KV head)'s keys into chunks when there are too few of them to feed the threads.
  const std::int64_t units = std::max<std::int64_t>(1, p.batch * p.heads_kv);
  std::int64_t chunks = plan.threads > 1 ? (kBackwardTasksPerThread * plan.threads + units - 1) / units : 1;
  chunks = std::clamp<std::int64_t>(chunks, 1, std::max<std::int64_t>(1, max_key_tiles));
  const std::int64_t chunk_bytes = p.heads_q * dq_rows * dq_row_floats * std::int64_t{sizeof(float)};
  if (chunk_bytes > 0) chunks = std::clamp<std::int64_t>(kMaxDqAccumBytes / chunk_bytes, 1, chunks);
  plan.chunks = chunks;

  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t key_tiles = (p.sequence(b).seqlen_k + kBackwardKeyTile - 1) / kBackwardKeyTile;
    const std::int64_t tiles_per_chunk = (key_tiles + chunks - 1) / std::max<std::int64_t>(1, chunks);
    for (std::int64_t kv = 0; kv < p.heads_kv; ++kv) {
      for (std::int64_t c = 0; c < chunks; ++c) {
        const std::int64_t key_begin = c * tiles_per_chunk * kBackwardKeyTile;
        const std::int64_t key_end = std::min((c + 1) * tiles_per_chunk * kBackwardKeyTile, p.sequence(b).seqlen_k);
        if (key_begin < key_end) plan.tasks.push_back({b, kv, key_begin, key_end, c});
      }
    }
  }
  if (!vnni) {
    plan.q = allocate_packed(p.heads_q, plan.rows_total, p.head_dim);
    plan.dout = allocate_packed(p.heads_q, plan.rows_total, p.head_dim_v);
  }
  plan.delta = FloatBuffer(static_cast<std::size_t>(p.heads_q * plan.rows_total));
  plan.dq_accum = FloatBuffer(static_cast<std::size_t>(chunks * chunk_bytes / std::int64_t{sizeof(float)}));
  return plan;
}

}  // namespace flashattn::cpu
