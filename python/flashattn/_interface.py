"""flash-attn 2.x's functions: same names, arguments, defaults and return conventions, on PyTorch tensors
(autograd and torch.compile through the custom ops of _torch_ops) and on NumPy or CuPy arrays (forward
only; attention_backward gives their gradients). What flash-attn does not have comes as keyword-only
arguments with defaults that keep flash-attn's behaviour."""

from flashattn._arrays import TorchTensors, framework_of
from flashattn._calls import attention_forward, check_causal_alignment, output_shapes, varlen_arguments, window_pair

try:
    import torch
except ImportError:
    torch = None
if torch is not None and not hasattr(torch.library, "register_fake"):
    torch = None  # torch < 2.4: no register_fake; its tensors then go the way of NumPy arrays (no autograd)
if torch is not None:
    import flashattn._torch_ops  # noqa: F401  (registers torch.ops.flashattn.forward and .backward)

# flash-attn pads head dimensions to a multiple of 8 and slices the output back; so do we.
_HEAD_DIM_MULTIPLE = 8

_COMMON_DOC = """
    Arguments and results as flash-attn 2.x (its docstrings apply); in short:
        dropout_p: must be 0.0 (NotImplementedError otherwise: flashattn has no dropout yet).
        softmax_scale: multiplies q.k; default 1 / sqrt(headdim).
        causal: causal mask, aligned to the bottom-right corner of the score matrix when
            seqlen_q != seqlen_k (see causal_alignment).
        window_size: (left, right) sliding window around the causal diagonal; -1 = unbounded.
        softcap: > 0 caps the scores: softcap * tanh(score / softcap).
        alibi_slopes: fp32 (nheads,) or (batch_size, nheads): adds -slope * |i + seqlen_k - seqlen_q - j|.
        deterministic: reproducible backward on GPUs (the CPU backend always is).
        return_attn_probs: return (out, softmax_lse, None) instead of out; without dropout flash-attn's
            third result is None too. softmax_lse is fp32, (batch_size, nheads, seqlen_q), or
            (nheads, total_q) for the varlen functions; rows that see no key give -inf (flash-attn: +inf).
    Beyond flash-attn (keyword-only):
        causal_alignment: "bottom_right" (default, flash-attn) or "top_left" (PyTorch's is_causal: query i
            sees keys j <= i); places the window and the ALiBi distance too.
    PyTorch tensors: differentiable (dq, dk, dv; not through softmax_lse), torch.compile(fullgraph=True)
    compiles them without graph breaks. NumPy and CuPy arrays: forward only, results of the same framework;
    use flashattn.attention_backward for the gradients. head dims that are not multiples of 8 are padded
    with zeros, as flash-attn does; at most 256.
"""


def _check_dropout(dropout_p):
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p: must be in [0, 1), got {dropout_p!r}")
    if dropout_p > 0.0:
        raise NotImplementedError(
            f"dropout_p={dropout_p!r}: flashattn has no attention dropout yet; pass dropout_p=0.0"
        )


def _check_packed(name, packed, layout, axis, count):
    """qkv or kv: `count` tensors stacked along `axis` of an array of len(layout) dimensions."""
    if packed.ndim != len(layout) or packed.shape[axis] != count:
        raise ValueError(f"{name}: expected shape ({', '.join(layout)}), got {tuple(packed.shape)}")


def _pad_head_dim(framework, x):
    remainder = x.shape[-1] % _HEAD_DIM_MULTIPLE
    return x if remainder == 0 else framework.pad_last(x, _HEAD_DIM_MULTIPLE - remainder)


