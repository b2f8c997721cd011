"""flashattn's forward and backward as PyTorch operators (torch.library, torch >= 2.4), and the inference-only
KV-cache call and merge of attention states (torch.ops.flashattn.forward_kvcache, .merge_attention_states).

torch.ops.flashattn.forward and torch.ops.flashattn.backward run the native calls on tensors that torch
allocates (its caching allocator; CUDA graphs see ordinary allocations), on torch's current stream. Their
fake implementations give torch.compile the output shapes without running anything, so compiled graphs
keep the ops whole (no graph break), and the autograd formula of forward is the backward op. Both ops take
the batched and the variable-length layouts (cu_seqlens_q and cu_seqlens_k given). The library checks
every argument; nothing here, nor in the build, needs PyTorch's headers or libraries.

The ops are defined through torch.library.Library, with forward's autograd an autograd.Function registered to
the Autograd key: what torch.library.custom_op builds, less its wrapper's per-call work. That wrapper refilled
the schema's defaults on every differentiable call, rebuilding the 16-argument schema's list for each argument
(torch._library.utils.fill_defaults, 63 us a call under cProfile). A flash_attn_func call on tensors that require
grad took 143 us with custom_op and takes 48 us with these (CPU, tiny shapes, torch 2.15).
"""

import torch

from flashattn._arrays import TorchTensors
from flashattn._calls import (
    kvcache_output_shapes,
    native_backward,
    native_forward,
    native_forward_kvcache,
    native_merge,
    native_options,
    output_shapes,
    varlen_arguments,
)

_VARLEN_ARGUMENTS = (
    "Tensor? cu_seqlens_q, Tensor? cu_seqlens_k, Tensor? seqused_k, SymInt max_seqlen_q, SymInt max_seqlen_k"
)
_OPTION_ARGUMENTS = (
    "Tensor? alibi_slopes, float softmax_scale, bool causal, str causal_alignment, SymInt window_left, "
    "SymInt window_right, float softcap, bool deterministic"
)
_LIBRARY = torch.library.Library("flashattn", "DEF")
_LIBRARY.define(
    f"forward(Tensor q, Tensor k, Tensor v, {_VARLEN_ARGUMENTS}, {_OPTION_ARGUMENTS}) -> (Tensor, Tensor)",
    tags=(torch.Tag.pt2_compliant_tag,),
)
_LIBRARY.define(
    f"backward(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor softmax_lse, {_VARLEN_ARGUMENTS}, "
    f"{_OPTION_ARGUMENTS}) -> (Tensor, Tensor, Tensor)",
    tags=(torch.Tag.pt2_compliant_tag,),
)


def _is_varlen(cu_seqlens_q, cu_seqlens_k):
    return cu_seqlens_q is not None or cu_seqlens_k is not None


def _native_arguments(cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes, softmax_scale,
                      causal, causal_alignment, window_left, window_right, softcap):
    """The native calls' variable-length and option keyword arguments, from the ops' arguments."""
    varlen = varlen_arguments(cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, seqused_k)
    options = native_options(
        TorchTensors, softmax_scale, causal, causal_alignment, (window_left, window_right), softcap, alibi_slopes
    )
    return varlen, options


def _forward(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes, softmax_scale,
             causal, causal_alignment, window_left, window_right, softcap, deterministic):
    """(out, softmax_lse) of attention; `deterministic` is kept for the backward."""
    varlen = _is_varlen(cu_seqlens_q, cu_seqlens_k)
    q, k, v = (TorchTensors.last_dim_contiguous(x) for x in (q, k, v))
    out_shape, lse_shape = output_shapes(q, v, varlen)
    # Rows past cu_seqlens_q[-1] are never written: zeros keep them defined.
    out = TorchTensors.empty(out_shape, like=q, zero=varlen)
    lse = TorchTensors.empty(lse_shape, like=q, fp32=True, zero=varlen)
    native_forward(
        TorchTensors, q, k, v, out, lse,
        *_native_arguments(cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes,
                           softmax_scale, causal, causal_alignment, window_left, window_right, softcap),
    )
    return out, lse


