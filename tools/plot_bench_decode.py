#!/usr/bin/env python3
"""Plot of `atspeed bench decode` JSON: speedup and accepted levels per round against K.

Usage: plot_bench_decode.py BENCH.json OUT.png   (needs matplotlib; `. launch/setup.sh` installs it
into the torch venv, and `atspeed bench decode` calls this script with that venv's python).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        bench = json.load(f)
    rows = bench["results"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    series = {}
    for r in rows:
        series.setdefault((r["method"].split("(")[0], r["batch_size"]), []).append(r)
    colors = plt.cm.tab20.colors
    for i, ((method, bs), rs) in enumerate(sorted(series.items())):
        rs = sorted(rs, key=lambda r: r["k"])
        ks = [r["k"] for r in rs]
        # one color per method and batch size in every panel; batch 1 solid, larger batches dashed
        style = dict(marker="o", color=colors[i % len(colors)], linestyle="-" if bs == 1 else "--",
                     label=f"{method} (batch {bs})")
        axes[0].plot(ks, [r["speedup_mean_ratio"] for r in rs], **style)
        axes[1].plot(ks, [r["target_forwards"] for r in rs], **style)
        # Baselines have no acceptance, and auto has none at a K where it chose target beam search:
        # those points are gaps (NaN), not zeros.
        acc = [r.get("accepted_levels_per_round", float("nan")) for r in rs]
        if any(a == a for a in acc):
            axes[2].plot(ks, acc, **style)
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[0].set_title("speedup vs its baseline (mean per-request ratio)")
    axes[1].set_title("target forwards per request")
    axes[2].set_title("accepted levels per round")
    for ax in axes:
        ax.set_xlabel("K (beam width)")
        ax.set_xscale("log")
        ax.set_xticks(bench["ks"])
        ax.set_xticklabels([str(k) for k in bench["ks"]])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"atspeed bench decode: {bench['dataset']}, {bench['users']} test users, {bench['device']}, "
                 f"{bench['threads']} threads")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main()
