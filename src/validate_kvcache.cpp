#include "validate_kvcache.hpp"

#include <cmath>
#include <string>

#include "flashattn/errors.hpp"
#include "validate_rules.hpp"

namespace flashattn::detail {
namespace {

KVDType kv_dtype(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
      return KVDType::kFloat16;
    case DType::kBFloat16:
      return KVDType::kBFloat16;
    default:
      return KVDType::kFloat32;
  }
}

const std::int32_t* index_data(const TensorView& t) { return static_cast<const std::int32_t*>(t.data); }

void check_cache(const TensorView& q, const KVCache& c, KVCacheProblem& p) {
  const bool paged = c.block_table.has_value();
  const char* k_layout =
      paged ? "(num_pages, page_size, heads_kv, head_dim)" : "(batch_cache, seqlen_cache, heads_kv, head_dim)";
  const char* v_layout =
      paged ? "(num_pages, page_size, heads_kv, head_dim_v)" : "(batch_cache, seqlen_cache, heads_kv, head_dim_v)";
  check_layout("k_cache", c.k_cache, 4, k_layout);
  check_layout("v_cache", c.v_cache, 4, v_layout);
  check_same_dtype("k_cache", c.k_cache, q);
  check_same_dtype("v_cache", c.v_cache, q);
  check_same_device("k_cache", c.k_cache, q.device);
  check_same_device("v_cache", c.v_cache, q.device);
  check_no_broadcast("k_cache", c.k_cache);
  check_no_broadcast("v_cache", c.v_cache);

  p.heads_kv = c.k_cache.shape[2];
  p.head_dim_v = c.v_cache.shape[3];
  if (p.heads_kv < 1) fail("k_cache", "heads_kv must be at least 1, got " + str(p.heads_kv));
  if (p.heads_q % p.heads_kv != 0) {
    fail("q", "heads_q " + str(p.heads_q) + " is not a multiple of k_cache heads_kv " + str(p.heads_kv));
  }
  if (c.k_cache.shape[3] != p.head_dim) {
    fail("k_cache", "head_dim " + str(c.k_cache.shape[3]) + " does not match q head_dim " + str(p.head_dim));
  }
  check_head_dim("v_cache", "head_dim_v", p.head_dim_v);
  if (c.v_cache.shape[0] != c.k_cache.shape[0] || c.v_cache.shape[1] != c.k_cache.shape[1] ||
      c.v_cache.shape[2] != p.heads_kv) {
    fail("v_cache", "shape " + c.v_cache.shape_string() + " does not match k_cache " + c.k_cache.shape_string() +
                        " in its first three dimensions");
  }

  CacheLayout& layout = p.cache;
  layout.k = token_tensor(c.k_cache, false);
  layout.v = token_tensor(c.v_cache, false);
  layout.rows = c.k_cache.shape[0];
  if (paged) {
    const TensorView& table = *c.block_table;
    if (table.dtype != DType::kInt32)
      fail("block_table", std::string("dtype must be int32, got ") + dtype_name(table.dtype));
    check_layout("block_table", table, 2, "(batch, max_pages_per_sequence)");
    check_same_device("block_table", table, q.device);
    if (table.shape[0] != p.batch) {
      fail("block_table", "batch " + str(table.shape[0]) + " does not match q batch " + str(p.batch));
    }
    if (c.cache_batch_idx) {
      fail("cache_batch_idx", "cannot be used with a paged cache (block_table already maps each sequence)");
    }
    layout.page_size = c.k_cache.shape[1];
    if (layout.page_size < 1) fail("k_cache", "page_size (dimension 1) must be at least 1 with a block_table");
    layout.block_table = index_data(table);
    layout.block_table_stride = table.strides[0];
    layout.max_pages_per_sequence = table.shape[1];
    layout.capacity = table.shape[1] * layout.page_size;
  } else {
    layout.capacity = c.k_cache.shape[1];
    if (c.cache_batch_idx) {
      check_index_tensor("cache_batch_idx", *c.cache_batch_idx, p.batch, "(batch)");
      check_same_device("cache_batch_idx", *c.cache_batch_idx, q.device);
      layout.cache_batch_idx = index_data(*c.cache_batch_idx);
    } else if (layout.rows != p.batch) {
      fail("k_cache", "batch_cache " + str(layout.rows) + " does not match q batch " + str(p.batch) +
                          " (pass cache_batch_idx to pick rows of a larger cache)");
    }
  }
}

void check_new_tokens(const TensorView& q, const KVCache& c, KVCacheProblem& p) {
  if (c.k_new.has_value() != c.v_new.has_value()) {
    fail(c.k_new ? "v_new" : "k_new", "k_new and v_new are given together or not at all");
  }
  if (!c.k_new) return;
  const TensorView& k = *c.k_new;
  const TensorView& v = *c.v_new;
  check_layout("k_new", k, 4, "(batch, seqlen_new, heads_kv, head_dim)");
  check_layout("v_new", v, 4, "(batch, seqlen_new, heads_kv, head_dim_v)");
  check_same_dtype("k_new", k, q);
  check_same_dtype("v_new", v, q);
  check_same_device("k_new", k, q.device);
  check_same_device("v_new", v, q.device);
  p.seqlen_new = k.shape[1];
  check_shape("k_new", k, {p.batch, p.seqlen_new, p.heads_kv, p.head_dim}, "(batch, seqlen_new, heads_kv, head_dim)");
  check_shape("v_new", v, {p.batch, p.seqlen_new, p.heads_kv, p.head_dim_v},
              "(batch, seqlen_new, heads_kv, head_dim_v), as k_new");
  if (p.seqlen_new > p.cache.capacity) {
    fail("k_new", "seqlen_new " + str(p.seqlen_new) + " exceeds the cache's capacity of " + str(p.cache.capacity) +
                      " tokens a sequence");
  }
  p.k_new = token_tensor(k, false);
  p.v_new = token_tensor(v, false);
}

void check_rotary(const TensorView& q, const KVCache& c, KVCacheProblem& p) {
  if (c.rotary_cos.has_value() != c.rotary_sin.has_value()) {
    fail(c.rotary_cos ? "rotary_sin" : "rotary_cos", "rotary_cos and rotary_sin are given together or not at all");
  }
  if (!c.rotary_cos) return;
  if (!c.k_new) fail("rotary_cos", "needs k_new: the rotary embedding rotates the appended keys and q");
  const TensorView& cos = *c.rotary_cos;
  const TensorView& sin = *c.rotary_sin;
  check_layout("rotary_cos", cos, 2, "(seqlen_ro, rotary_dim / 2)");
  check_layout("rotary_sin", sin, 2, "(seqlen_ro, rotary_dim / 2)");
  check_same_dtype("rotary_cos", cos, q);
  check_same_dtype("rotary_sin", sin, q);
  check_same_device("rotary_cos", cos, q.device);
  check_same_device("rotary_sin", sin, q.device);
  check_shape("rotary_sin", sin, {cos.shape[0], cos.shape[1]}, "rotary_cos's shape");
  RotaryEmbedding& r = p.rotary;
  r.rotary_dim = 2 * cos.shape[1];
  r.seqlen_ro = cos.shape[0];
  if (r.rotary_dim < 2 || r.rotary_dim > p.head_dim) {
    fail("rotary_cos",
         "rotary_dim (2 x dimension 1) " + str(r.rotary_dim) + " must be in [2, head_dim " + str(p.head_dim) + "]");
  }
  if (r.seqlen_ro < p.cache.capacity) {
    fail("rotary_cos", "seqlen_ro " + str(r.seqlen_ro) + " is shorter than the cache's capacity of " +
                           str(p.cache.capacity) + " positions");
  }
  r.cos = cos.data;
  r.sin = sin.data;
  r.cos_stride = cos.strides[0];
  r.sin_stride = sin.strides[0];
  r.interleaved = c.rotary_interleaved;
}

// Host-resident index tensors (CPU backend) are checked against the preconditions of kvcache.hpp; a GPU
// backend would have to synchronise to read them, so its kernels guard their accesses instead.
void check_host_indices(const KVCacheProblem& p) {
  const CacheLayout& c = p.cache;
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t cached = p.cache_seqlens[b];
    const std::int64_t total = cached + p.seqlen_new;
    if (cached < 0 || total > c.capacity) {
      fail("cache_seqlens", "entry " + str(b) + " (" + str(cached) + ") plus seqlen_new " + str(p.seqlen_new) +
                                " is outside [0, " + str(c.capacity) + "], the cache's capacity");
    }
    const std::int64_t leftpad = p.cache_leftpad != nullptr ? p.cache_leftpad[b] : 0;
    if (leftpad < 0 || leftpad > cached) {
      fail("cache_leftpad", "entry " + str(b) + " (" + str(leftpad) + ") is outside [0, cache_seqlens[" + str(b) +
                                "] = " + str(cached) + "]");
    }
    if (c.cache_batch_idx != nullptr && (c.cache_batch_idx[b] < 0 || c.cache_batch_idx[b] >= c.rows)) {
      fail("cache_batch_idx",
           "entry " + str(b) + " (" + str(c.cache_batch_idx[b]) + ") is outside [0, " + str(c.rows) + ")");
    }
    // q is rotated at cache_seqlens[b] (+ i per row), which seqlen_ro >= capacity does not bound.
    const std::int64_t last_query_position = cached + (p.rotary_per_row() ? p.seqlen_q - 1 : 0);
    if (p.rotary.cos != nullptr && p.seqlen_q > 0 && last_query_position >= p.rotary.seqlen_ro) {
      fail("rotary_cos", "seqlen_ro " + str(p.rotary.seqlen_ro) + " does not reach query position " +
                             str(last_query_position) + " of sequence " + str(b));
    }
    if (c.page_size == 0 || total == leftpad) continue;
    for (std::int64_t page = leftpad / c.page_size; page <= (total - 1) / c.page_size; ++page) {
      const std::int64_t entry = c.block_table[b * c.block_table_stride + page];
      if (entry < 0 || entry >= c.rows) {
        fail("block_table", "entry (" + str(b) + ", " + str(page) + ") = " + str(entry) + " is outside [0, " +
                                str(c.rows) + "), the cache's pages");
      }
    }
  }
}

}  // namespace

