"""flash-attn 2.x's flash_attn_with_kvcache (same name, arguments, defaults and results) and
merge_attention_states, on PyTorch tensors (through the custom ops of _torch_ops: torch.compile and CUDA
graphs) and on NumPy or CuPy arrays. Inference only: neither has a gradient."""

import numbers

from flashattn._arrays import TorchTensors, framework_of
from flashattn._calls import (
    check_causal_alignment,
    kvcache_output_shapes,
    native_forward_kvcache,
    native_merge,
    window_pair,
)

try:
    import torch
except ImportError:
    torch = None
if torch is not None and not hasattr(torch.library, "register_fake"):
    torch = None  # torch < 2.4: its tensors go the way of NumPy arrays (as in _interface)
if torch is not None:
    import flashattn._torch_ops  # registers torch.ops.flashattn.forward_kvcache and the merge

_HEAD_DIM_MULTIPLE = 8


def _is_torch(x):
    return torch is not None and isinstance(x, torch.Tensor)


def _check_head_dims(q, v_cache):
    """The library takes head dims that are multiples of 8. flash_attn_func pads other sizes with zeros, but
    here the cache is written in place: a padded copy would take the appended tokens and leave the caller's
    cache as it was (flash-attn copies the whole cache back after every call instead)."""
    for name, array in (("q", q), ("v_cache", v_cache)):
        head_dim = array.shape[-1]
        if head_dim % _HEAD_DIM_MULTIPLE != 0:
            raise ValueError(
                f"{name}: head dim {head_dim} is not a multiple of {_HEAD_DIM_MULTIPLE}; flash_attn_with_kvcache "
                "cannot pad it, because k_cache and v_cache are updated in place (a padded copy would not be). "
                "Allocate the cache with a head dim rounded up to a multiple of 8 and pad q, k and v with zeros."
            )


def _check_writable(k_cache, v_cache):
    """A read-only NumPy cache can be attended to, not appended to."""
    for name, cache in (("k_cache", k_cache), ("v_cache", v_cache)):
        if not getattr(getattr(cache, "flags", None), "writeable", True):
            raise ValueError(f"{name}: the array is read-only, but k and v are appended to the cache in place")


def _capacity(k_cache, block_table):
    """Tokens a sequence of the cache can hold: seqlen_cache, or the block table's width times page_size."""
    return k_cache.shape[1] if block_table is None else block_table.shape[1] * k_cache.shape[1]


def _cache_seqlens(framework, cache_seqlens, q, k, k_cache, block_table):
    """cache_seqlens as an int32 array of q's batch on q's device. An int fills one, as flash-attn does; None,
    as in flash-attn, means every sequence fills the cache's capacity, which flash-attn refuses (and so do we)
    when k and v are to be appended."""
    if cache_seqlens is None:
        if k is not None:
            raise ValueError("cache_seqlens: required when k and v are given (where to append them)")
        cache_seqlens = _capacity(k_cache, block_table)
    if isinstance(cache_seqlens, numbers.Integral) and not isinstance(cache_seqlens, bool):
        return framework.full_int32((q.shape[0],), int(cache_seqlens), like=q)
    return cache_seqlens


def _plain_eager(q):
    """True for a plain tensor outside torch.compile and outside any dispatch mode: the call may then skip the
    dispatcher. Through the custom op a call cost about 50 us more host time on the H100 machine (143-163
    against 96-106 us at batch 1 x 512, PERFORMANCE.md), and small decoding steps wait for the host."""
    return type(q) is torch.Tensor and not torch.compiler.is_compiling() and torch._C._len_torch_dispatch_stack() == 0


def _eager_forward_kvcache(*args):
    """The custom op's own kernel, called directly: what its Autograd kernel does (no graph; the written caches'
    version counters bumped), without the dispatcher."""
    result = flashattn._torch_ops._forward_kvcache(*args)
    torch.autograd.graph.increment_version(args[1:3])  # inference tensors have no counter: it skips them
    return result


