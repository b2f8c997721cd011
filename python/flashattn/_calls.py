"""attention_forward and attention_backward: the library's two calls on arrays of any framework flashattn
takes, outputs allocated in that framework (or given by the caller), no autograd. The flash-attn functions
and the PyTorch custom ops are built on the same native calls."""

from flashattn import _ext
from flashattn._arrays import framework_of

CAUSAL_ALIGNMENTS = ("bottom_right", "top_left")


def window_pair(window_size):
    """flash-attn's window_size, (left, right), as two ints; ValueError for anything else."""
    try:
        left, right = window_size
    except (TypeError, ValueError):
        raise ValueError(f"window_size: expected a pair (left, right), got {window_size!r}") from None
    if not all(isinstance(side, int) and not isinstance(side, bool) for side in (left, right)):
        raise ValueError(f"window_size: expected two ints (-1 = unbounded), got {window_size!r}")
    return left, right


def check_causal_alignment(causal_alignment):
    if causal_alignment not in CAUSAL_ALIGNMENTS:
        raise ValueError(f"causal_alignment: expected one of {CAUSAL_ALIGNMENTS}, got {causal_alignment!r}")


def output_shapes(q, v, varlen):
    """The shapes of out and softmax_lse for these inputs, flash-attn's layouts."""
    rank = 3 if varlen else 4
    layout = "(total_q, heads, head_dim)" if varlen else "(batch, seqlen_q, heads, head_dim)"
    for name, array in (("q", q), ("v", v)):
        if array.ndim != rank:
            raise ValueError(f"{name}: expected {rank} dimensions {layout}, got shape {tuple(array.shape)}")
    out_shape = tuple(q.shape[:-1]) + (v.shape[-1],)
    if varlen:
        return out_shape, (q.shape[1], q.shape[0])
    return out_shape, (q.shape[0], q.shape[2], q.shape[1])


def _exported_varlen(framework, varlen):
    return {
        name: value if value is None or isinstance(value, int) else framework.export(value)
        for name, value in varlen.items()
    }


def native_forward(framework, q, k, v, out, lse, varlen, options):
    """out, lse = attention(q, k, v) through the native module; `varlen` and `options` as `_ext.forward`
    takes them (keyword arguments), on the current stream of q's framework."""
    export = framework.export
    _ext.forward(
        export(q),
        export(k),
        export(v),
        export(out),
        export(lse),
        **_exported_varlen(framework, varlen),
        **options,
        stream=framework.stream(q),
        bits_dtype=framework.bits_dtype(q),
    )


def native_backward(framework, dout, q, k, v, out, lse, dq, dk, dv, varlen, options):
    """dq, dk, dv of attention(q, k, v) through the native module (see native_forward)."""
    export = framework.export
    _ext.backward(
        export(dout),
        export(q),
        export(k),
        export(v),
        export(out),
        export(lse),
        export(dq),
        export(dk),
        export(dv),
        **_exported_varlen(framework, varlen),
        **options,
        stream=framework.stream(q),
        bits_dtype=framework.bits_dtype(q),
    )


def native_options(framework, softmax_scale, causal, causal_alignment, window_size, softcap, alibi_slopes):
    """The keyword arguments `_ext.forward` and `_ext.backward` share, from the Python-level options."""
    check_causal_alignment(causal_alignment)
    window_left, window_right = window_pair(window_size)
    return {
        "alibi_slopes": None if alibi_slopes is None else framework.export(alibi_slopes),
        "softmax_scale": None if softmax_scale is None else float(softmax_scale),
        "causal": bool(causal),
        "causal_alignment": causal_alignment,
        "window_left": window_left,
        "window_right": window_right,
        "softcap": float(softcap),
    }


def varlen_arguments(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k):
    """The variable-length keyword arguments, or {} for the batched layout."""
    if cu_seqlens_q is None and cu_seqlens_k is None:
        if seqused_k is not None:
            raise ValueError("seqused_k: needs the variable-length layout (cu_seqlens_q and cu_seqlens_k)")
        return {}
    for name, value in (("max_seqlen_q", max_seqlen_q), ("max_seqlen_k", max_seqlen_k)):
        if value is None:
            raise ValueError(f"{name}: required with cu_seqlens_q and cu_seqlens_k")
    return {
        "cu_seqlens_q": cu_seqlens_q,
        "cu_seqlens_k": cu_seqlens_k,
        "seqused_k": seqused_k,
        "max_seqlen_q": int(max_seqlen_q),
        "max_seqlen_k": int(max_seqlen_k),
    }