def _backward(dout, q, k, v, out, softmax_lse, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k,
              alibi_slopes, softmax_scale, causal, causal_alignment, window_left, window_right, softcap, deterministic):
    """(dq, dk, dv) of forward, given dout, the gradient of its out."""
    varlen_args, options = _native_arguments(cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k,
                                             alibi_slopes, softmax_scale, causal, causal_alignment, window_left,
                                             window_right, softcap)
    options["deterministic"] = deterministic
    varlen = _is_varlen(cu_seqlens_q, cu_seqlens_k)
    dout, q, k, v, out = (TorchTensors.last_dim_contiguous(x) for x in (dout, q, k, v, out))
    dq, dk, dv = (TorchTensors.empty(tuple(x.shape), like=x, zero=varlen) for x in (q, k, v))
    native_backward(TorchTensors, dout, q, k, v, out, softmax_lse, dq, dk, dv, varlen_args, options)
    return dq, dk, dv


def _forward_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, *rest):
    out_shape, lse_shape = output_shapes(q, v, _is_varlen(cu_seqlens_q, cu_seqlens_k))
    return q.new_empty(out_shape), q.new_empty(lse_shape, dtype=torch.float32)


def _backward_fake(dout, q, k, v, *rest):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


class _Attention(torch.autograd.Function):
    """forward's autograd: the op itself below the Autograd key, the backward op for its gradients."""

    @staticmethod
    def forward(ctx, q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes,
                *options):
        with torch._C._AutoDispatchBelowAutograd():  # as custom_op's autograd kernel redispatches
            out, lse = torch.ops.flashattn.forward(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q,
                                                   max_seqlen_k, alibi_slopes, *options)
        ctx.save_for_backward(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_k, alibi_slopes)
        ctx.max_seqlens = (max_seqlen_q, max_seqlen_k)
        ctx.options = options  # softmax_scale ... deterministic, in the order both ops take them
        # The log-sum-exp is an auxiliary result, as in flash-attn: no gradient flows back through it, and autograd
        # need not make a zero one (a fill kernel and 15 us of host time a call).
        ctx.mark_non_differentiable(lse)
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    def backward(ctx, dout, _dlse):
        if dout is None:  # grads are not materialised: no gradient reached out
            return (None,) * 16
        q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_k, alibi_slopes = ctx.saved_tensors
        dq, dk, dv = torch.ops.flashattn.backward(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_k,
                                                  *ctx.max_seqlens, alibi_slopes, *ctx.options)
        return (dq, dk, dv) + (None,) * 13


def _forward_autograd(q, k, v, *rest):
    """forward's Autograd kernel: through _Attention when a gradient can flow, straight below it otherwise (the
    autograd.Function costs 6 us a call, CPU)."""
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _Attention.apply(q, k, v, *rest)
    with torch._C._AutoDispatchBelowAutograd():
        return torch.ops.flashattn.forward(q, k, v, *rest)


_LIBRARY.impl("forward", _forward, "CompositeExplicitAutograd")
_LIBRARY.impl("backward", _backward, "CompositeExplicitAutograd")
_LIBRARY.impl("forward", _forward_autograd, "Autograd")
torch.library.register_fake("flashattn::forward", _forward_fake, lib=_LIBRARY)
torch.library.register_fake("flashattn::backward", _backward_fake, lib=_LIBRARY)