def flash_attn_with_kvcache(
    q,
    k_cache,
    v_cache,
    k=None,
    v=None,
    rotary_cos=None,
    rotary_sin=None,
    cache_seqlens=None,
    cache_batch_idx=None,
    cache_leftpad=None,
    block_table=None,
    softmax_scale=None,
    causal=False,
    window_size=(-1, -1),
    softcap=0.0,
    rotary_interleaved=True,
    alibi_slopes=None,
    num_splits=0,
    return_softmax_lse=False,
    *,
    causal_alignment="bottom_right",
):
    """Attention of q against a KV cache, after appending k and v to it in place: incremental decoding,
    chunked prefill and speculative verification in one call. Arguments and results as flash-attn 2.x's
    (its docstring applies); in short:
        q: (batch_size, seqlen, nheads, headdim).
        k_cache, v_cache: (batch_size_cache, seqlen_cache, nheads_k, headdim), or with block_table a paged
            cache (num_blocks, page_block_size, nheads_k, headdim); any page_block_size >= 1 (flash-attn:
            a multiple of 256). Updated in place when k and v are given.
        k, v: (batch_size, seqlen_new, nheads_k, headdim): written at positions cache_seqlens, ...,
            cache_seqlens + seqlen_new - 1 of each sequence, which then attends to them too.
        rotary_cos, rotary_sin: (seqlen_ro, rotary_dim / 2), q's dtype, seqlen_ro >= the cache's capacity;
            need k. k is rotated at its cache positions; q at cache_seqlens + i when causal or windowed,
            else every query at cache_seqlens. rotary_interleaved: pairs (0, 1), (2, 3), ... when True (the
            default), else channel c with c + rotary_dim / 2 (GPT-NeoX). Any even rotary_dim <= headdim.
        cache_seqlens: int32 (batch_size,) tokens each sequence holds before the call, or an int for all of
            them; None means every sequence fills the cache (seqlen_cache, or block_table's width x
            page_block_size) and is refused with k and v, as flash-attn does.
        cache_batch_idx: int32 (batch_size,), the cache row of each sequence (not with block_table).
        cache_leftpad: int32 (batch_size,), the first cache position attended (left padding).
        block_table: int32 (batch_size, max_num_blocks_per_seq), the pages of each sequence.
        softmax_scale, causal, window_size, softcap, alibi_slopes: as flash_attn_func; the masks and the
            ALiBi distances see seqlen_k = cache_seqlens + seqlen_new - cache_leftpad keys.
        num_splits: split-KV on GPUs: 0 chooses, 1 never splits, n > 1 splits the keys in n; ignored on CPUs.
        return_softmax_lse: return (out, softmax_lse) instead of out; softmax_lse is fp32 (batch_size,
            nheads, seqlen), -inf for rows that see no key.
    Returns out (batch_size, seqlen, nheads, headdim_v). headdim and headdim_v: multiples of 8 (ValueError
    otherwise: the in-place cache cannot be padded), at most 256.
    Beyond flash-attn (keyword-only):
        causal_alignment: "bottom_right" (default, flash-attn) or "top_left" (PyTorch's is_causal).
    Inference only: no autograd (outputs never require grad). PyTorch tensors go through
    torch.ops.flashattn.forward_kvcache, whose schema declares k_cache and v_cache as written, so
    torch.compile(fullgraph=True) keeps the in-place append; on CUDA the call allocates out, softmax_lse and
    the split-KV workspace with torch's allocator and can be captured in a CUDA graph. NumPy and CuPy arrays
    give results of the same framework.
    """
    check_causal_alignment(causal_alignment)
    window_left, window_right = window_pair(window_size)
    arrays = dict(
        k=k,
        v=v,
        cache_batch_idx=cache_batch_idx,
        cache_leftpad=cache_leftpad,
        block_table=block_table,
        rotary_cos=rotary_cos,
        rotary_sin=rotary_sin,
    )
    is_torch = _is_torch(q)
    if is_torch:
        framework = TorchTensors
    else:
        seqlens_array = None if isinstance(cache_seqlens, numbers.Integral) else cache_seqlens
        framework = framework_of(q, k_cache, v_cache, seqlens_array, alibi_slopes, *arrays.values())
    kvcache_output_shapes(q, v_cache)  # the rank checks, before the head dims are read
    _check_head_dims(q, v_cache)
    if k is not None:
        _check_writable(k_cache, v_cache)
    cache_seqlens = _cache_seqlens(framework, cache_seqlens, q, k, k_cache, block_table)
    if softmax_scale is None:
        softmax_scale = q.shape[-1] ** -0.5
    if is_torch:
        op = _eager_forward_kvcache if _plain_eager(q) else torch.ops.flashattn.forward_kvcache
        out, softmax_lse = op(
            q,
            k_cache,
            v_cache,
            cache_seqlens,
            k,
            v,
            rotary_cos,
            rotary_sin,
            cache_batch_idx,
            cache_leftpad,
            block_table,
            alibi_slopes,
            float(softmax_scale),
            bool(causal),
            causal_alignment,
            window_left,
            window_right,
            float(softcap),
            bool(rotary_interleaved),
            int(num_splits),
        )
    else:
        q, k, v, rotary_cos, rotary_sin = (
            None if x is None else framework.last_dim_contiguous(x) for x in (q, k, v, rotary_cos, rotary_sin)
        )
        arrays.update(k=k, v=v, rotary_cos=rotary_cos, rotary_sin=rotary_sin)
        out_shape, lse_shape = kvcache_output_shapes(q, v_cache)
        out = framework.empty(out_shape, like=q)
        softmax_lse = framework.empty(lse_shape, like=q, fp32=True)
        flags = dict(rotary_interleaved=bool(rotary_interleaved), num_splits=int(num_splits))
        options = dict(
            softmax_scale=softmax_scale,
            causal=causal,
            causal_alignment=causal_alignment,
            window_size=(window_left, window_right),
            softcap=softcap,
            alibi_slopes=alibi_slopes,
        )
        native_forward_kvcache(framework, q, k_cache, v_cache, cache_seqlens, out, softmax_lse, arrays, flags, options)
    return (out, softmax_lse) if return_softmax_lse else out