def attention_forward(
    q,
    k,
    v,
    *,
    out=None,
    softmax_lse=None,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
    max_seqlen_q=None,
    max_seqlen_k=None,
    seqused_k=None,
    softmax_scale=None,
    causal=False,
    causal_alignment="bottom_right",
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    num_threads=0,
):
    """Attention forward on NumPy, CuPy or PyTorch arrays: returns (out, softmax_lse).

    Layouts as flash-attn: q (batch, seqlen_q, heads, head_dim), k and v (batch, seqlen_k, heads_kv, ...),
    out (batch, seqlen_q, heads, head_dim_v), softmax_lse (batch, heads, seqlen_q) fp32; with cu_seqlens_q
    and cu_seqlens_k (int32, batch + 1) the sequences are packed: q (total_q, heads, head_dim), softmax_lse
    (heads, total_q), and max_seqlen_q / max_seqlen_k are required. head_dim and head_dim_v: multiples of 8,
    at most 256 (the flash_attn_* functions pad other sizes). `out` and `softmax_lse`, when given, are
    written in place (rows past cu_seqlens_q[-1] are left as they are); otherwise they are allocated, on
    q's device, zeroed for the variable-length layout. No autograd: use the flash_attn_* functions with
    PyTorch. `num_threads` sets the CPU backend's threads (0: OpenMP's default).
    """
    framework = framework_of(q, k, v, out, softmax_lse, cu_seqlens_q, cu_seqlens_k, seqused_k, alibi_slopes)
    varlen = varlen_arguments(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k)
    is_varlen = "cu_seqlens_q" in varlen
    q, k, v = (framework.last_dim_contiguous(x) for x in (q, k, v))
    out_shape, lse_shape = output_shapes(q, v, is_varlen)
    if out is None:
        out = framework.empty(out_shape, like=q, zero=is_varlen)
    if softmax_lse is None:
        softmax_lse = framework.empty(lse_shape, like=q, fp32=True, zero=is_varlen)
    options = native_options(framework, softmax_scale, causal, causal_alignment, window_size, softcap, alibi_slopes)
    native_forward(framework, q, k, v, out, softmax_lse, varlen, dict(options, num_threads=num_threads))
    return out, softmax_lse


def attention_backward(
    dout,
    q,
    k,
    v,
    out,
    softmax_lse,
    *,
    dq=None,
    dk=None,
    dv=None,
    cu_seqlens_q=None,
    cu_seqlens_k=None,
    max_seqlen_q=None,
    max_seqlen_k=None,
    seqused_k=None,
    softmax_scale=None,
    causal=False,
    causal_alignment="bottom_right",
    window_size=(-1, -1),
    softcap=0.0,
    alibi_slopes=None,
    deterministic=False,
    num_threads=0,
):
    """Gradients of attention_forward: returns (dq, dk, dv), with the shapes of q, k and v.

    `out` and `softmax_lse` are attention_forward's results for the same inputs and options; `dout` is the
    gradient of the loss with respect to out. dk and dv sum over the query heads that share a KV head (GQA).
    dq, dk, dv, when given, are written in place; otherwise allocated (zeroed for the variable-length
    layout). `deterministic` asks GPU backends for reproducible dq accumulation (the CPU backend always is).
    """
    arrays = (dout, q, k, v, out, softmax_lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k, seqused_k, alibi_slopes)
    framework = framework_of(*arrays)
    varlen = varlen_arguments(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k)
    is_varlen = "cu_seqlens_q" in varlen
    dout, q, k, v, out = (framework.last_dim_contiguous(x) for x in (dout, q, k, v, out))
    output_shapes(q, v, is_varlen)  # the rank checks
    dq, dk, dv = (
        framework.empty(tuple(like.shape), like=like, zero=is_varlen) if grad is None else grad
        for grad, like in ((dq, q), (dk, k), (dv, v))
    )
    options = native_options(framework, softmax_scale, causal, causal_alignment, window_size, softcap, alibi_slopes)
    options.update(deterministic=bool(deterministic), num_threads=num_threads)
    native_backward(framework, dout, q, k, v, out, softmax_lse, dq, dk, dv, varlen, options)
    return dq, dk, dv


