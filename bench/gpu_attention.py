#!/usr/bin/env python3
"""Forward and backward attention throughput on one GPU: flashattn beside PyTorch's
scaled_dot_product_attention backends FLASH_ATTENTION (FlashAttention-2), CUDNN_ATTENTION and
EFFICIENT_ATTENTION, in the same process on the same card.

The protocol of the project's H100 baselines (shared/anchors/README.md beside the repository) and of the
FlashAttention papers: batch x seqlen = 16k tokens and heads x head_dim = 2048 at every point, head_dim
64 / 128 / 256, seqlen 512 ... 16k, causal and not, bf16 (--dtype fp16 for fp16). Inputs are fresh random
normal values. Each figure is the median of CUDA-event times of timed calls after warm-up calls, with the L2
cache flushed before each call (as triton.testing.do_bench, which the baselines used). The backward is timed
alone: one forward builds the autograd graph, then torch.autograd.grad(out, (q, k, v), dout,
retain_graph=True) is timed. FLOPs as FlashAttention counts them: forward 4 * batch * heads * seqlen^2 *
head_dim, halved when causal; backward 2.5x forward.

flashattn is called through its Python package, flashattn.flash_attn_func(q, k, v, causal=...) on
(batch, seqlen, heads, head_dim) tensors (flash-attn 2.x's signature); PyTorch's backends get
(batch, heads, seqlen, head_dim) contiguous tensors, through torch.nn.attention.sdpa_kernel. causal is
is_causal for PyTorch (top-left), the same mask as flash-attn's bottom-right at seqlen_q = seqlen_k. A backend
that fails on a shape gets "error" in that cell. As a sanity check of the fast path, flashattn's forward output
is compared with PyTorch's FLASH_ATTENTION output on the same inputs at every point; the largest difference is
printed and recorded in flashattn's forward row (max_abs_diff_vs_fa2).

Not a test, not part of CI; scripts/gpu_check.sh runs it with --quick. Example:
    python3 bench/gpu_attention.py --json out/bench.json --markdown out/bench.md --plot out/bench.png
"""

import argparse
import contextlib
import datetime
import importlib.util
import json
import os
import statistics
import sys
import traceback

TOKENS = 16384  # batch x seqlen at every point
MODEL_WIDTH = 2048  # heads x head_dim at every point
HEAD_DIMS = (64, 128, 256)
FULL_SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)
QUICK_SEQLENS = (1024, 4096, 16384)
BACKWARD_FLOPS_FACTOR = 2.5
# Larger than any GPU's L2 cache (50 MiB on H100), written before each timed call.
L2_FLUSH_BYTES = 256 * 1024 * 1024
OURS = "flashattn"
# Column labels as in the baselines' table.
SDPA_BACKENDS = {
    "FLASH_ATTENTION": "PyTorch FLASH_ATTENTION (FA2)",
    "CUDNN_ATTENTION": "PyTorch CUDNN_ATTENTION",
    "EFFICIENT_ATTENTION": "PyTorch EFFICIENT_ATTENTION",
}
ERROR_TEXT_LIMIT = 300  # characters of an exception message kept in the JSON


def forward_flops(batch, heads, seqlen, head_dim, causal):
    flops = 4.0 * batch * heads * seqlen * seqlen * head_dim
    return flops / 2.0 if causal else flops


def median_ms(call, warmup, reps, flush_buffer):
    """Median CUDA-event time of call() in milliseconds, over reps calls after warmup calls."""
    import torch

    for _ in range(warmup):
        call()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends):
        flush_buffer.zero_()
        start.record()
        call()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in zip(starts, ends))


class Backend:
    """One implementation: how it lays out q, k, v and how it computes attention."""

    def __init__(self, name, label, attention, heads_before_seqlen, sdpa_backend=None):
        self.name = name
        self.label = label
        self.attention = attention  # (q, k, v, causal) -> out
        self.heads_before_seqlen = heads_before_seqlen  # (b, h, s, d) rather than (b, s, h, d)
        self.sdpa_backend = sdpa_backend

    def context(self):
        """The context the calls run in: sdpa_kernel restricted to this backend, or nothing."""
        if self.sdpa_backend is None:
            return contextlib.nullcontext()
        from torch.nn.attention import sdpa_kernel

        return sdpa_kernel(self.sdpa_backend)

    def inputs(self, batch, heads, seqlen, head_dim, dtype, requires_grad):
        import torch

        shape = (batch, heads, seqlen, head_dim) if self.heads_before_seqlen else (batch, seqlen, heads, head_dim)
        return [torch.randn(shape, device="cuda", dtype=dtype, requires_grad=requires_grad) for _ in range(3)]


