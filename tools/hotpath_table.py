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
        print(f"\n{title}, strict N=40 against target beam search (after, median over {len(after)} rounds): speedup as "
              "ratio of totals, measured and as this machine's cost model prices the run's forward traces, and the "
              "same traces priced by the H200's 7B/68M curves (a projection)\n")
        print("| K | batch | measured | forwards only (error) | + measured rest (error) | projected at 7B/68M on the H200 |")
        print("|---|---|---|---|---|---|")
        errs = []
        for key in sorted(k for k in after[0] if "projection_local" in after[0][k]):
            vals = [r[key] for r in after if key in r and "projection_local" in r[key]]
            pm = lambda f: statistics.median(v["projection_local"][f] for v in vals)
            errs += [abs(v["projection_local"]["forwards_only_error"]) for v in vals]
            proj = statistics.median(v.get("projected_speedup", float("nan")) for v in vals)
            print(f"| {key[0]} | {key[1]} | {pm('measured_speedup_total'):.2f}x | {pm('forwards_only'):.2f}x "
                  f"({100 * pm('forwards_only_error'):+.0f}%) | {pm('with_rest'):.2f}x ({100 * pm('with_rest_error'):+.0f}%) | "
                  f"{proj:.2f}x |")
        if errs:
            print(f"\nforwards-only projection error over all {len(errs)} runs: median |error| "
                  f"{100 * statistics.median(errs):.0f}%, max {100 * max(errs):.0f}%")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/hotpath")
