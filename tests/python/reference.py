"""Plain attention in NumPy, written from the documented semantics and sharing nothing with the library: the
float64 ground truth, and the same naive math in the input's precision (the yardstick of the tolerance
rule, see conftest.check_close).

Naive precision follows PyTorch's eager attention in fp16/bf16: products accumulate in fp32 and are rounded
to the input dtype (scores, probabilities, output, each gradient product), the softmax runs in fp32. For
fp32 inputs everything is fp32.
"""

import numpy as np


class Precision:
    """Where results are rounded: to `storage` ("float64", "float32", "float16" or "bfloat16", the input
    dtype), from `compute`, the accumulation dtype (float64 for the ground truth, else float32)."""

    def __init__(self, storage):
        self.storage = storage
        self.compute = np.float64 if storage == "float64" else np.float32

    @property
    def exact(self):
        return self.storage == "float64"

    def round(self, x):
        x = np.asarray(x, dtype=self.compute)
        if self.storage == "float16":
            return x.astype(np.float16).astype(np.float32)
        if self.storage == "bfloat16":  # round to nearest even on the upper 16 bits (no ml_dtypes needed)
            bits = x.view(np.uint32)
            return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
        return x


FLOAT64 = Precision("float64")


def visible_keys(seqlen_q, seqlen_k, causal, alignment, window):
    """Boolean (seqlen_q, seqlen_k): which keys each query sees, and the signed distance i' - j of each
    pair, i' being the query's diagonal key (bottom-right: i + seqlen_k - seqlen_q; top-left: i)."""
    shift = seqlen_k - seqlen_q if alignment == "bottom_right" else 0
    diagonal = np.arange(seqlen_q)[:, None] + shift
    distance = diagonal - np.arange(seqlen_k)[None, :]
    left, right = window
    if causal:
        right = 0
    visible = np.ones((seqlen_q, seqlen_k), dtype=bool)
    if left >= 0:
        visible &= distance <= left
    if right >= 0:
        visible &= -distance <= right
    return visible, distance


def _sequence(q, k, v, dout, p, scale, causal, alignment, window, softcap, slopes):
    """One sequence: q (sq, h, d), k (sk, hk, d), v (sk, hk, dv), dout (sq, h, dv) or None; slopes (h,)
    or None. Returns out (sq, h, dv), lse (h, sq) and, with dout, dq, dk, dv."""
    seqlen_q, heads, _ = q.shape
    seqlen_k, heads_kv, _ = k.shape
    group = heads // heads_kv
    qh = q.transpose(1, 0, 2)  # (h, sq, d)
    kh = np.repeat(k.transpose(1, 0, 2), group, axis=0)  # (h, sk, d): query head h reads KV head h // group
    vh = np.repeat(v.transpose(1, 0, 2), group, axis=0)

    scores = p.round((qh @ kh.transpose(0, 2, 1)) * p.compute(scale))
    if softcap > 0:
        capped = np.tanh(scores / softcap)
        scores = p.round(softcap * capped)
    visible, distance = visible_keys(seqlen_q, seqlen_k, causal, alignment, window)
    if slopes is not None:
        scores = scores - slopes.astype(p.compute)[:, None, None] * np.abs(distance)[None]
    scores = np.where(visible[None], scores, -np.inf)

    row_max = scores.max(axis=-1, initial=-np.inf, keepdims=True)
    seen = np.isfinite(row_max)  # rows with at least one visible key
    shifted = np.exp(scores - np.where(seen, row_max, 0.0))
    row_sum = shifted.sum(axis=-1, keepdims=True)
    lse = np.where(seen, np.log(np.where(seen, row_sum, 1.0)) + np.where(seen, row_max, 0.0), -np.inf)
    probs = p.round(np.where(seen, shifted / np.where(seen, row_sum, 1.0), 0.0))
    out = p.round(probs @ vh)  # (h, sq, dv)
    result = {"out": out.transpose(1, 0, 2), "lse": lse[..., 0]}
    if dout is None:
        return result

    douth = dout.transpose(1, 0, 2)
    dprobs = p.round(douth @ vh.transpose(0, 2, 1))
    # The ground truth uses D = dout . out, as flash-attn; eager attention differentiates the softmax as
    # P * (dP - sum(P * dP)). Both are the same number in exact arithmetic.
    if p.exact:
        rowdot = (douth * out).sum(axis=-1, keepdims=True)
    else:
        rowdot = (probs * dprobs).sum(axis=-1, keepdims=True)
    dscores = p.round(probs * (dprobs - rowdot))
    if softcap > 0:
        dscores = p.round(dscores * (1.0 - capped * capped))
    dq = p.round((dscores @ kh) * p.compute(scale))
    dk_heads = p.round((dscores.transpose(0, 2, 1) @ qh) * p.compute(scale))
    dv_heads = p.round(probs.transpose(0, 2, 1) @ douth)
    # dk and dv sum over the query heads that share a KV head.
    dk = p.round(dk_heads.reshape(heads_kv, group, seqlen_k, k.shape[-1]).sum(axis=1))
    dv = p.round(dv_heads.reshape(heads_kv, group, seqlen_k, v.shape[-1]).sum(axis=1))
    result.update(dq=dq.transpose(1, 0, 2), dk=dk.transpose(1, 0, 2), dv=dv.transpose(1, 0, 2))
    return result