def _varlen(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k=None):
    for name, value in (("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)):
        if value is None:
            raise ValueError(f"{name}: required by the varlen functions (int32, batch_size + 1 offsets)")
    return varlen_arguments(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k)


def _attention(q, k, v, varlen, options, causal_alignment):
    """Every flash_attn_* function once q, k and v are unpacked: `varlen` as _calls.varlen_arguments gives
    it ({} for the batched layout), `options` the arguments all share, in flash-attn's order."""
    dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs = options
    _check_dropout(dropout_p)
    window_left, window_right = window_pair(window_size)
    check_causal_alignment(causal_alignment)
    is_torch = torch is not None and isinstance(q, torch.Tensor)
    framework = TorchTensors if is_torch else framework_of(q, k, v)
    output_shapes(q, v, "cu_seqlens_q" in varlen)  # the rank checks, before the shapes are read
    head_dim_v = v.shape[-1]
    if softmax_scale is None:
        softmax_scale = q.shape[-1] ** -0.5  # of the head dim before padding, as flash-attn
    q, k, v = (_pad_head_dim(framework, x) for x in (q, k, v))
    if is_torch:
        out, softmax_lse = torch.ops.flashattn.forward(
            q,
            k,
            v,
            varlen.get("cu_seqlens_q"),
            varlen.get("cu_seqlens_k"),
            varlen.get("seqused_k"),
            varlen.get("max_seqlen_q", 0),
            varlen.get("max_seqlen_k", 0),
            alibi_slopes,
            float(softmax_scale),
            bool(causal),
            causal_alignment,
            window_left,
            window_right,
            float(softcap),
            bool(deterministic),
        )
    else:
        out, softmax_lse = attention_forward(
            q,
            k,
            v,
            **varlen,
            softmax_scale=softmax_scale,
            causal=causal,
            causal_alignment=causal_alignment,
            window_size=(window_left, window_right),
            softcap=softcap,
            alibi_slopes=alibi_slopes,
        )
    if out.shape[-1] != head_dim_v:  # v was padded; a slice of the unpadded output costs 2 us a call otherwise
        out = out[..., :head_dim_v]
    return (out, softmax_lse, None) if return_attn_probs else out


def flash_attn_func(
    q,
    k,
    v,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    *,
    causal_alignment="bottom_right",
):
    """q (batch_size, seqlen_q, nheads, headdim), k and v (batch_size, seqlen_k, nheads_k, headdim), nheads
    a multiple of nheads_k (MQA/GQA). Returns out (batch_size, seqlen_q, nheads, headdim)."""
    options = (dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)
    return _attention(q, k, v, {}, options, causal_alignment)


def flash_attn_qkvpacked_func(
    qkv,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    *,
    causal_alignment="bottom_right",
):
    """qkv (batch_size, seqlen, 3, nheads, headdim). Returns out (batch_size, seqlen, nheads, headdim)."""
    _check_packed("qkv", qkv, ("batch_size", "seqlen", "3", "nheads", "headdim"), 2, 3)
    options = (dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)
    return _attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], {}, options, causal_alignment)


def flash_attn_kvpacked_func(
    q,
    kv,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    *,
    causal_alignment="bottom_right",
):
    """q (batch_size, seqlen_q, nheads, headdim), kv (batch_size, seqlen_k, 2, nheads_k, headdim).
    Returns out (batch_size, seqlen_q, nheads, headdim)."""
    _check_packed("kv", kv, ("batch_size", "seqlen_k", "2", "nheads_k", "headdim"), 2, 2)
    options = (dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)
    return _attention(q, kv[:, :, 0], kv[:, :, 1], {}, options, causal_alignment)


def flash_attn_varlen_func(
    q,
    k,
    v,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    block_table=None,
    *,
    causal_alignment="bottom_right",
    seqused_k=None,
):
    """q (total_q, nheads, headdim), k and v (total_k, nheads_k, headdim): sequences packed back to back,
    cu_seqlens_q / cu_seqlens_k int32 (batch_size + 1,) offsets. Returns out (total_q, nheads, headdim).
    block_table (paged KV cache) is not supported. Beyond flash-attn: seqused_k, int32 (batch_size,), the
    keys used of each sequence."""
    if block_table is not None:
        raise NotImplementedError("block_table: flashattn has no paged KV cache yet")
    varlen = _varlen(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k)
    options = (dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)
    return _attention(q, k, v, varlen, options, causal_alignment)


def flash_attn_varlen_qkvpacked_func(
    qkv,
    cu_seqlens,
    max_seqlen,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    *,
    causal_alignment="bottom_right",
):
    """qkv (total, 3, nheads, headdim), cu_seqlens int32 (batch_size + 1,). Returns out (total, nheads,
    headdim)."""
    _check_packed("qkv", qkv, ("total", "3", "nheads", "headdim"), 1, 3)
    varlen = _varlen(cu_seqlens, cu_seqlens, max_seqlen, max_seqlen)
    options = (dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)
    return _attention(qkv[:, 0], qkv[:, 1], qkv[:, 2], varlen, options, causal_alignment)


def flash_attn_varlen_kvpacked_func(
    q,
    kv,
    cu_seqlens_q,
    cu_seqlens_k,
    max_seqlen_q,
    max_seqlen_k,
    dropout_p=0.0,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    return_attn_probs=False,
    *,
    causal_alignment="bottom_right",
):
    """q (total_q, nheads, headdim), kv (total_k, 2, nheads_k, headdim). Returns out (total_q, nheads,
    headdim)."""
    _check_packed("kv", kv, ("total_k", "2", "nheads_k", "headdim"), 1, 2)
    varlen = _varlen(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    options = (dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)
    return _attention(q, kv[:, 0], kv[:, 1], varlen, options, causal_alignment)


for _function in (
    flash_attn_func,
    flash_attn_qkvpacked_func,
    flash_attn_kvpacked_func,
    flash_attn_varlen_func,
    flash_attn_varlen_qkvpacked_func,
    flash_attn_varlen_kvpacked_func,
):
    _function.__doc__ += _COMMON_DOC
