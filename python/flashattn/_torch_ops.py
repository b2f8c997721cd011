"""flashattn's forward and backward as PyTorch custom ops (torch.library, torch >= 2.4).

torch.ops.flashattn.forward and torch.ops.flashattn.backward run the native calls on tensors that torch
allocates (its caching allocator; CUDA graphs see ordinary allocations), on torch's current stream. Their
fake implementations give torch.compile the output shapes without running anything, so compiled graphs
keep the ops whole (no graph break), and the autograd formula of forward is the backward op. Both ops take
the batched and the variable-length layouts (cu_seqlens_q and cu_seqlens_k given). The library checks
every argument; nothing here, nor in the build, needs PyTorch's headers or libraries.
"""

from typing import Optional, Tuple

import torch

from flashattn._arrays import TorchTensors
from flashattn._calls import native_backward, native_forward, native_options, output_shapes

Tensor = torch.Tensor


def _varlen(cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k):
    if cu_seqlens_q is None and cu_seqlens_k is None:
        return {"seqused_k": seqused_k}  # the native module rejects a seqused_k without cu_seqlens
    return {
        "cu_seqlens_q": cu_seqlens_q,
        "cu_seqlens_k": cu_seqlens_k,
        "seqused_k": seqused_k,
        "max_seqlen_q": max_seqlen_q,
        "max_seqlen_k": max_seqlen_k,
    }


@torch.library.custom_op("flashattn::forward", mutates_args=())
def forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    cu_seqlens_q: Optional[Tensor],
    cu_seqlens_k: Optional[Tensor],
    seqused_k: Optional[Tensor],
    max_seqlen_q: int,
    max_seqlen_k: int,
    alibi_slopes: Optional[Tensor],
    softmax_scale: float,
    causal: bool,
    causal_alignment: str,
    window_left: int,
    window_right: int,
    softcap: float,
    deterministic: bool,
) -> Tuple[Tensor, Tensor]:
    """(out, softmax_lse) of attention; `deterministic` is kept for the backward."""
    varlen = cu_seqlens_q is not None or cu_seqlens_k is not None
    q, k, v = (TorchTensors.last_dim_contiguous(x) for x in (q, k, v))
    out_shape, lse_shape = output_shapes(q, v, varlen)
    # Rows past cu_seqlens_q[-1] are never written: zeros keep them defined.
    out = TorchTensors.empty(out_shape, like=q, zero=varlen)
    lse = TorchTensors.empty(lse_shape, like=q, fp32=True, zero=varlen)
    options = native_options(
        TorchTensors, softmax_scale, causal, causal_alignment, (window_left, window_right), softcap, alibi_slopes
    )
    varlen_args = _varlen(cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k)
    native_forward(TorchTensors, q, k, v, out, lse, varlen_args, options)
    return out, lse


@forward.register_fake
def _forward_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, *options):
    out_shape, lse_shape = output_shapes(q, v, cu_seqlens_q is not None or cu_seqlens_k is not None)
    return q.new_empty(out_shape), q.new_empty(lse_shape, dtype=torch.float32)


@torch.library.custom_op("flashattn::backward", mutates_args=())
def backward(
    dout: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    softmax_lse: Tensor,
    cu_seqlens_q: Optional[Tensor],
    cu_seqlens_k: Optional[Tensor],
    seqused_k: Optional[Tensor],
    max_seqlen_q: int,
    max_seqlen_k: int,
    alibi_slopes: Optional[Tensor],
    softmax_scale: float,
    causal: bool,
    causal_alignment: str,
    window_left: int,
    window_right: int,
    softcap: float,
    deterministic: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """(dq, dk, dv) of forward, given dout, the gradient of its out."""
    varlen = cu_seqlens_q is not None or cu_seqlens_k is not None
    dout, q, k, v, out = (TorchTensors.last_dim_contiguous(x) for x in (dout, q, k, v, out))
    dq, dk, dv = (TorchTensors.empty(tuple(x.shape), like=x, zero=varlen) for x in (q, k, v))
    options = native_options(
        TorchTensors, softmax_scale, causal, causal_alignment, (window_left, window_right), softcap, alibi_slopes
    )
    options["deterministic"] = deterministic
    varlen_args = _varlen(cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k)
    native_backward(TorchTensors, dout, q, k, v, out, softmax_lse, dq, dk, dv, varlen_args, options)
    return dq, dk, dv


@backward.register_fake
def _backward_fake(dout, q, k, v, *rest):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output):
    q, k, v, cu_seqlens_q, cu_seqlens_k, seqused_k, max_seqlen_q, max_seqlen_k, alibi_slopes, *options = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_k, alibi_slopes)
    ctx.max_seqlens = (max_seqlen_q, max_seqlen_k)
    ctx.options = options  # softmax_scale ... deterministic, in the order both ops take them
    # The log-sum-exp is an auxiliary result, as in flash-attn: no gradient flows back through it.
    ctx.mark_non_differentiable(lse)


def _backward(ctx, dout, _dlse):
    q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_k, alibi_slopes = ctx.saved_tensors
    dq, dk, dv = torch.ops.flashattn.backward(
        dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, seqused_k, *ctx.max_seqlens, alibi_slopes, *ctx.options
    )
    return (dq, dk, dv) + (None,) * 13


forward.register_autograd(_backward, setup_context=_setup_context)
