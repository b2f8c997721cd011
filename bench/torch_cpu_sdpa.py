#!/usr/bin/env python3
"""Times PyTorch's CPU scaled_dot_product_attention, the baseline of flashattn's CPU backend.

For each shape, dtype and thread count it measures the forward call and the backward call alone (the
gradients of q, k, v from one forward's graph), as medians of wall-clock times after warm-up, and writes one
JSON line per (shape, dtype, threads, pass). On the CPU PyTorch picks its backend itself; for these shapes
that is its flash-attention CPU kernel (the bf16 matrix products run on AMX units where the CPU has them).

FLOPs as FlashAttention counts them, the same convention as `flashattn bench`'s "FlashAttention convention"
figure: forward 4 * b * h * s_q * s_k * d, halved when causal; backward 2.5x forward.

Tensors are (batch, heads, seqlen, head_dim), PyTorch's layout; causal is PyTorch's is_causal (top-left,
which equals flash-attn's bottom-right when s_q = s_k, as here).

Not part of CI: it needs torch (2.11 on the GPU machine). Example:
    python3 bench/torch_cpu_sdpa.py --threads 16 --out torch.jsonl
"""

import argparse
import json
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

BACKWARD_FLOPS_FACTOR = 2.5
# (batch, heads, seqlen, head_dim, causal): the CPU rows of the project's baseline table.
DEFAULT_SHAPES = ((1, 16, 2048, 128, False), (1, 16, 2048, 128, True), (4, 32, 512, 64, False))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def forward_flops(batch, heads, seqlen, head_dim, causal):
    flops = 4.0 * batch * heads * seqlen * seqlen * head_dim
    return flops / 2.0 if causal else flops


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def time_calls(call, warmup, iters):
    """Median and minimum wall time of one call, in milliseconds."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def measure(shape, dtype_name, threads, args):
    batch, heads, seqlen, head_dim, causal = shape
    dtype = DTYPES[dtype_name]
    generator = torch.Generator().manual_seed(args.seed)

    def make():
        return torch.randn(batch, heads, seqlen, head_dim, generator=generator).to(dtype)

    q, k, v, dout = make(), make(), make(), make()
    base = {
        "impl": "torch_sdpa_cpu",
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "threads": threads,
        "dtype": dtype_name,
        "batch": batch,
        "heads": heads,
        "seqlen_q": seqlen,
        "seqlen_k": seqlen,
        "head_dim": head_dim,
        "causal": causal,
        "warmup": args.warmup,
        "iters": args.iters,
    }
    rows = []

    with torch.no_grad():
        median_ms, min_ms = time_calls(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                       args.warmup, args.iters)
    flops = forward_flops(batch, heads, seqlen, head_dim, causal)
    rows.append(dict(base, **{"pass": "fwd", "median_ms": median_ms, "min_ms": min_ms, "flops": flops,
                              "gflops": flops / (median_ms * 1e-3) / 1e9}))

    if args.backward:
        q_grad, k_grad, v_grad = (t.detach().requires_grad_() for t in (q, k, v))
        out = F.scaled_dot_product_attention(q_grad, k_grad, v_grad, is_causal=causal)
        # autograd.grad returns fresh gradients: no accumulation into .grad inside the timed call.
        median_ms, min_ms = time_calls(
            lambda: torch.autograd.grad(out, (q_grad, k_grad, v_grad), dout, retain_graph=True),
            args.warmup, args.iters)
        flops *= BACKWARD_FLOPS_FACTOR
        rows.append(dict(base, **{"pass": "bwd", "median_ms": median_ms, "min_ms": min_ms, "flops": flops,
                                  "gflops": flops / (median_ms * 1e-3) / 1e9}))
    return rows


def parse_shape(text):
    parts = text.split(",")
    if len(parts) != 5:
        raise argparse.ArgumentTypeError(f"shape '{text}' is not b,h,s,d,causal")
    batch, heads, seqlen, head_dim = (int(p) for p in parts[:4])
    causal = parts[4].strip().lower() in ("1", "yes", "true", "causal")
    return batch, heads, seqlen, head_dim, causal


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=parse_shape, nargs="+", default=list(DEFAULT_SHAPES),
                        help="b,h,s,d,causal (causal: yes/no); default: the three CPU baseline shapes")
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 16],
                        help="torch.set_num_threads values (default 2 16); one process per count gives the "
                             "cleanest numbers, as bench/cpu_compare.sh does")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--no-backward", dest="backward", action="store_false", help="forward only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="-", help="JSON-lines file to append to (default: stdout)")
    args = parser.parse_args()

    sink = sys.stdout if args.out == "-" else open(args.out, "a", encoding="utf-8")
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for dtype_name in args.dtypes:
                for shape in args.shapes:
                    for row in measure(shape, dtype_name, threads, args):
                        sink.write(json.dumps(row) + "\n")
                        sink.flush()
                        print(f"torch sdpa cpu: {threads} threads {dtype_name} {shape} {row['pass']}: "
                              f"{row['median_ms']:.2f} ms, {row['gflops']:.1f} GFLOP/s", file=sys.stderr)
    finally:
        if sink is not sys.stdout:
            sink.close()


if __name__ == "__main__":
    main()
