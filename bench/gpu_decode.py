#!/usr/bin/env python3
"""Decoding throughput on one GPU: flashattn's KV-cache call (contiguous cache and paged cache, page 16)
beside PyTorch's scaled_dot_product_attention backends CUDNN_ATTENTION and FLASH_ATTENTION (FlashAttention-2)
on the contiguous cache, in the same process on the same card, plus the card's device-to-device copy
bandwidth measured in the same run.

The shape of the project's H100 decode baselines (shared/anchors/README.md beside the repository): one new
query token per sequence, 32 query heads, 8 KV heads, head_dim 128, bf16, every sequence's cache full. The
figure is the K/V bytes read (2 x batch x seqlen x 8 x 128 x 2 bytes) over the median GPU time of CUDA-event
timed calls after warm-up, the L2 cache flushed before each, the timed calls in rounds with every backend timed
in each (bench/gpu_attention.py explains why). Each timed call is queued behind a GPU-side wait longer than the
host takes to queue the flush and the call, so that the events time the GPU's work whatever the host's speed:
small decoding steps would otherwise time the host (the framework's dispatch and the library's Python layer,
tens of microseconds), as they do when called eagerly one by one, and not under a CUDA graph. That host time is
measured on its own: host_us, the wall time per call of `reps` calls queued back to back. The copy bandwidth counts bytes read plus written, as the
baselines' does. flashattn gets q (batch, 1, 32, 128), the cache (batch, seqlen, 8, 128) and cache_seqlens,
through flash_attn_with_kvcache (no new tokens appended, so every call does the same work); paged, the
cache is (pages, 16, 8, 128) and block_table gives each sequence its pages in a shuffled order. PyTorch gets
q (batch, 32, 1, 128) and K/V (batch, 8, seqlen, 128) with enable_gqa=True. flashattn's output is compared
with cuDNN's at every point (max_abs_diff_vs_cudnn).

Not a test, not part of CI. Example:
    python3 bench/gpu_decode.py --json out/decode.json
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_attention import L2_FLUSH_BYTES, error_text, ours_info, round_sizes, timed_ms  # noqa: E402

HEADS_Q, HEADS_KV, HEAD_DIM = 32, 8, 128
PAGE_SIZE = 16
# The baselines' three decode points first, then the grid; points above MAX_TOKENS cache tokens are skipped.
ANCHORS = ((64, 4096), (8, 32768), (2, 131072))
GRID_BATCHES = (1, 4, 16, 64, 256)
GRID_SEQLENS = (512, 2048, 8192, 32768, 131072)
MAX_TOKENS = 1 << 20  # 4 GiB of K/V per layout; three layouts live at once
COPY_BYTES = 1 << 30
# The GPU-side wait before each timed call, in clock cycles: about 0.5 ms at the H100's 1.98 GHz, several times
# the host time of the slowest call measured (about 120 us on the slowest GPU machine's host, 2026-11-26).
HOST_COVER_CYCLES = 1_000_000
OURS, OURS_PAGED = "flashattn", "flashattn paged (page 16)"
SDPA = {"CUDNN_ATTENTION": "PyTorch CUDNN_ATTENTION", "FLASH_ATTENTION": "PyTorch FLASH_ATTENTION (FA2)"}


def kv_bytes(batch, seqlen):
    return 2 * batch * seqlen * HEADS_KV * HEAD_DIM * 2


def copy_bandwidth(flush_buffer, reps):
    """Device-to-device copy, bytes read plus written over the median time, TB/s."""
    import torch

    source = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    ms = statistics.median(timed_ms(lambda: target.copy_(source), reps, flush_buffer))
    return 2 * COPY_BYTES / (ms * 1e-3) / 1e12


def host_us(call, count):
    """Wall time per call of count calls queued back to back (no synchronisation between them), microseconds."""
    import torch

    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(count):
        call()
    elapsed = time.perf_counter() - began
    torch.cuda.synchronize()
    return elapsed / count * 1e6


def make_calls(flashattn_module, batch, seqlen, dtype):
    """name -> (call, output getter) for every backend at one point; each call holds its inputs."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(batch, 1, HEADS_Q, HEAD_DIM, device="cuda", dtype=dtype)
    k = torch.randn(batch, seqlen, HEADS_KV, HEAD_DIM, device="cuda", dtype=dtype)
    v = torch.randn_like(k)
    cache_seqlens = torch.full((batch,), seqlen, dtype=torch.int32, device="cuda")
    pages_per_sequence = seqlen // PAGE_SIZE
    order = torch.randperm(batch * pages_per_sequence, device="cuda")
    block_table = order.view(batch, pages_per_sequence).to(torch.int32)
    k_pages = torch.empty(batch * pages_per_sequence, PAGE_SIZE, HEADS_KV, HEAD_DIM, device="cuda", dtype=dtype)
    v_pages = torch.empty_like(k_pages)
    k_pages[order] = k.reshape(-1, PAGE_SIZE, HEADS_KV, HEAD_DIM)
    v_pages[order] = v.reshape(-1, PAGE_SIZE, HEADS_KV, HEAD_DIM)
    q_sdpa = q.transpose(1, 2).contiguous()
    k_sdpa, v_sdpa = k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()
    calls = {}
    if flashattn_module is not None:
        calls[OURS] = lambda: flashattn_module.flash_attn_with_kvcache(q, k, v, cache_seqlens=cache_seqlens)
        calls[OURS_PAGED] = lambda: flashattn_module.flash_attn_with_kvcache(
            q, k_pages, v_pages, cache_seqlens=cache_seqlens, block_table=block_table)
    for name, label in SDPA.items():
        def sdpa(backend=getattr(SDPBackend, name)):
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q_sdpa, k_sdpa, v_sdpa, enable_gqa=True).transpose(1, 2)
        calls[label] = sdpa
    return calls