def merge_attention_states(out_a, lse_a, out_b, lse_b, out=None, lse=None):
    """The attention over the union of two disjoint key sets, from the attention over each: returns (out, lse)
    with lse = log(exp(lse_a) + exp(lse_b)) and out = exp(lse_a - lse) out_a + exp(lse_b - lse) out_b. For
    split prefill / decode (a shared prefix and per-request suffixes), or cascade attention.

    Batched: out_a, out_b (batch, seqlen, heads, head_dim), lse_a, lse_b fp32 (batch, heads, seqlen), as
    flash_attn_with_kvcache's return_softmax_lse gives them; packed: (tokens, heads, head_dim) and (heads,
    tokens), as the varlen functions'. out_a, out_b and out are fp32, fp16 or bf16, each its own. `out` and
    `lse`, when given, are written in place and may be out_a / out_b and lse_a / lse_b; otherwise they are
    allocated, out in out_a's dtype. Rows that no side sees (both lses -inf) give out = 0 and lse = -inf.
    No autograd; PyTorch tensors go through torch.ops.flashattn.merge_attention_states (torch.compile).
    """
    is_torch = _is_torch(out_a)
    framework = TorchTensors if is_torch else framework_of(out_a, lse_a, out_b, lse_b, out, lse)
    out_a, out_b = (framework.last_dim_contiguous(x) for x in (out_a, out_b))
    if out is None:
        out = framework.empty(tuple(out_a.shape), like=out_a)
    if lse is None:
        lse = framework.empty(tuple(lse_a.shape), like=lse_a, fp32=True)
    if is_torch:
        torch.ops.flashattn.merge_attention_states(out_a, lse_a, out_b, lse_b, out, lse)
    else:
        native_merge(framework, out_a, lse_a, out_b, lse_b, out, lse)
    return out, lse