def attention(
    q,
    k,
    v,
    dout=None,
    *,
    precision=FLOAT64,
    softmax_scale=None,
    causal=False,
    causal_alignment="bottom_right",
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
    seqused_k=None,
):
    """out, lse (and dq, dk, dv with dout) of attention in flash-attn's layouts, as a dict of arrays in
    `precision.compute`. Variable length when cu_seqlens_q is given: rows past the last sequence (and keys
    past seqused_k) are left at 0 in out, dq, dk, dv and at -inf in lse."""
    p = precision
    q, k, v, dout = (None if x is None else p.round(np.asarray(x, dtype=np.float64)) for x in (q, k, v, dout))
    scale = q.shape[-1] ** -0.5 if softmax_scale is None else softmax_scale
    slopes = None if alibi_slopes is None else np.asarray(alibi_slopes, dtype=np.float64)
    options = dict(causal=causal, alignment=causal_alignment, window=window_size, softcap=softcap)

    def slopes_of(b):
        return None if slopes is None else (slopes if slopes.ndim == 1 else slopes[b])

    if cu_seqlens_q is None:
        parts = [
            _sequence(q[b], k[b], v[b], None if dout is None else dout[b], p, scale, slopes=slopes_of(b), **options)
            for b in range(q.shape[0])
        ]
        return (
            {name: np.stack([part[name] for part in parts]) for name in parts[0]} if parts else _empty(q, k, v, dout, p)
        )

    result = _empty(q, k, v, dout, p)
    result["lse"] = np.full((q.shape[1], q.shape[0]), -np.inf, dtype=p.compute)
    for b in range(len(cu_seqlens_q) - 1):
        q0, q1 = int(cu_seqlens_q[b]), int(cu_seqlens_q[b + 1])
        k0, k1 = int(cu_seqlens_k[b]), int(cu_seqlens_k[b + 1])
        if seqused_k is not None:
            k1 = k0 + int(seqused_k[b])
        part = _sequence(
            q[q0:q1],
            k[k0:k1],
            v[k0:k1],
            None if dout is None else dout[q0:q1],
            p,
            scale,
            slopes=slopes_of(b),
            **options,
        )
        result["out"][q0:q1] = part["out"]
        result["lse"][:, q0:q1] = part["lse"]
        if dout is not None:
            result["dq"][q0:q1] = part["dq"]
            result["dk"][k0:k1] = part["dk"]
            result["dv"][k0:k1] = part["dv"]
    return result


def _empty(q, k, v, dout, p):
    """Zero results of the right shapes (a batch of 0, or the frame the varlen sequences fill)."""
    out_shape = q.shape[:-1] + v.shape[-1:]
    lse_shape = (q.shape[0], q.shape[2], q.shape[1]) if q.ndim == 4 else (q.shape[1], q.shape[0])
    result = {"out": np.zeros(out_shape, p.compute), "lse": np.full(lse_shape, -np.inf, p.compute)}
    if dout is not None:
        result.update(dq=np.zeros(q.shape, p.compute), dk=np.zeros(k.shape, p.compute), dv=np.zeros(v.shape, p.compute))
    return result