def measure_point(flashattn_module, batch, seqlen, args, dtype, flush_buffer):
    rows, timed = [], []
    calls = make_calls(flashattn_module, batch, seqlen, dtype)
    outputs = {}
    for label, call in calls.items():
        row = {"batch": batch, "seqlen": seqlen, "backend": label, "us": None, "tbps": None, "host_us": None}
        rows.append(row)
        try:
            for _ in range(args.warmup):
                outputs[label] = call()
            timed.append({"row": row, "call": call, "ms": []})
        except Exception as error:  # a backend that cannot run a shape is reported, not fatal
            row["error"] = error_text(error)
    for count in round_sizes(args.reps, args.rounds):
        for entry in timed:
            if "error" not in entry["row"]:
                try:
                    entry["ms"] += timed_ms(entry["call"], count, flush_buffer, HOST_COVER_CYCLES)
                    entry.setdefault("host_us", []).append(host_us(entry["call"], count))
                except Exception as error:
                    entry["row"]["error"] = error_text(error)
    reference = outputs.get(SDPA["CUDNN_ATTENTION"])
    for entry in timed:
        row = entry["row"]
        if "error" in row:
            continue
        ms = statistics.median(entry["ms"])
        row["us"] = round(ms * 1e3, 2)
        row["tbps"] = round(kv_bytes(batch, seqlen) / (ms * 1e-3) / 1e12, 3)
        row["host_us"] = round(statistics.median(entry["host_us"]), 1)
        if reference is not None and row["backend"] in (OURS, OURS_PAGED):
            row["max_abs_diff_vs_cudnn"] = round((outputs[row["backend"]].float() - reference.float()).abs().max().item(), 5)
    for row in rows:
        shown = (
            f"{row['us']:.1f} us, {row['tbps']:.3f} TB/s, host {row['host_us']:.1f} us"
            if row["tbps"] is not None
            else row["error"]
        )
        extra = f", max |diff| vs cuDNN {row['max_abs_diff_vs_cudnn']}" if "max_abs_diff_vs_cudnn" in row else ""
        print(f"b={batch} s={seqlen} {row['backend']}: {shown}{extra}", flush=True)
    return rows


def markdown_table(results):
    meta, rows = results["meta"], results["rows"]
    labels = list(dict.fromkeys(row["backend"] for row in rows))
    points = list(dict.fromkeys((row["batch"], row["seqlen"]) for row in rows))
    cell = {(row["batch"], row["seqlen"], row["backend"]): row for row in rows}
    lines = [
        f"# Decoding, K/V TB/s (µs per call), {meta['dtype']}, {meta['device']}",
        "",
        f"{meta['date']}, torch {meta['torch']}; 1 query token, {HEADS_Q} query heads, {HEADS_KV} KV heads, "
        f"head_dim {HEAD_DIM}; median GPU time of {meta['reps']} CUDA-event timed calls after {meta['warmup']} "
        f"warm-up calls in {meta['rounds']} interleaved rounds, L2 flushed before each, each call queued behind a "
        f"GPU-side wait (the host's time not timed). Device copy in the same run: {meta['copy_tbps']:.2f} TB/s "
        "(read + written). Then the host's time per call (µs), calls queued back to back.",
        "",
        "| batch | seqlen | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for batch, seqlen in points:
        values = []
        for label in labels:
            row = cell.get((batch, seqlen, label))
            values.append("error" if row is None or row["tbps"] is None else f"{row['tbps']:.2f} ({row['us']:.0f})")
        lines.append(f"| {batch} | {seqlen} | " + " | ".join(values) + " |")
    lines += ["", "Host time per call, µs:", "", "| batch | seqlen | " + " | ".join(labels) + " |"]
    lines.append("|---|---|" + "---|" * len(labels))
    for batch, seqlen in points:
        values = []
        for label in labels:
            row = cell.get((batch, seqlen, label))
            values.append("error" if row is None or row.get("host_us") is None else f"{row['host_us']:.0f}")
        lines.append(f"| {batch} | {seqlen} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the baselines' three points only")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default="gpu_decode.json")
    args = parser.parse_args()
    args.markdown = os.path.splitext(args.json)[0] + ".md"
    return args


def main():
    args = parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_decode.py: torch sees no CUDA device", file=sys.stderr)
        return 1
    try:
        import flashattn as flashattn_module
    except Exception as error:
        print(f"flashattn: cannot import: {error_text(error)}", flush=True)
        flashattn_module = None
    torch.manual_seed(0)
    flush_buffer = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")
    meta = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dtype": "bf16",
        "warmup": args.warmup,
        "reps": args.reps,
        "rounds": args.rounds,
        "timing": "GPU time, each timed call queued behind a GPU-side wait of HOST_COVER_CYCLES; host_us apart",
        "copy_tbps": copy_bandwidth(flush_buffer, args.reps),
        "flashattn": ours_info(flashattn_module) if flashattn_module else None,
    }
    print(f"{meta['device']}: device copy {meta['copy_tbps']:.3f} TB/s", flush=True)
    points = list(ANCHORS)
    if not args.quick:
        points += [(b, s) for b in GRID_BATCHES for s in GRID_SEQLENS if b * s <= MAX_TOKENS and (b, s) not in ANCHORS]
    rows = []
    results = {"meta": meta, "rows": rows}
    for batch, seqlen in points:
        rows.extend(measure_point(flashattn_module, batch, seqlen, args, torch.bfloat16, flush_buffer))
        torch.cuda.empty_cache()
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(results, out, indent=1)
        with open(args.markdown, "w", encoding="utf-8") as out:
            out.write(markdown_table(results))
    print(f"wrote {args.json} and {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
