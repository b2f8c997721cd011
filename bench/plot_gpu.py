#!/usr/bin/env python3
"""Plots the results of bench/gpu_attention.py: TFLOP/s against sequence length, one panel per pass (forward,
backward), mask (causal or not) and head_dim, one line per backend. Needs matplotlib; runs on any machine.

usage: python3 bench/plot_gpu.py BENCH_JSON OUT_PNG
"""

import json
import sys

PASS_TITLES = {"fwd": "forward", "bwd": "backward"}


def seqlen_label(seqlen):
    return f"{seqlen // 1024}k" if seqlen % 1024 == 0 else str(seqlen)


def plot(results, png_path):
    """Writes the figure of one gpu_attention.py result (the JSON's object) to png_path."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the GPU machine
    import matplotlib.pyplot as plt

    rows = results["rows"]
    backends = list(dict.fromkeys(row["backend"] for row in rows))  # in the benchmark's order
    head_dims = sorted({row["head_dim"] for row in rows})
    seqlens = sorted({row["seqlen"] for row in rows})
    panels = [(p, c) for p in ("fwd", "bwd") for c in (False, True) if any(
        row["pass"] == p and row["causal"] == c for row in rows)]
    figure, axes = plt.subplots(len(panels), len(head_dims), figsize=(4.2 * len(head_dims), 3.2 * len(panels)),
                                squeeze=False, sharex=True)
    for (pass_name, causal), panel_axes in zip(panels, axes):
        for head_dim, ax in zip(head_dims, panel_axes):
            for backend in backends:
                points = sorted((row["seqlen"], row["tflops"]) for row in rows
                                if row["pass"] == pass_name and row["causal"] == causal and
                                row["head_dim"] == head_dim and row["backend"] == backend and
                                row["tflops"] is not None)
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=backend,
                            linewidth=2.5 if backend.startswith("flashattn") else 1.5)
            ax.set_xscale("log", base=2)
            ax.set_xticks(seqlens, [seqlen_label(s) for s in seqlens])
            ax.minorticks_off()
            ax.set_title(f"{PASS_TITLES[pass_name]}, head_dim {head_dim}, {'causal' if causal else 'no mask'}",
                         fontsize=10)
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            ax.set_ylabel("TFLOP/s")
    for ax in axes[-1]:
        ax.set_xlabel("sequence length (batch x seqlen = 16k tokens)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    meta = results.get("meta", {})
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    figure.suptitle(f"{meta.get('dtype', '')} attention on {meta.get('device', 'GPU')}, "
                    f"torch {meta.get('torch', '?')} ({meta.get('date', '')})")
    figure.tight_layout(rect=(0, 0.05, 1, 0.97))
    figure.savefig(png_path, dpi=110)
    plt.close(figure)


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as source:
        results = json.load(source)
    plot(results, sys.argv[2])
    print(f"wrote {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
