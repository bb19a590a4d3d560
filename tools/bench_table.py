#!/usr/bin/env python3
"""Markdown tables of one `atspeed bench decode` JSON file (the README's decoding-speed tables).

    python3 tools/bench_table.py runs/beauty-bench/bench_decode.json

Prints the cost model's ideal speedups, the per-request table of the first batch size, and a
compact table of the other batch sizes (batch latency and speedup per method).
"""
import json
import sys


def fmt_row(r, ks_cols):
    acc = r.get("accepted_levels_per_round")
    ident = ""
    if "identical_fraction" in r:
        ident = f"{r['identical_fraction']:.3f} / {r['near_tie_flips']}"
    return "| " + " | ".join([
        str(r["k"]), str(r["batch_size"]), r["method"], f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}",
        f"{r['speedup_mean_ratio']:.2f}x ({r['speedup_total']:.2f}x)",
        "-" if acc is None else f"{acc:.2f}", f"{r['target_forwards']:.2f}",
        f"{r['recall']:.4f}", f"{r['ndcg']:.4f}", ident or "-"]) + " |"


def main(path):
    with open(path) as f:
        d = json.load(f)
    print(f"{d['dataset']}: {d['users']} test users, device {d['device']}, {d['threads']} threads, "
          f"target {d['target']}, draft {d['draft']}\n")
    cm = d.get("cost_model", {})
    if cm.get("ideal"):
        t, dr = cm["target"], cm["draft"]
        print(f"Cost model: target forward {t['a_s'] * 1e3:.2f} ms + {t['b_s'] * 1e3:.4f} ms per new token "
              f"(prefill {t['prefill_s'] * 1e3:.2f} ms); draft {dr['a_s'] * 1e3:.2f} ms + {dr['b_s'] * 1e3:.4f} ms "
              f"(prefill {dr['prefill_s'] * 1e3:.2f} ms). Ideal speedup if every level were accepted: "
              + ", ".join(f"K={i['k']} {i['ideal_speedup']:.2f}x" for i in cm["ideal"]) + "\n")
    if d.get("auto"):
        print("auto's plan per batch size and K (predicted ms per request: target beam search / best strict): " + ", ".join(
            f"batch {a['batch_size']} K={a['k']} "
            + (f"strict N={a['n']} gamma={a['gamma']}" if a["mode"] == "strict" else "target")
            + f" ({a['predicted_target_ms']:.2f} / {a['predicted_strict_ms']:.2f})"
            for a in d["auto"]) + "\n")
    elif d.get("adaptive"):  # files written before auto replaced adaptive
        print("Adaptive choice per K: " + ", ".join(
            f"K={a['k']} " + ("target beam search" if a.get("fallback_to_target") else f"N={a['n']} gamma={a['gamma']}")
            for a in d["adaptive"]) + "\n")
    bs0 = d["batch_sizes"][0]
    print("| K | batch | method | median ms | p90 ms | speedup (total) | accepted levels / round | "
          "target forwards / request | Recall@K | NDCG@K | identical / near-tie flips |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in d["results"]:
        if r["batch_size"] == bs0:
            print(fmt_row(r, d["ks"]))
    for bs in d["batch_sizes"][1:]:
        rows = [r for r in d["results"] if r["batch_size"] == bs]
        methods = []
        for r in rows:
            if r["method"].split("(")[0] not in [m.split("(")[0] for m in methods]:
                methods.append(r["method"])
        names = [m.split("(")[0] for m in methods]
        print(f"\nBatch {bs} (median latency of a batch; speedup as above):\n")
        print("| K | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for k in d["ks"]:
            cells = []
            for n in names:
                r = next((x for x in rows if x["k"] == k and x["method"].split("(")[0] == n), None)
                cells.append("-" if r is None else f"{r['median_ms']:.1f} ms ({r['speedup_mean_ratio']:.2f}x)")
            print(f"| {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tools/bench_table.py bench_decode.json")
    main(sys.argv[1])