def make_backends(requested, flashattn_module):
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend

    backends = []
    for name in requested:
        if name == OURS:
            if flashattn_module is None:
                backends.append(Backend(OURS, "flashattn", None, False))
            else:
                backends.append(Backend(OURS, "flashattn", lambda q, k, v, causal: flashattn_module.flash_attn_func(
                    q, k, v, causal=causal), False))
        else:
            backends.append(Backend(name, SDPA_BACKENDS[name], lambda q, k, v, causal: F.scaled_dot_product_attention(
                q, k, v, is_causal=causal), True, getattr(SDPBackend, name)))
    return backends


def error_text(error):
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text[:ERROR_TEXT_LIMIT]


def measure(backend, point, args, dtype, flush_buffer, import_error):
    """Forward and backward rows of one backend at one point."""
    import torch

    head_dim, causal, seqlen = point
    batch, heads = TOKENS // seqlen, MODEL_WIDTH // head_dim
    flops = forward_flops(batch, heads, seqlen, head_dim, causal)
    base = {"head_dim": head_dim, "causal": causal, "seqlen": seqlen, "batch": batch, "heads": heads,
            "backend": backend.label}
    rows = []
    for pass_name, pass_flops in (("fwd", flops), ("bwd", flops * BACKWARD_FLOPS_FACTOR)):
        row = dict(base, **{"pass": pass_name, "ms": None, "tflops": None})
        try:
            if backend.attention is None:
                raise RuntimeError(f"cannot import flashattn: {import_error}")
            with backend.context():
                if pass_name == "fwd":
                    q, k, v = backend.inputs(batch, heads, seqlen, head_dim, dtype, requires_grad=False)
                    with torch.no_grad():
                        ms = median_ms(lambda: backend.attention(q, k, v, causal), args.warmup, args.reps,
                                       flush_buffer)
                else:
                    q, k, v = backend.inputs(batch, heads, seqlen, head_dim, dtype, requires_grad=True)
                    out = backend.attention(q, k, v, causal)
                    dout = torch.randn_like(out)
                    ms = median_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), args.warmup,
                                   args.reps, flush_buffer)
            row["ms"] = round(ms, 4)
            row["tflops"] = round(pass_flops / (ms * 1e-3) / 1e12, 1)
        except Exception as error:  # a backend that cannot run a shape is reported, not fatal
            row["error"] = error_text(error)
        finally:
            q = k = v = out = dout = None  # free before the next allocation
        rows.append(row)
        shown = f"{row['ms']:.3f} ms, {row['tflops']:.1f} TFLOP/s" if row["tflops"] is not None else row["error"]
        print(f"{pass_name} d={head_dim} causal={int(causal)} s={seqlen} b={batch} h={heads} {backend.label}: {shown}",
              flush=True)
    return rows


def forward_difference(ours, reference, point, dtype):
    """Largest |flashattn - PyTorch FLASH_ATTENTION| of the forward output on the same inputs."""
    import torch

    head_dim, causal, seqlen = point
    batch, heads = TOKENS // seqlen, MODEL_WIDTH // head_dim
    q, k, v = ours.inputs(batch, heads, seqlen, head_dim, dtype, requires_grad=False)
    with torch.no_grad():
        out = ours.attention(q, k, v, causal)
        with reference.context():
            expected = reference.attention(*(t.transpose(1, 2).contiguous() for t in (q, k, v)), causal)
    return (out.float() - expected.transpose(1, 2).float()).abs().max().item()