KVCacheProblem validate_kvcache(const TensorView& q, const KVCache& cache, const TensorView& out, const TensorView& lse,
                                const AttentionOptions& options, const KVCacheSchedule& schedule) {
  KVCacheProblem p;
  check_layout("q", q, 4, "(batch, seqlen_q, heads_q, head_dim)");
  check_attention_dtype(q);
  p.dtype = kv_dtype(q.dtype);
  p.on_cuda = q.device.type == DeviceType::kCUDA;
  p.device_index = q.device.index;
  p.batch = q.shape[0];
  p.seqlen_q = q.shape[1];
  p.heads_q = q.shape[2];
  p.head_dim = q.shape[3];
  if (p.heads_q < 1) fail("q", "heads_q must be at least 1, got " + str(p.heads_q));
  check_head_dim("q", "head_dim", p.head_dim);

  check_cache(q, cache, p);
  check_index_tensor("cache_seqlens", cache.cache_seqlens, p.batch, "(batch)");
  check_same_device("cache_seqlens", cache.cache_seqlens, q.device);
  p.cache_seqlens = index_data(cache.cache_seqlens);
  if (cache.cache_leftpad) {
    check_index_tensor("cache_leftpad", *cache.cache_leftpad, p.batch, "(batch)");
    check_same_device("cache_leftpad", *cache.cache_leftpad, q.device);
    p.cache_leftpad = index_data(*cache.cache_leftpad);
  }
  check_new_tokens(q, cache, p);
  check_rotary(q, cache, p);

  check_layout("out", out, 4, "(batch, seqlen_q, heads_q, head_dim_v)");
  check_same_dtype("out", out, q);
  check_same_device("out", out, q.device);
  check_no_broadcast("out", out);
  check_shape("out", out, {p.batch, p.seqlen_q, p.heads_q, p.head_dim_v}, "(batch, seqlen_q, heads_q, head_dim_v)");
  if (lse.dtype != DType::kFloat32) fail("lse", std::string("dtype must be fp32, got ") + dtype_name(lse.dtype));
  check_layout("lse", lse, 3, "(batch, heads_q, seqlen_q)");
  check_same_device("lse", lse, q.device);
  check_no_broadcast("lse", lse);
  check_shape("lse", lse, {p.batch, p.heads_q, p.seqlen_q}, "(batch, heads_q, seqlen_q)");
  p.q = token_tensor(q, false);
  p.out = token_tensor(out, false);
  p.lse.data = static_cast<float*>(lse.data);
  p.lse.batch_stride = lse.strides[0];
  p.lse.head_stride = lse.strides[1];

  const AlibiSlopes slopes = check_call_options(options, q.device, p.batch, p.heads_q);
  p.alibi_slopes = slopes.data;
  p.alibi_batch_stride = slopes.batch_stride;

  if (schedule.num_splits < 0) {
    fail("num_splits", "must be >= 0 (0 = choose, 1 = unsplit), got " + str(schedule.num_splits));
  }
  p.num_splits = schedule.num_splits;
  if (schedule.workspace) {
    const TensorView& w = *schedule.workspace;
    if (w.dtype != DType::kFloat32) fail("workspace", std::string("dtype must be fp32, got ") + dtype_name(w.dtype));
    check_layout("workspace", w, 1, "(elements)");
    check_same_device("workspace", w, q.device);
    p.workspace = static_cast<float*>(w.data);
    p.workspace_size = w.shape[0];
  }

  p.softmax_scale = options.softmax_scale.value_or(1.0f / std::sqrt(static_cast<float>(p.head_dim)));
  p.causal = options.causal;
  p.bottom_right = options.causal_alignment == CausalAlignment::kBottomRight;
  p.window_left = options.window_left;
  p.window_right = options.causal ? 0 : options.window_right;
  // As flash-attn does, a window side as long as the cache is unbounded: it decides whether q's rotary
  // position is per row (kvcache.hpp).
  if (p.window_left >= p.cache.capacity) p.window_left = -1;
  if (p.window_right >= p.cache.capacity) p.window_right = -1;
  p.softcap = options.softcap;
  p.num_threads = options.num_threads;
  p.stream = options.stream;

  if (!p.on_cuda) check_host_indices(p);
  return p;
}

