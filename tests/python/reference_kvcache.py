"""The KV-cache call and the merge of attention states in NumPy, written from the documented semantics
(include/flashattn/kvcache.hpp, flash-attn's flash_attn_with_kvcache docstring) and sharing nothing with the
library: the new keys are rotated and written into a copy of the cache, each sequence's keys gathered from
its cache positions, and reference.attention run on them with the masks of that sequence's length.

`precision` as in reference.py: FLOAT64 is the ground truth; Precision(dtype) the naive computation in the
input precision, which also rounds the rotated q and k to the dtype (the cache stores them so)."""

import numpy as np

import reference
from reference import FLOAT64


def _pairs(rotary_dim, interleaved):
    """The channels rotated together: (first, second) slices of the head dimension."""
    if interleaved:
        return slice(0, rotary_dim, 2), slice(1, rotary_dim, 2)
    return slice(0, rotary_dim // 2), slice(rotary_dim // 2, rotary_dim)


def rotate(x, cos, sin, positions, interleaved, precision=FLOAT64):
    """x (tokens, heads, head_dim) with the first rotary_dim = 2 * cos.shape[1] channels rotated by the angles
    of `positions` (tokens,): interleaved pairs channels (2i, 2i + 1), otherwise (i, i + rotary_dim / 2)."""
    p = precision
    x = np.asarray(x, dtype=p.compute)
    half = cos.shape[1]
    c = np.asarray(cos, p.compute)[positions][:, None, :]
    s = np.asarray(sin, p.compute)[positions][:, None, :]
    first, second = _pairs(2 * half, interleaved)
    x1, x2 = x[..., first], x[..., second]
    rotated = x.copy()
    rotated[..., first] = x1 * c - x2 * s
    rotated[..., second] = x1 * s + x2 * c
    return p.round(rotated)


def pair_norm(x, rotary_dim, interleaved):
    """|x| per channel, and for rotated channels the norm of the channel pair (which a rotation keeps): the
    scale of the rounding error a rotation computed in fp32 may make."""
    x = np.abs(np.asarray(x, dtype=np.float64))
    first, second = _pairs(rotary_dim, interleaved)
    norm = x.copy()
    norm[..., first] = norm[..., second] = np.hypot(x[..., first], x[..., second])
    return norm


def cache_slot(b, t, page_size, block_table, cache_batch_idx):
    """(row, position) in k_cache / v_cache of token t of sequence b."""
    if block_table is not None:
        return int(block_table[b, t // page_size]), t % page_size
    return (int(cache_batch_idx[b]) if cache_batch_idx is not None else b), t


def kvcache_attention(
    q,
    k_cache,
    v_cache,
    cache_seqlens,
    k=None,
    v=None,
    rotary_cos=None,
    rotary_sin=None,
    cache_batch_idx=None,
    cache_leftpad=None,
    block_table=None,
    rotary_interleaved=True,
    *,
    precision=FLOAT64,
    softmax_scale=None,
    causal=False,
    causal_alignment="bottom_right",
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
):
    """Returns a dict: out (batch, seqlen_q, heads, head_dim_v), lse (batch, heads, seqlen_q), the caches after
    the append (k_cache, v_cache) and `appended`, a boolean (rows, positions) mask of the cache slots written."""
    p = precision
    q, k_cache, v_cache, k, v = (
        None if x is None else p.round(np.asarray(x, np.float64)) for x in (q, k_cache, v_cache, k, v)
    )
    k_cache, v_cache = k_cache.copy(), v_cache.copy()
    batch, seqlen_q = q.shape[:2]
    seqlen_new = 0 if k is None else k.shape[1]
    page_size = k_cache.shape[1]
    appended = np.zeros(k_cache.shape[:2], dtype=bool)
    rotary = rotary_cos is not None
    per_row = causal or tuple(window_size) != (-1, -1)
    scale = q.shape[-1] ** -0.5 if softmax_scale is None else softmax_scale
    slopes = None if alibi_slopes is None else np.asarray(alibi_slopes, np.float64)
    outs, lses = [], []
    for b in range(batch):
        cached = int(cache_seqlens[b])
        leftpad = 0 if cache_leftpad is None else int(cache_leftpad[b])
        if seqlen_new:
            new_k = k[b]
            positions = cached + np.arange(seqlen_new)
            if rotary:
                new_k = rotate(new_k, rotary_cos, rotary_sin, positions, rotary_interleaved, p)
            for j, t in enumerate(positions):
                row, slot = cache_slot(b, t, page_size, block_table, cache_batch_idx)
                k_cache[row, slot], v_cache[row, slot] = new_k[j], v[b, j]
                appended[row, slot] = True
        slots = [cache_slot(b, t, page_size, block_table, cache_batch_idx) for t in range(leftpad, cached + seqlen_new)]
        keys = np.array([k_cache[r, s] for r, s in slots]).reshape((len(slots),) + k_cache.shape[2:])
        values = np.array([v_cache[r, s] for r, s in slots]).reshape((len(slots),) + v_cache.shape[2:])
        qb = q[b]
        if rotary:
            positions = cached + (np.arange(seqlen_q) if per_row else np.zeros(seqlen_q, dtype=np.int64))
            qb = rotate(qb, rotary_cos, rotary_sin, positions, rotary_interleaved, p)
        part = reference.attention(
            qb[None],
            keys[None],
            values[None],
            precision=p,
            softmax_scale=scale,
            causal=causal,
            causal_alignment=causal_alignment,
            window_size=window_size,
            softcap=softcap,
            alibi_slopes=None if slopes is None else (slopes if slopes.ndim == 1 else slopes[b : b + 1]),
        )
        outs.append(part["out"][0])
        lses.append(part["lse"][0])
    out_shape = q.shape[:-1] + v_cache.shape[-1:]
    return {
        "out": np.stack(outs) if outs else np.zeros(out_shape, p.compute),
        "lse": np.stack(lses) if lses else np.zeros((0, q.shape[2], seqlen_q), p.compute),
        "k_cache": k_cache,
        "v_cache": v_cache,
        "appended": appended,
    }


def merge_attention_states(out_a, lse_a, out_b, lse_b, precision=FLOAT64):
    """(out, lse) of the union of two disjoint key sets; rows neither side sees give out 0, lse -inf. Layouts:
    outs (..., seqlen, heads, d) with lses (..., heads, seqlen), batched (rank 4 / 3) or packed (3 / 2)."""
    p = precision
    out_a, out_b = (p.round(np.asarray(x, np.float64)) for x in (out_a, out_b))
    lse_a, lse_b = (np.asarray(x, np.float64).astype(p.compute) for x in (lse_a, lse_b))
    top = np.maximum(lse_a, lse_b)
    seen = np.isfinite(top)
    shift = np.where(seen, top, 0.0)
    weight_a, weight_b = np.exp(lse_a - shift), np.exp(lse_b - shift)
    total = weight_a + weight_b
    lse = np.where(seen, np.log(np.where(seen, total, 1.0)) + shift, -np.inf)
    scale_a = np.where(seen, weight_a / np.where(seen, total, 1.0), 0.0)
    scale_b = np.where(seen, weight_b / np.where(seen, total, 1.0), 0.0)
    # lse (..., heads, seqlen) against out (..., seqlen, heads, d): the scales move to out's layout.
    scale_a, scale_b = (np.swapaxes(s, -1, -2)[..., None] for s in (scale_a, scale_b))
    return p.round(scale_a * out_a + scale_b * out_b), lse.astype(p.compute)
