#!/usr/bin/env python3
"""The README's "Decode hot path" tables from tools/hotpath_bench.sh's runs: per pair (beauty:
target_small + draft_small; quickstart), K, batch and method, the median over rounds of the median
latency, the time split (target forwards / draft forwards / rest), device-to-host copies and KB per
forward, before (runs/hotpath/before*) and after (runs/hotpath/after*).

    python3 tools/hotpath_table.py [runs/hotpath]
"""
import glob
import json
import os
import statistics
import sys


def rounds(root, variant, pair):
    out = []
    for d in sorted(glob.glob(os.path.join(root, variant + "*"))):
        p = os.path.join(d, f"decode_{pair}.json")
        if os.path.exists(p):
            out.append({(r["k"], r["batch_size"], r["method"]): r for r in json.load(open(p))["results"]})
    return out


def med(rs, key, field):
    vals = [r[key][field] for r in rs if key in r and field in r[key]]
    return statistics.median(vals) if vals else float("nan")


def main(root):
    for pair, title in (("beauty", "Beauty target_small + CE draft_small"), ("quickstart", "quickstart pair")):
        before, after = rounds(root, "before", pair), rounds(root, "after", pair)
        if not before or not after:
            continue
        print(f"\n{title}: median over {len(before)} / {len(after)} rounds (before / after)\n")
        print("| K | batch | method | median ms before → after | target fwd % | draft fwd % | rest % | rest ms/request | copies / forward | KB / forward |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for key in sorted(after[0], key=lambda k: (k[0], k[1], k[2] != "target")):
            k, b, m = key
            cell = lambda f, s=1.0, fmt="{:.1f}": f"{fmt.format(med(before, key, f) * s)} → {fmt.format(med(after, key, f) * s)}"
            print(f"| {k} | {b} | {m} | {cell('median_ms', 1, '{:.2f}')} | {cell('target_forward_fraction', 100)} | "
                  f"{cell('draft_forward_fraction', 100)} | {cell('rest_fraction', 100)} | {cell('rest_ms_per_request', 1, '{:.2f}')} | "
                  f"{cell('copies_per_forward', 1, '{:.2f}')} | {cell('bytes_per_forward', 1 / 1024, '{:.1f}')} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/hotpath")
