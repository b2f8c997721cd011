#include "validate.hpp"

#include <cmath>
#include <string>

#include "flashattn/errors.hpp"
#include "validate_rules.hpp"

namespace flashattn::detail {
namespace {

// Checks the contents of cu_seqlens against the packed token count and max_seqlen. Needs host memory:
// only the CPU backend reads it (a GPU backend must not synchronise to look).
void check_cu_seqlens(const char* name, const TensorView& cu, std::int64_t total_tokens, std::int64_t max_seqlen,
                      const char* max_name) {
  const auto* entries = static_cast<const std::int32_t*>(cu.data);
  const std::int64_t batch = cu.shape[0] - 1;
  if (entries[0] < 0) fail(name, "entry 0 is negative (" + str(entries[0]) + ")");
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t length = std::int64_t{entries[b + 1]} - entries[b];
    if (length < 0) {
      fail(name, "must be non-decreasing, entry " + str(b + 1) + " (" + str(entries[b + 1]) + ") < entry " + str(b) +
                     " (" + str(entries[b]) + ")");
    }
    if (length > max_seqlen) {
      fail(max_name,
           "sequence " + str(b) + " has " + str(length) + " tokens, more than " + max_name + " " + str(max_seqlen));
    }
  }
  if (entries[batch] > total_tokens) {
    fail(name, "last entry " + str(entries[batch]) + " exceeds the " + str(total_tokens) + " packed tokens");
  }
}

void check_seqused(const TensorView& seqused, const TensorView& cu_k) {
  const auto* used = static_cast<const std::int32_t*>(seqused.data);
  const auto* cu = static_cast<const std::int32_t*>(cu_k.data);
  for (std::int64_t b = 0; b + 1 < cu_k.shape[0]; ++b) {
    const std::int64_t length = std::int64_t{cu[b + 1]} - cu[b];
    if (used[b] < 0 || used[b] > length) {
      fail("seqused_k", "entry " + str(b) + " (" + str(used[b]) + ") is outside [0, " + str(length) +
                            "], the length of key sequence " + str(b));
    }
  }
}

}  // namespace

