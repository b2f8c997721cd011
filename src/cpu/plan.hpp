// The CPU scheduler: splits a call into independent tasks for the OpenMP threads. Built outside the
// instruction-set translation units, so each of them only runs the tasks it is handed.
#pragma once

#include <cstdint>
#include <vector>

#include "buffer.hpp"
#include "problem.hpp"

namespace flashattn::cpu {

// An fp32 copy of one (token, head, channel) tensor, heads outermost and the tokens of all sequences back
// to back: token t of sequence b, head h at row(h, base[b] + t), each row zero padded to `ld` floats.
// Streaming contiguous rows instead of rows a whole token stride apart (each on its own page) keeps the
// hardware prefetchers and the TLB useful: the strided copies took a quarter of the backward's time.
struct PackedHeads {
  FloatBuffer buffer;
  std::int64_t tokens = 0;
  std::int64_t ld = 0;
  bool empty() const { return buffer.data() == nullptr; }
  float* row(std::int64_t head, std::int64_t token) const { return buffer.data() + (head * tokens + token) * ld; }
};

// Query rows [row_begin, row_end) of one (batch, query head).
struct ForwardTask {
  std::int64_t batch;
  std::int64_t head;
  std::int64_t row_begin;
  std::int64_t row_end;
};

struct ForwardPlan {
  // Sequences by decreasing work, then head by head, each head's tiles longest first (plan_forward).
  std::vector<ForwardTask> tasks;
  int threads = 1;
  // Keys of all sequences, numbered key_base[b] + j.
  std::vector<std::int64_t> key_base;
  // K and V packed once when several query tiles read them (else each task converts its key tiles).
  PackedHeads k, v;
  // For the AMX kernel, which repacks K and V itself: each sequence's keys start at vnni_key_base[b], a
  // multiple of kAmxKeyTile, and vnni_keys keys are laid out per head.
  std::vector<std::int64_t> vnni_key_base;
  std::int64_t vnni_keys = 0;
};

// Keys [key_begin, key_end) of one (batch, KV head), with every query head of its group: the task owns
// dK and dV of those keys and writes its share of dQ into its own slice `chunk` of the dQ accumulator.
struct BackwardTask {
  std::int64_t batch;
  std::int64_t kv_head;
  std::int64_t key_begin;
  std::int64_t key_end;
  std::int64_t chunk;
};

struct BackwardPlan {
  std::vector<BackwardTask> tasks;
  int threads = 1;
  // Query rows of all sequences, numbered row_base[b] + i.
  std::vector<std::int64_t> row_base;
  std::int64_t rows_total = 0;
  std::int64_t heads_q = 0;
  // delta[h * rows_total + row] = sum(dout * out) of that row (the softmax backward's D).
  FloatBuffer delta;
  // Q and dO packed once: every key tile of a task streams them again (fp32 kernels).
  PackedHeads q, dout;
  // For the AMX kernel, which repacks Q and dO itself: each sequence's rows start at vnni_row_base[b], a
  // multiple of kBackwardQueryTile, vnni_rows rows per head; its dQ partials are transposed,
  // [chunk][head][channel (head_dim rounded up to 32)][vnni_rows].
  std::vector<std::int64_t> vnni_row_base;
  std::int64_t vnni_rows = 0;
  // fp32 partial dQ: [chunk][head][row][dq_ld]; summed over chunks into dq at the end.
  std::int64_t chunks = 1;
  std::int64_t dq_ld = 0;
  FloatBuffer dq_accum;

  float* dq_partial(std::int64_t chunk, std::int64_t head, std::int64_t row) const {
    return dq_accum.data() + ((chunk * heads_q + head) * rows_total + row) * dq_ld;
  }
};

int thread_count(const detail::Problem& problem);
// `vnni`: the kernels repack K and V for AMX tiles (bf16 on AMX machines) instead of into fp32 rows.
ForwardPlan plan_forward(const detail::Problem& problem, bool vnni);
// `vnni`: as for plan_forward, the kernels repack Q and dO for AMX tiles.
BackwardPlan plan_backward(const detail::Problem& problem, bool vnni);

}  // namespace flashattn::cpu