# The KV-cache call and the merge of attention states: inference only. Both write some of their arguments in
# place, which their schemas declare (Tensor(a!)), so that torch.compile functionalises them correctly; neither
# has a gradient: their Autograd kernels run the op below autograd, so outputs never require grad.
_LIBRARY.define(
    "forward_kvcache(Tensor q, Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor cache_seqlens, Tensor? k, Tensor? v, "
    "Tensor? rotary_cos, Tensor? rotary_sin, Tensor? cache_batch_idx, Tensor? cache_leftpad, Tensor? block_table, "
    "Tensor? alibi_slopes, float softmax_scale, bool causal, str causal_alignment, SymInt window_left, "
    "SymInt window_right, float softcap, bool rotary_interleaved, int num_splits) -> (Tensor, Tensor)",
    tags=(torch.Tag.pt2_compliant_tag,),
)
_LIBRARY.define(
    "merge_attention_states(Tensor out_a, Tensor lse_a, Tensor out_b, Tensor lse_b, Tensor(a!) out, "
    "Tensor(b!) lse) -> ()",
    tags=(torch.Tag.pt2_compliant_tag,),
)


def _forward_kvcache(q, k_cache, v_cache, cache_seqlens, k, v, rotary_cos, rotary_sin, cache_batch_idx,
                     cache_leftpad, block_table, alibi_slopes, softmax_scale, causal, causal_alignment, window_left,
                     window_right, softcap, rotary_interleaved, num_splits):
    """(out, softmax_lse) of q against the cache, k and v appended to k_cache and v_cache first."""
    # The cache is written in place: it is never copied. The library rejects a strided last dimension there.
    q, k, v, rotary_cos, rotary_sin = (
        None if x is None else TorchTensors.last_dim_contiguous(x) for x in (q, k, v, rotary_cos, rotary_sin)
    )
    out_shape, lse_shape = kvcache_output_shapes(q, v_cache)
    out = TorchTensors.empty(out_shape, like=q)
    lse = TorchTensors.empty(lse_shape, like=q, fp32=True)
    arrays = dict(k=k, v=v, cache_batch_idx=cache_batch_idx, cache_leftpad=cache_leftpad, block_table=block_table,
                  rotary_cos=rotary_cos, rotary_sin=rotary_sin)
    flags = dict(rotary_interleaved=rotary_interleaved, num_splits=num_splits)
    options = dict(softmax_scale=softmax_scale, causal=causal, causal_alignment=causal_alignment,
                   window_size=(window_left, window_right), softcap=softcap, alibi_slopes=alibi_slopes)
    native_forward_kvcache(TorchTensors, q, k_cache, v_cache, cache_seqlens, out, lse, arrays, flags, options)
    return out, lse


def _forward_kvcache_fake(q, k_cache, v_cache, *rest):
    out_shape, lse_shape = kvcache_output_shapes(q, v_cache)
    return q.new_empty(out_shape), q.new_empty(lse_shape, dtype=torch.float32)


def _merge(out_a, lse_a, out_b, lse_b, out, lse):
    out_a, out_b = (TorchTensors.last_dim_contiguous(x) for x in (out_a, out_b))
    native_merge(TorchTensors, out_a, lse_a, out_b, lse_b, out, lse)


def _merge_fake(*args):
    return None


def _inference_only(op, mutated):
    """An Autograd kernel for `op`: runs it below autograd (no graph is recorded: these ops have no gradient)
    and bumps the version counters of the arguments it writes (positions `mutated`), as autograd's in-place
    bookkeeping expects of any op that mutates its inputs."""

    def kernel(*args):
        with torch._C._AutoDispatchBelowAutograd():
            result = op(*args)
        for index in mutated:
            torch.autograd.graph.increment_version(args[index])
        return result

    return kernel


_LIBRARY.impl("forward_kvcache", _forward_kvcache, "CompositeExplicitAutograd")
_LIBRARY.impl("merge_attention_states", _merge, "CompositeExplicitAutograd")
_LIBRARY.impl("forward_kvcache", _inference_only(torch.ops.flashattn.forward_kvcache.default, (1, 2)), "Autograd")
_LIBRARY.impl("merge_attention_states", _inference_only(torch.ops.flashattn.merge_attention_states.default, (4, 5)),
              "Autograd")
torch.library.register_fake("flashattn::forward_kvcache", _forward_kvcache_fake, lib=_LIBRARY)
torch.library.register_fake("flashattn::merge_attention_states", _merge_fake, lib=_LIBRARY)