Problem validate(const CallTensors& t, const VarlenSeqlens* varlen, const AttentionOptions& options) {
  const bool is_varlen = varlen != nullptr;
  const int rank = is_varlen ? 3 : 4;
  Problem p;
  p.varlen = is_varlen;

  check_layout("q", t.q, rank, is_varlen ? "(total_q, heads_q, head_dim)" : "(batch, seqlen_q, heads_q, head_dim)");
  check_layout("k", t.k, rank, is_varlen ? "(total_k, heads_kv, head_dim)" : "(batch, seqlen_k, heads_kv, head_dim)");
  check_layout("v", t.v, rank,
               is_varlen ? "(total_k, heads_kv, head_dim_v)" : "(batch, seqlen_k, heads_kv, head_dim_v)");
  check_attention_dtype(t.q);
  check_same_dtype("k", t.k, t.q);
  check_same_dtype("v", t.v, t.q);
  p.dtype = t.q.dtype;
  p.device = t.q.device;
  check_same_device("k", t.k, p.device);
  check_same_device("v", t.v, p.device);

  const int h = rank - 2;  // index of the heads dimension
  const int d = rank - 1;  // index of the head_dim dimension
  p.heads_q = t.q.shape[h];
  p.heads_kv = t.k.shape[h];
  p.head_dim = t.q.shape[d];
  p.head_dim_v = t.v.shape[d];
  if (p.heads_q < 1) fail("q", "heads_q must be at least 1, got " + str(p.heads_q));
  if (p.heads_kv < 1) fail("k", "heads_kv must be at least 1, got " + str(p.heads_kv));
  if (p.heads_q % p.heads_kv != 0) {
    fail("q", "heads_q " + str(p.heads_q) + " is not a multiple of k heads_kv " + str(p.heads_kv));
  }
  if (t.k.shape[d] != p.head_dim) {
    fail("k", "head_dim " + str(t.k.shape[d]) + " does not match q head_dim " + str(p.head_dim));
  }
  check_head_dim("q", "head_dim", p.head_dim);
  check_head_dim("v", "head_dim_v", p.head_dim_v);
  if (t.v.shape[h] != p.heads_kv) {
    fail("v", "heads " + str(t.v.shape[h]) + " does not match k heads_kv " + str(p.heads_kv));
  }
  if (t.v.shape[0] != t.k.shape[0] || (!is_varlen && t.v.shape[1] != t.k.shape[1])) {
    fail("v", "shape " + t.v.shape_string() + " does not match k's tokens " + t.k.shape_string());
  }

  if (is_varlen) {
    p.batch = varlen->cu_seqlens_q.rank == 1 ? varlen->cu_seqlens_q.shape[0] - 1 : -1;
    if (p.batch < 0) fail("cu_seqlens_q", "expected 1 dimension (batch + 1) with at least one entry");
    check_index_tensor("cu_seqlens_q", varlen->cu_seqlens_q, p.batch + 1, "(batch + 1)");
    check_index_tensor("cu_seqlens_k", varlen->cu_seqlens_k, p.batch + 1, "(batch + 1), as cu_seqlens_q");
    check_same_device("cu_seqlens_q", varlen->cu_seqlens_q, p.device);
    check_same_device("cu_seqlens_k", varlen->cu_seqlens_k, p.device);
    if (varlen->max_seqlen_q < 0) fail("max_seqlen_q", "must be >= 0, got " + str(varlen->max_seqlen_q));
    if (varlen->max_seqlen_k < 0) fail("max_seqlen_k", "must be >= 0, got " + str(varlen->max_seqlen_k));
    p.seqlen_q = varlen->max_seqlen_q;
    p.seqlen_k = varlen->max_seqlen_k;
    if (varlen->seqused_k) {
      check_index_tensor("seqused_k", *varlen->seqused_k, p.batch, "(batch)");
      check_same_device("seqused_k", *varlen->seqused_k, p.device);
      p.seqused_k = static_cast<const std::int32_t*>(varlen->seqused_k->data);
    }
    p.cu_seqlens_q = static_cast<const std::int32_t*>(varlen->cu_seqlens_q.data);
    p.cu_seqlens_k = static_cast<const std::int32_t*>(varlen->cu_seqlens_k.data);
  } else {
    p.batch = t.q.shape[0];
    p.seqlen_q = t.q.shape[1];
    p.seqlen_k = t.k.shape[1];
    if (t.k.shape[0] != p.batch) fail("k", "batch " + str(t.k.shape[0]) + " does not match q batch " + str(p.batch));
  }

  // Outputs.
  const std::int64_t tokens_q = t.q.shape[0];
  check_layout("out", t.out, rank,
               is_varlen ? "(total_q, heads_q, head_dim_v)" : "(batch, seqlen_q, heads_q, head_dim_v)");
  check_same_dtype("out", t.out, t.q);
  check_same_device("out", t.out, p.device);
  check_no_broadcast("out", t.out);
  if (is_varlen) {
    check_shape("out", t.out, {tokens_q, p.heads_q, p.head_dim_v}, "(total_q, heads_q, head_dim_v)");
  } else {
    check_shape("out", t.out, {p.batch, p.seqlen_q, p.heads_q, p.head_dim_v}, "(batch, seqlen_q, heads_q, head_dim_v)");
  }
  const bool backward = t.dout != nullptr;
  if (t.lse.dtype != DType::kFloat32) fail("lse", std::string("dtype must be fp32, got ") + dtype_name(t.lse.dtype));
  check_layout("lse", t.lse, rank - 1, is_varlen ? "(heads_q, total_q)" : "(batch, heads_q, seqlen_q)");
  check_same_device("lse", t.lse, p.device);
  if (!backward) check_no_broadcast("lse", t.lse);
  if (is_varlen) {
    check_shape("lse", t.lse, {p.heads_q, tokens_q}, "(heads_q, total_q)");
  } else {
    check_shape("lse", t.lse, {p.batch, p.heads_q, p.seqlen_q}, "(batch, heads_q, seqlen_q)");
  }

  p.q = token_tensor(t.q, is_varlen);
  p.k = token_tensor(t.k, is_varlen);
  p.v = token_tensor(t.v, is_varlen);
  p.out = token_tensor(t.out, is_varlen);
  p.lse.data = static_cast<float*>(t.lse.data);
  p.lse.batch_stride = is_varlen ? 0 : t.lse.strides[0];
  p.lse.head_stride = is_varlen ? t.lse.strides[0] : t.lse.strides[1];

  if (backward) {
    const struct {
      const char* name;
      const TensorView* grad;
      const TensorView* like;
      const char* like_name;
      TokenTensor* slot;
    } grads[] = {{"dout", t.dout, &t.out, "out", &p.dout},
                 {"dq", t.dq, &t.q, "q", &p.dq},
                 {"dk", t.dk, &t.k, "k", &p.dk},
                 {"dv", t.dv, &t.v, "v", &p.dv}};
    for (const auto& g : grads) {
      check_layout(g.name, *g.grad, rank, "(the shape of its tensor)");
      check_same_dtype(g.name, *g.grad, t.q);
      check_same_device(g.name, *g.grad, p.device);
      bool same = true;
      for (int dim = 0; dim < rank; ++dim) same = same && g.grad->shape[dim] == g.like->shape[dim];
      if (!same) {
        fail(g.name,
             "shape " + g.grad->shape_string() + " does not match " + g.like_name + " " + g.like->shape_string());
      }
      if (g.slot != &p.dout) check_no_broadcast(g.name, *g.grad);
      *g.slot = token_tensor(*g.grad, is_varlen);
    }
  }

  const AlibiSlopes slopes = check_call_options(options, p.device, p.batch, p.heads_q);
  p.alibi_slopes = slopes.data;
  p.alibi_batch_stride = slopes.batch_stride;

  // Host-side contents checks, for host memory only: reading device memory here would synchronise with
  // the device. The CUDA kernels trust cu_seqlens and seqused_k, as flash-attn's do.
  if (is_varlen) p.tokens_q = tokens_q;
  if (is_varlen && p.device.type == DeviceType::kCPU) {
    check_cu_seqlens("cu_seqlens_q", varlen->cu_seqlens_q, tokens_q, p.seqlen_q, "max_seqlen_q");
    check_cu_seqlens("cu_seqlens_k", varlen->cu_seqlens_k, t.k.shape[0], p.seqlen_k, "max_seqlen_k");
    if (varlen->seqused_k) check_seqused(*varlen->seqused_k, varlen->cu_seqlens_k);
  }

  p.softmax_scale = options.softmax_scale.value_or(1.0f / std::sqrt(static_cast<float>(p.head_dim)));
  p.causal = options.causal;
  p.alignment = options.causal_alignment;
  p.window_left = options.window_left;
  p.window_right = options.causal ? 0 : options.window_right;
  p.softcap = options.softcap;
  p.deterministic = options.deterministic;
  p.num_threads = options.num_threads;
  p.stream = options.stream;
  return p;
}

}  // namespace flashattn::detail