def ours_info(flashattn_module):
    """What flashattn says about itself: version, file, build_info() when the package has it."""
    info = {"version": getattr(flashattn_module, "__version__", None),
            "file": getattr(flashattn_module, "__file__", None)}
    build_info = getattr(flashattn_module, "build_info", None)
    if callable(build_info):
        try:
            value = build_info()
            info["build_info"] = value if isinstance(value, (dict, str)) else str(value)
        except Exception as error:  # informational only
            info["build_info"] = error_text(error)
    return info


def markdown_table(results):
    meta, rows = results["meta"], results["rows"]
    seqlens = sorted({row["seqlen"] for row in rows})
    labels = list(dict.fromkeys(row["backend"] for row in rows))
    cells = {}
    for row in rows:
        key = (row["pass"], row["head_dim"], row["causal"], row["backend"])
        cells.setdefault(key, {})[row["seqlen"]] = "error" if row["tflops"] is None else f"{row['tflops']:.0f}"
    ours = meta["flashattn"]
    build_info = ours.get("build_info") if isinstance(ours.get("build_info"), dict) else {}
    ours_text = ours.get("file") or ours.get("error")
    if build_info.get("cuda_path"):
        ours_text += f", CUDA kernels: {build_info['cuda_path']}"
    lines = [
        f"# Attention TFLOP/s, {meta['dtype']}, {meta['device']}",
        "",
        f"{meta['date']}, torch {meta['torch']} (CUDA {meta['torch_cuda']}, cuDNN {meta['cudnn']}); "
        f"batch x seqlen = {TOKENS}, heads x head_dim = {MODEL_WIDTH}; median of {meta['reps']} CUDA-event timed "
        f"calls after {meta['warmup']} warm-up calls, L2 flushed before each; FLOPs 4*b*h*s*s*d, halved when "
        f"causal, backward 2.5x forward. flashattn: {ours_text}",
        "",
        "| pass | head_dim | causal | backend | " + " | ".join(f"s={s}" for s in seqlens) + " |",
        "|---|---|---|---|" + "---|" * len(seqlens),
    ]
    for pass_name in ("bwd", "fwd"):  # the baselines' order
        for head_dim in sorted({row["head_dim"] for row in rows}):
            for causal in (False, True):
                for label in labels:
                    values = cells.get((pass_name, head_dim, causal, label))
                    if values is None:
                        continue
                    lines.append(f"| {pass_name} | {head_dim} | {int(causal)} | {label} | " +
                                 " | ".join(values.get(s, "-") for s in seqlens) + " |")
    differences = [row for row in rows if row.get("max_abs_diff_vs_fa2") is not None]
    if differences:
        worst = max(differences, key=lambda row: row["max_abs_diff_vs_fa2"])
        lines += ["", f"Largest |flashattn - FLASH_ATTENTION| of a forward output element: "
                      f"{worst['max_abs_diff_vs_fa2']} (head_dim {worst['head_dim']}, causal {int(worst['causal'])}, "
                      f"seqlen {worst['seqlen']})."]
    return "\n".join(lines) + "\n"


def write_results(results, args):
    for path in (args.json, args.markdown):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as out:
        json.dump(results, out, indent=1)
        out.write("\n")
    with open(args.markdown, "w", encoding="utf-8") as out:
        out.write(markdown_table(results))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"seqlens {', '.join(map(str, QUICK_SEQLENS))} and 3 warm-up calls (for gpu_check.sh)")
    parser.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--head-dims", type=int, nargs="+", default=list(HEAD_DIMS))
    parser.add_argument("--seqlens", type=int, nargs="+", help="default: 512 ... 16384 (--quick: fewer)")
    parser.add_argument("--causal", choices=("both", "yes", "no"), default="both")
    parser.add_argument("--backends", nargs="+", choices=[OURS, *SDPA_BACKENDS], default=[OURS, *SDPA_BACKENDS])
    parser.add_argument("--warmup", type=int, help="warm-up calls (default 5, --quick 3)")
    parser.add_argument("--reps", type=int, default=20, help="timed calls, the median is reported (default 20)")
    parser.add_argument("--json", default="gpu_attention.json", help="results file (default gpu_attention.json)")
    parser.add_argument("--markdown", help="Markdown table file (default: the JSON path with .md)")
    parser.add_argument("--plot", help="PNG plot file, when matplotlib is importable (default: JSON path, .png)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when flashattn cannot be imported or fails on any shape")
    args = parser.parse_args()
    args.seqlens = args.seqlens or list(QUICK_SEQLENS if args.quick else FULL_SEQLENS)
    args.warmup = args.warmup if args.warmup is not None else (3 if args.quick else 5)
    stem = os.path.splitext(args.json)[0]
    args.markdown = args.markdown or stem + ".md"
    args.plot = args.plot or stem + ".png"
    for seqlen in args.seqlens:
        if TOKENS % seqlen:
            parser.error(f"seqlen {seqlen} does not divide {TOKENS} tokens")
    for head_dim in args.head_dims:
        if MODEL_WIDTH % head_dim:
            parser.error(f"head_dim {head_dim} does not divide {MODEL_WIDTH}")
    return args


