#!/usr/bin/env python3
"""Forward and backward attention throughput on one GPU: flashattn beside PyTorch's
scaled_dot_product_attention backends FLASH_ATTENTION (FlashAttention-2), CUDNN_ATTENTION and
EFFICIENT_ATTENTION, in the same process on the same card.

The protocol of the project's H100 baselines (shared/anchors/README.md beside the repository) and of the
FlashAttention papers: batch x seqlen = 16k tokens and heads x head_dim = 2048 at every point, head_dim
64 / 128 / 256, seqlen 512 ... 16k, causal and not, bf16 (--dtype fp16 for fp16). Inputs are fresh random
normal values. Each figure is the median of CUDA-event times of timed calls after warm-up calls, with the L2
cache flushed before each call (as triton.testing.do_bench, which the baselines used). The timed calls of a
point run in rounds (--rounds), each round timing every backend in turn: under sustained load the H100 here
runs at its 700 W power cap (nvidia-smi: SW power cap), its SM clock moving between about 1500 and 1980 MHz
from one tenth of a second to the next, and a backend timed in one block could draw a slow stretch that the
next did not (2026-11-26: our d = 128 forward at 8k read 334 TFLOP/s in one such run and 370 / 362 in two
runs minutes later, FA2 365 / 327 / 365). The backward is timed
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
# flashattn again with its kernel family forced (FLASHATTN_CUDA_PATH, src/cuda/backend.cpp): the Hopper kernel
# (an error where it does not apply, so the row shows which path ran) and the portable sm_80+ kernel.
OURS_PATHS = {
    "flashattn-hopper": ("flashattn (Hopper kernel)", "hopper"),
    "flashattn-portable": ("flashattn (portable kernel)", "portable"),
}
PATH_VARIABLE = "FLASHATTN_CUDA_PATH"
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


def timed_ms(call, count, flush_buffer, host_cover_cycles=0):
    """CUDA-event times of count calls of call() in milliseconds, the L2 cache flushed before each. With
    host_cover_cycles, each is queued behind a GPU-side wait of that many clock cycles, so that the host's time
    to queue the flush and the call is not timed (gpu_decode.py)."""
    import torch

    starts = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(count)]
    for start, end in zip(starts, ends):
        if host_cover_cycles:
            torch.cuda._sleep(host_cover_cycles)
        flush_buffer.zero_()
        start.record()
        call()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in zip(starts, ends)]


def round_sizes(reps, rounds):
    """reps timed calls split over rounds as evenly as can be."""
    rounds = max(1, min(rounds, reps))
    return [reps // rounds + (index < reps % rounds) for index in range(rounds)]


@contextlib.contextmanager
def forced_path(path):
    """FLASHATTN_CUDA_PATH=path inside the block (the library reads it at every call)."""
    previous = os.environ.get(PATH_VARIABLE)
    os.environ[PATH_VARIABLE] = path
    try:
        yield
    finally:
        if previous is None:
            del os.environ[PATH_VARIABLE]
        else:
            os.environ[PATH_VARIABLE] = previous


class Backend:
    """One implementation: how it lays out q, k, v and how it computes attention."""

    def __init__(self, name, label, attention, heads_before_seqlen, sdpa_backend=None, path=None):
        self.name = name
        self.label = label
        self.attention = attention  # (q, k, v, causal) -> out
        self.heads_before_seqlen = heads_before_seqlen  # (b, h, s, d) rather than (b, s, h, d)
        self.sdpa_backend = sdpa_backend
        self.path = path  # FLASHATTN_CUDA_PATH for flashattn's forced-path rows

    def context(self):
        """The context the calls run in: sdpa_kernel restricted to this backend, flashattn's kernel family
        forced, or nothing."""
        if self.path is not None:
            return forced_path(self.path)
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
        if name == OURS or name in OURS_PATHS:
            label, path = OURS_PATHS.get(name, ("flashattn", None))
            attention = None if flashattn_module is None else (
                lambda q, k, v, causal: flashattn_module.flash_attn_func(q, k, v, causal=causal))
            backends.append(Backend(name, label, attention, False, path=path))
        else:
            backends.append(Backend(name, SDPA_BACKENDS[name], lambda q, k, v, causal: F.scaled_dot_product_attention(
                q, k, v, is_causal=causal), True, getattr(SDPBackend, name)))
    return backends


def error_text(error):
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text[:ERROR_TEXT_LIMIT]


def prepare(backend, pass_name, point, dtype):
    """The call to time for one backend and pass at one point; it holds its inputs."""
    import torch

    head_dim, causal, seqlen = point
    batch, heads = TOKENS // seqlen, MODEL_WIDTH // head_dim
    with backend.context():
        if pass_name == "fwd":
            q, k, v = backend.inputs(batch, heads, seqlen, head_dim, dtype, requires_grad=False)

            def forward():
                with torch.no_grad():
                    backend.attention(q, k, v, causal)

            return forward
        q, k, v = backend.inputs(batch, heads, seqlen, head_dim, dtype, requires_grad=True)
        out = backend.attention(q, k, v, causal)
        dout = torch.randn_like(out)
        return lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)


def measure_point(backends, point, args, dtype, flush_buffer, import_error):
    """Forward and backward rows of every backend at one point. After each one's warm-up, the timed calls run in
    rounds, each round timing every backend and pass in turn: all see the same clock and power state, which on
    an H100 at its power cap changes from second to second (see the module's docstring)."""
    head_dim, causal, seqlen = point
    batch, heads = TOKENS // seqlen, MODEL_WIDTH // head_dim
    flops = forward_flops(batch, heads, seqlen, head_dim, causal)
    rows, timed = [], []
    for backend in backends:
        for pass_name, pass_flops in (("fwd", flops), ("bwd", flops * BACKWARD_FLOPS_FACTOR)):
            if pass_name not in args.passes:
                continue
            row = {"head_dim": head_dim, "causal": causal, "seqlen": seqlen, "batch": batch, "heads": heads,
                   "backend": backend.label, "pass": pass_name, "ms": None, "tflops": None}
            rows.append(row)
            try:
                if backend.attention is None:
                    raise RuntimeError(f"cannot import flashattn: {import_error}")
                call = prepare(backend, pass_name, point, dtype)
                with backend.context():
                    for _ in range(args.warmup):
                        call()
                timed.append({"row": row, "backend": backend, "call": call, "flops": pass_flops, "ms": []})
            except Exception as error:  # a backend that cannot run a shape is reported, not fatal
                row["error"] = error_text(error)
    for count in round_sizes(args.reps, args.rounds):
        for entry in timed:
            if "error" in entry["row"]:
                continue
            try:
                with entry["backend"].context():
                    entry["ms"] += timed_ms(entry["call"], count, flush_buffer)
            except Exception as error:
                entry["row"]["error"] = error_text(error)
    for entry in timed:
        row = entry["row"]
        if "error" not in row:
            ms = statistics.median(entry["ms"])
            row["ms"] = round(ms, 4)
            row["tflops"] = round(entry["flops"] / (ms * 1e-3) / 1e12, 1)
    timed.clear()  # frees every backend's inputs before the next point
    for row in rows:
        shown = f"{row['ms']:.3f} ms, {row['tflops']:.1f} TFLOP/s" if row["tflops"] is not None else row["error"]
        print(f"{row['pass']} d={head_dim} causal={int(causal)} s={seqlen} b={batch} h={heads} {row['backend']}: "
              f"{shown}", flush=True)
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
        f"calls after {meta['warmup']} warm-up calls, in {meta.get('rounds', 1)} rounds with the backends "
        f"interleaved, L2 flushed before each; FLOPs 4*b*h*s*s*d, halved when "
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
    parser.add_argument("--backends", nargs="+", choices=[OURS, *OURS_PATHS, *SDPA_BACKENDS],
                        default=[OURS, *SDPA_BACKENDS],
                        help="flashattn-hopper / flashattn-portable: flashattn with FLASHATTN_CUDA_PATH forced")
    parser.add_argument("--passes", nargs="+", choices=("fwd", "bwd"), default=["fwd", "bwd"])
    parser.add_argument("--warmup", type=int, help="warm-up calls (default 5, --quick 3)")
    parser.add_argument("--reps", type=int, default=20, help="timed calls, the median is reported (default 20)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds the timed calls are split into, every backend timed in each (default 5)")
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
        "rounds": args.rounds,
        "tokens": TOKENS,
        "model_width": MODEL_WIDTH,
        "flashattn": ours_info(flashattn_module) if flashattn_module else {"error": import_error},
    }
    print(f"{meta['device']}, torch {meta['torch']}, {args.dtype}, median of {args.reps} after {args.warmup} warm-up, "
          f"{args.rounds} interleaved rounds", flush=True)

    rows = []
    results = {"meta": meta, "rows": rows}
    by_name = {backend.name: backend for backend in backends}
    compare = flashattn_module is not None and OURS in by_name and "FLASH_ATTENTION" in by_name
    for head_dim in args.head_dims:
        for causal in causal_values:
            for seqlen in args.seqlens:
                point = (head_dim, causal, seqlen)
                point_rows = measure_point(backends, point, args, dtype, flush_buffer, import_error)
                ours_forward = next((row for row in point_rows if row["backend"] == by_name[OURS].label
                                     and row["pass"] == "fwd"), None) if compare else None
                if ours_forward is not None and ours_forward["tflops"] is not None:
                    try:
                        difference = forward_difference(by_name[OURS], by_name["FLASH_ATTENTION"], point, dtype)
                        ours_forward["max_abs_diff_vs_fa2"] = round(difference, 5)
                        print(f"   max |flashattn - FA2| of the forward output: {difference:.5f}", flush=True)
                    except Exception as error:  # the timings stand; the comparison is reported as failed
                        ours_forward["max_abs_diff_vs_fa2_error"] = error_text(error)
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
