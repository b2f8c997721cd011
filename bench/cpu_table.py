#!/usr/bin/env python3
"""Turns CPU benchmark JSON lines into a Markdown table (flashattn vs PyTorch) and a bar plot.

Inputs: JSON-lines files written by `flashattn bench --json` (one object per run, forward and optionally
backward) and by bench/torch_cpu_sdpa.py (one object per pass); the kind of each line is told by its keys.
Throughput is compared in GFLOP/s by the FlashAttention convention (4*b*h*s_q*s_k*d, halved when causal,
backward 2.5x), which both tools report.

    python3 bench/cpu_table.py out/flashattn.jsonl out/torch.jsonl --markdown out/table.md --plot out/cpu.png
"""

import argparse
import json
import sys

PASSES = (("fwd", "forward"), ("bwd", "backward"))
PASS_ORDER = [name for name, _ in PASSES]


def measurement_key(threads, dtype, batch, heads, seqlen_q, seqlen_k, head_dim, causal, pass_name):
    return (int(threads), dtype, int(batch), int(heads), int(seqlen_q), int(seqlen_k), int(head_dim),
            bool(causal), pass_name)


def read_measurements(paths):
    """Maps measurement_key -> {"flashattn": GFLOP/s, "torch": GFLOP/s}, with the CPU ISA seen."""
    table, isas = {}, set()
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    sys.exit(f"{path}:{number}: not JSON: {error}")
                if row.get("tool") == "flashattn bench":
                    problem = row["problem"]
                    isas.add(row.get("cpu_isa", "?"))
                    for pass_name, section in PASSES:
                        if section not in row:
                            continue
                        key = measurement_key(row["threads"], problem["dtype"], problem["batch"], problem["heads"],
                                              problem["seqlen_q"], problem["seqlen_k"], problem["head_dim"],
                                              problem["causal"], pass_name)
                        table.setdefault(key, {})["flashattn"] = row[section]["gflops_convention"]
                elif row.get("impl") == "torch_sdpa_cpu":
                    key = measurement_key(row["threads"], row["dtype"], row["batch"], row["heads"], row["seqlen_q"],
                                          row["seqlen_k"], row["head_dim"], row["causal"], row["pass"])
                    table.setdefault(key, {})["torch"] = row["gflops"]
                else:
                    sys.exit(f"{path}:{number}: neither a flashattn bench nor a torch_cpu_sdpa line")
    return table, isas


def shape_label(key):
    _, _, batch, heads, seqlen_q, seqlen_k, head_dim, causal, _ = key
    seqlen = str(seqlen_q) if seqlen_q == seqlen_k else f"{seqlen_q}x{seqlen_k}"
    return f"{batch}, {heads}, {seqlen}, {head_dim}, {'yes' if causal else 'no'}"


def sort_key(key):
    """Threads, dtype, shape, then forward before backward."""
    return key[:-1] + (PASS_ORDER.index(key[-1]),)


def ratio(values):
    if "flashattn" in values and "torch" in values and values["torch"] > 0:
        return values["flashattn"] / values["torch"]
    return None


def markdown(table, isas):
    lines = [
        f"flashattn CPU backend (ISA {', '.join(sorted(isas)) or '?'}) vs PyTorch CPU scaled_dot_product_attention,",
        "GFLOP/s by the FlashAttention convention (forward 4*b*h*s_q*s_k*d, halved for causal; backward 2.5x),",
        "median time per call.",
        "",
        "| threads | dtype | b, h, s, d, causal | pass | flashattn | PyTorch | flashattn / PyTorch |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in sorted(table, key=sort_key):
        values = table[key]
        threads, dtype, *_, pass_name = key
        ours = f"{values['flashattn']:.0f}" if "flashattn" in values else "-"
        theirs = f"{values['torch']:.0f}" if "torch" in values else "-"
        share = ratio(values)
        lines.append(f"| {threads} | {dtype} | {shape_label(key)} | {pass_name} | {ours} | {theirs} | "
                     f"{f'{share:.2f}' if share is not None else '-'} |")
    return "\n".join(lines) + "\n"


def plot(table, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("cpu_table.py: matplotlib is not installed; no plot", file=sys.stderr)
        return
    thread_counts = sorted({key[0] for key in table})
    figure, axes = plt.subplots(len(thread_counts), 1, figsize=(12, 4.5 * len(thread_counts)), squeeze=False)
    bar_width = 0.4
    for axis, threads in zip(axes[:, 0], thread_counts):
        keys = sorted((key for key in table if key[0] == threads), key=sort_key)
        positions = range(len(keys))
        for offset, (impl, label) in ((-bar_width / 2, ("flashattn", "flashattn")),
                                      (bar_width / 2, ("torch", "PyTorch sdpa"))):
            heights = [table[key].get(impl, 0.0) for key in keys]
            axis.bar([p + offset for p in positions], heights, bar_width, label=label)
        axis.set_xticks(list(positions))
        axis.set_xticklabels([f"{key[1]} {key[8]}\n{shape_label(key)}" for key in keys], fontsize=7, rotation=30,
                             ha="right")
        axis.set_ylabel("GFLOP/s")
        axis.set_title(f"{threads} thread{'' if threads == 1 else 's'} (b, h, s, d, causal)")
        axis.legend()
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", help="JSON-lines files")
    parser.add_argument("--markdown", help="write the table here too (it is always printed)")
    parser.add_argument("--plot", help="write a PNG bar plot here")
    args = parser.parse_args()

    table, isas = read_measurements(args.inputs)
    if not table:
        sys.exit("cpu_table.py: no measurements in the inputs")
    text = markdown(table, isas)
    print(text, end="")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as sink:
            sink.write(text)
    if args.plot:
        plot(table, args.plot)


if __name__ == "__main__":
    main()