# The KV-cache call's optional arrays, by the native module's argument names.
KVCACHE_ARRAYS = ("k", "v", "cache_batch_idx", "cache_leftpad", "block_table", "rotary_cos", "rotary_sin")


def kvcache_output_shapes(q, v_cache):
    """The shapes of out and softmax_lse of the KV-cache call, after the rank checks the shapes need."""
    for name, array, layout in (
        ("q", q, "(batch_size, seqlen_q, nheads, headdim)"),
        ("v_cache", v_cache, "(batch_size_cache, seqlen_cache, nheads_k, headdim_v) or (num_blocks, page_size, ...)"),
    ):
        if array.ndim != 4:
            raise ValueError(f"{name}: expected 4 dimensions {layout}, got shape {tuple(array.shape)}")
    return tuple(q.shape[:-1]) + (v_cache.shape[-1],), (q.shape[0], q.shape[2], q.shape[1])


# Split-KV workspace sizes by call signature: the size depends on the shapes, num_splits and the device alone
# (kvcache.cpp, plan()), so the native query (a validation, a plan and six exports) runs once per signature.
_WORKSPACE_SIZES = {}
_WORKSPACE_SIZES_KEPT = 256


def _workspace_size(framework, device, q, k_cache, v_cache, arrays, flags, query):
    signature = (
        framework.name,
        device,
        tuple(q.shape),
        tuple(k_cache.shape),
        tuple(v_cache.shape),
        tuple(None if x is None else tuple(x.shape) for x in arrays.values()),
        flags["num_splits"],
    )
    size = _WORKSPACE_SIZES.get(signature)
    if size is None:
        size = query()
        if len(_WORKSPACE_SIZES) >= _WORKSPACE_SIZES_KEPT:
            _WORKSPACE_SIZES.clear()
        _WORKSPACE_SIZES[signature] = size
    return size


def native_forward_kvcache(framework, q, k_cache, v_cache, cache_seqlens, out, lse, arrays, flags, options):
    """out, lse = attention of q against the cache, after k and v are appended to it in place, through the
    native module. `arrays`: KVCACHE_ARRAYS by name (None: absent); `flags`: rotary_interleaved and num_splits;
    `options`: native_options' arguments. On GPUs the split-KV workspace is allocated here, in q's framework
    (torch's caching allocator under CUDA graph capture), so that the library never allocates."""

    def arguments():
        # A DLPack capsule is consumed by the call it is passed to: every call gets fresh ones.
        exported = {name: None if x is None else framework.export(x) for name, x in arrays.items()}
        tensors = tuple(framework.export(x) for x in (q, k_cache, v_cache, cache_seqlens))
        return tensors, dict(exported, **flags, **native_options(framework, **options))

    bits_dtype = framework.bits_dtype(q)

    def query_workspace_size():
        positional, keywords = arguments()
        return _ext.kvcache_workspace_size(*positional, **keywords, bits_dtype=bits_dtype)

    workspace = None
    device = framework.cuda_device(q)
    if device is not None:
        size = _workspace_size(framework, device, q, k_cache, v_cache, arrays, flags, query_workspace_size)
        workspace = framework.empty((size,), like=q, fp32=True) if size > 0 else None
    positional, keywords = arguments()
    _ext.forward_kvcache(
        *positional,
        framework.export(out),
        framework.export(lse),
        **keywords,
        workspace=None if workspace is None else framework.export(workspace),
        stream=framework.stream(q),
        bits_dtype=bits_dtype,
    )


def native_merge(framework, out_a, lse_a, out_b, lse_b, out, lse):
    """out, lse = the merge of two attention states, through the native module, on out's current stream."""
    export = framework.export
    _ext.merge_attention_states(
        export(out_a),
        export(lse_a),
        export(out_b),
        export(lse_b),
        export(out),
        export(lse),
        stream=framework.stream(out),
        bits_dtype_a=framework.bits_dtype(out_a),
        bits_dtype_b=framework.bits_dtype(out_b),
        bits_dtype_out=framework.bits_dtype(out),
    )