def main():
    args = parse_args()
    try:
        import torch
    except ImportError as error:
        print(f"gpu_attention.py: needs torch: {error}", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("gpu_attention.py: torch sees no CUDA device", file=sys.stderr)
        return 1
    try:
        import flashattn
        flashattn_module, import_error = flashattn, None
        print(f"flashattn: {json.dumps(ours_info(flashattn), default=str)}", flush=True)
    except Exception as error:  # SDPA backends are still measured; ours get "error"
        flashattn_module, import_error = None, error_text(error)
        print(f"flashattn: cannot import: {import_error}", flush=True)

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.manual_seed(0)
    flush_buffer = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    backends = make_backends(args.backends, flashattn_module)
    causal_values = {"both": (False, True), "yes": (True,), "no": (False,)}[args.causal]
    meta = {
        "device": torch.cuda.get_device_name(),
        "compute_capability": ".".join(map(str, torch.cuda.get_device_capability())),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dtype": args.dtype,
        "quick": args.quick,
        "warmup": args.warmup,
        "reps": args.reps,
        "tokens": TOKENS,
        "model_width": MODEL_WIDTH,
        "flashattn": ours_info(flashattn_module) if flashattn_module else {"error": import_error},
    }
    print(f"{meta['device']}, torch {meta['torch']}, {args.dtype}, median of {args.reps} after {args.warmup} warm-up",
          flush=True)

    rows = []
    results = {"meta": meta, "rows": rows}
    by_name = {backend.name: backend for backend in backends}
    compare = flashattn_module is not None and OURS in by_name and "FLASH_ATTENTION" in by_name
    for head_dim in args.head_dims:
        for causal in causal_values:
            for seqlen in args.seqlens:
                point = (head_dim, causal, seqlen)
                for backend in backends:
                    point_rows = measure(backend, point, args, dtype, flush_buffer, import_error)
                    if compare and backend.name == OURS and point_rows[0]["tflops"] is not None:
                        try:
                            difference = forward_difference(backend, by_name["FLASH_ATTENTION"], point, dtype)
                            point_rows[0]["max_abs_diff_vs_fa2"] = round(difference, 5)
                            print(f"   max |flashattn - FA2| of the forward output: {difference:.5f}", flush=True)
                        except Exception as error:  # the timings stand; the comparison is reported as failed
                            point_rows[0]["max_abs_diff_vs_fa2_error"] = error_text(error)
                            print(f"   forward comparison failed: {error_text(error)}", flush=True)
                    rows.extend(point_rows)
                torch.cuda.empty_cache()
                write_results(results, args)  # after every point: a run stopped early keeps what it measured
    print(f"wrote {args.json} and {args.markdown}")
    if importlib.util.find_spec("matplotlib") is None:
        print(f"no plot: matplotlib is not installed; make it elsewhere with bench/plot_gpu.py {args.json} PNG")
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from plot_gpu import plot

        try:
            plot(results, args.plot)
            print(f"wrote {args.plot}")
        except Exception:  # the numbers are written already; a plotting failure must not lose them
            traceback.print_exc()

    ours_failed = [row for row in rows if row["backend"] == "flashattn" and row["tflops"] is None]
    if args.strict and (import_error or ours_failed):
        print(f"gpu_attention.py: flashattn failed on {len(ours_failed)} of "
              f"{sum(row['backend'] == 'flashattn' for row in rows)} measurements", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
