"""flashattn's forward and backward as PyTorch operators (torch.library, torch >= 2.4).

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
from flashattn._calls import native_backward, native_forward, native_options, output_shapes, varlen_arguments

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
