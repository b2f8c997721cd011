#!/usr/bin/env python3
"""Plots bench/gpu_decode.py's JSON: K/V TB/s against the cache length, one panel per batch size, one line per
backend, the device copy bandwidth of the same run as a dashed line.

    python3 bench/plot_decode.py docs/decode_h100_2026-11-26.json docs/decode_h100_2026-11-26.png
"""

import json
import sys


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in results["rows"] if row["tbps"] is not None]
    batches = sorted({row["batch"] for row in rows})
    labels = list(dict.fromkeys(row["backend"] for row in rows))
    columns = (len(batches) + 1) // 2
    figure, grid = plt.subplots(2, columns, figsize=(3.4 * columns, 6.4), sharey=True, squeeze=False)
    axes = grid.flatten()
    for axis in axes[len(batches):]:
        axis.set_visible(False)
    for axis, batch in zip(axes, batches):
        for label in labels:
            points = sorted((row["seqlen"], row["tbps"]) for row in rows if row["batch"] == batch and row["backend"] == label)
            if points:
                axis.plot(*zip(*points), marker="o", markersize=3, label=label)
        axis.axhline(results["meta"]["copy_tbps"], color="gray", linestyle="--", linewidth=0.8)
        axis.set_xscale("log", base=2)
        axis.set_title(f"batch {batch}")
        axis.set_xlabel("cache length (keys)")
    axes[0].set_ylabel("K/V read, TB/s")
    axes[0].legend(fontsize=6, loc="lower right")
    meta = results["meta"]
    figure.suptitle(f"Decoding, {meta['device']}, bf16, 32 query / 8 KV heads, d = 128 ({meta['date'][:10]}); "
                    "dashed: device copy", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plot_decode.py RESULTS.json PLOT.png")
    with open(sys.argv[1], encoding="utf-8") as source:
        plot(json.load(source), sys.argv[2])
