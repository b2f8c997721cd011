#!/usr/bin/env python3
"""Host time per call of flash_attn_func, beside PyTorch's scaled_dot_product_attention, on shapes so small
that the host is all there is to time: batch 1, seqlen 16, 4 heads, head_dim 64, bf16, on the device given
(cuda by default; cpu times the CPU backend's Python layer the same way).

Three figures per implementation, each the best of 7 repeats of the mean over --calls calls (wall clock,
synchronised at the end of each repeat): a forward under torch.no_grad(), a forward on inputs that require
grad (building the autograd graph), and forward plus torch.autograd.grad of the output. A host time above the
kernel's own time is what a training or serving loop pays per attention call when the GPU waits for the host.

Not a test, not part of CI. Example:
    python3 bench/host_overhead.py --device cuda
"""

import argparse
import time

REPEATS = 7
WARMUP_CALLS = 200
BATCH, SEQLEN, HEADS, HEAD_DIM = 1, 16, 4, 64


def best_mean_us(call, calls, synchronize):
    for _ in range(WARMUP_CALLS):
        call()
    synchronize()
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        synchronize()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--calls", type=int, default=1000, help="calls per repeat (default 1000)")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F

    import flashattn

    synchronize = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    torch.manual_seed(0)

    def inputs(heads_before_seqlen, requires_grad):
        shape = (BATCH, HEADS, SEQLEN, HEAD_DIM) if heads_before_seqlen else (BATCH, SEQLEN, HEADS, HEAD_DIM)
        return [torch.randn(shape, device=args.device, dtype=torch.bfloat16, requires_grad=requires_grad)
                for _ in range(3)]

    implementations = {
        "flashattn.flash_attn_func": (lambda q, k, v: flashattn.flash_attn_func(q, k, v, causal=True), False),
        "torch scaled_dot_product_attention": (
            lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), True),
    }
    print(f"{torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"({BATCH}, {SEQLEN}, {HEADS}, {HEAD_DIM}) bf16 causal, best of {REPEATS} means of {args.calls} calls")
    for name, (attention, heads_before_seqlen) in implementations.items():
        q, k, v = inputs(heads_before_seqlen, requires_grad=False)
        with torch.no_grad():
            no_grad = best_mean_us(lambda: attention(q, k, v), args.calls, synchronize)
        q, k, v = inputs(heads_before_seqlen, requires_grad=True)
        with_graph = best_mean_us(lambda: attention(q, k, v), args.calls, synchronize)
        dout = torch.randn_like(attention(q, k, v))

        def forward_backward():
            torch.autograd.grad(attention(q, k, v), (q, k, v), dout)

        both = best_mean_us(forward_backward, args.calls, synchronize)
        print(f"{name}: forward no_grad {no_grad:.1f} us, forward with autograd {with_graph:.1f} us, "
              f"forward + backward {both:.1f} us")


if __name__ == "__main__":
    main()