MergeProblem validate_merge(const TensorView& out_a, const TensorView& lse_a, const TensorView& out_b,
                            const TensorView& lse_b, const TensorView& out, const TensorView& lse,
                            const AttentionOptions& options) {
  MergeProblem p;
  const bool packed = out.rank == 3;
  const int rank = packed ? 3 : 4;
  const char* out_layout = packed ? "(tokens, heads, head_dim)" : "(batch, seqlen, heads, head_dim)";
  const char* lse_layout = packed ? "(heads, tokens)" : "(batch, heads, seqlen)";
  check_layout("out", out, rank, packed ? out_layout : "(batch, seqlen, heads, head_dim) or (tokens, heads, head_dim)");
  p.on_cuda = out.device.type == DeviceType::kCUDA;
  p.device_index = out.device.index;
  p.batch = packed ? 1 : out.shape[0];
  p.seqlen = out.shape[rank - 3];
  p.heads = out.shape[rank - 2];
  p.head_dim = out.shape[rank - 1];
  const struct {
    const char* name;
    const TensorView& view;
    TokenTensor* slot;
    KVDType* dtype;
  } outs[] = {{"out_a", out_a, &p.out_a, &p.dtype_a},
              {"out_b", out_b, &p.out_b, &p.dtype_b},
              {"out", out, &p.out, &p.dtype_out}};
  for (const auto& o : outs) {
    check_layout(o.name, o.view, rank, out_layout);
    if (o.view.dtype != DType::kFloat32 && o.view.dtype != DType::kFloat16 && o.view.dtype != DType::kBFloat16) {
      fail(o.name, std::string("dtype must be fp32, fp16 or bf16, got ") + dtype_name(o.view.dtype));
    }
    check_same_device(o.name, o.view, out.device);
    if (packed) {
      check_shape(o.name, o.view, {p.seqlen, p.heads, p.head_dim}, "out's shape");
    } else {
      check_shape(o.name, o.view, {p.batch, p.seqlen, p.heads, p.head_dim}, "out's shape");
    }
    *o.slot = token_tensor(o.view, packed);
    *o.dtype = kv_dtype(o.view.dtype);
  }
  check_no_broadcast("out", out);
  const struct {
    const char* name;
    const TensorView& view;
    LseTensor* slot;
  } lses[] = {{"lse_a", lse_a, &p.lse_a}, {"lse_b", lse_b, &p.lse_b}, {"lse", lse, &p.lse}};
  for (const auto& l : lses) {
    if (l.view.dtype != DType::kFloat32)
      fail(l.name, std::string("dtype must be fp32, got ") + dtype_name(l.view.dtype));
    check_layout(l.name, l.view, rank - 1, lse_layout);
    check_same_device(l.name, l.view, out.device);
    if (packed) {
      check_shape(l.name, l.view, {p.heads, p.seqlen}, lse_layout);
    } else {
      check_shape(l.name, l.view, {p.batch, p.heads, p.seqlen}, lse_layout);
    }
    l.slot->data = static_cast<float*>(l.view.data);
    l.slot->batch_stride = packed ? 0 : l.view.strides[0];
    l.slot->head_stride = l.view.strides[rank - 3];
  }
  check_no_broadcast("lse", lse);
  select_backend(options, out.device, "out");
  p.stream = options.stream;
  return p;
}

}  // namespace flashattn::detail
