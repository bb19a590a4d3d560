#!/usr/bin/env python3
"""Markdown tables of the draft-alignment comparison (launch/align.sh): one row per draft, one
column per K, from the `bench decode` JSON files given on the command line (one per draft; the
draft's run directory names it: runs/align/<ds>-<objective>-a<alpha>-e<epochs>/bench_align.json (-s<steps>
for a step budget; the paper protocol's runs/align/<ds>-h<size>-<objective>-a<alpha>-wd<wd>-e<epochs>), or
runs/<ds>-draft/bench_align.json for the CE draft every run starts from).

Cells: accepted levels per round / target forwards per request, for strict (AtSpeed-S, N=40)
and relaxed (AtSpeed-R, N=40) verification, then the speedups (mean per-request latency ratio
against target beam search for strict, target beam sampling for relaxed).
"""
import json
import os
import re
import sys
from collections import namedtuple

# One draft's bench: obj/alpha/budget from its directory name (draft_name), the JSON, and its
# fixed-width strict/relaxed results by (kind, k).
Row = namedtuple("Row", "obj alpha budget data by")


def label(row):
    return f"{row.obj} | {row.alpha} | {row.budget}"


def header(ks, extra=""):
    print("| objective | alpha | budget (epochs) | " + " | ".join(f"K={k}" for k in ks) + f" |{extra}")
    print("|---|---|---|" + "---|" * (len(ks) + (1 if extra else 0)))


def draft_name(path):
    d = os.path.basename(os.path.dirname(path))
    # The paper protocol's runs (align.sh paper) add the size and the weight decay:
    # runs/align/<ds>-h<size>-<objective>[-scratch]-a<alpha>-wd<wd>-e<epochs>.
    m = re.match(r"^[a-z]+-(.+)-a([0-9.]+)(?:-wd([0-9.]+))?-([es])([0-9]+)$", d)
    if m:
        obj = m.group(1) + (f" (wd {m.group(3)})" if m.group(3) else "")
        if m.group(2) == "0":  # alpha 0: a CE draft trained from scratch on all training prefixes, the runs' start
            obj += " (start)"
        return obj, m.group(2), m.group(5) + (" steps" if m.group(4) == "s" else "")
    return "start (CE draft)", "-", "-"


def size_of(name):
    """The paper protocol's draft size ("h128") of a row name, or None."""
    m = re.match(r"^(h[0-9]+)-", name)
    return m.group(1) if m else None


def relative_table(rows, ks, kind):
    """Accepted levels per round of every paper-protocol row divided by its own size's CE row (the
    same-budget baseline), per K: the issue-18 goal is >= 1.20 at K = 10 and 20 under strict."""
    def key(row):  # (size, budget, start): the CE row of the same size, budget and start is the baseline
        return size_of(row.obj), row.budget, row.obj.split(" (")[0].endswith("-scratch")

    def wd_of(row):  # "0.01" of "h64-seqkd (wd 0.01)", None without one
        m = re.search(r"\(wd ([0-9.]+)\)", row.obj)
        return m.group(1) if m else None

    def is_ce(row):  # h<size>-ce or, for from-scratch runs, h<size>-ce-scratch
        size = size_of(row.obj)
        return size is not None and row.obj.split(" (")[0] in (size + "-ce", size + "-ce-scratch")

    # The CE row of the same weight decay when there is one, else the first CE row of the same
    # size, budget and start (a grid point at a weight decay no CE run used).
    ce, ce_any = {}, {}
    for row in rows:
        if is_ce(row):
            ce[key(row) + (wd_of(row),)] = row.by
            ce_any.setdefault(key(row), row.by)
    if not ce_any:
        return
    print(f"{kind}: accepted levels per round relative to the same size's CE draft (same protocol, budget, start and, where a CE run used it, weight decay)\n")
    header(ks)
    for row in rows:
        base = ce.get(key(row) + (wd_of(row),), ce_any.get(key(row)))
        if base is None:
            continue
        cells = []
        for k in ks:
            r, b = row.by.get((kind, k)), base.get((kind, k))
            ok = r is not None and b is not None and b["accepted_levels_per_round"] > 0
            cells.append(f"{r['accepted_levels_per_round'] / b['accepted_levels_per_round']:.2f}" if ok else "-")
        print(f"| {label(row)} | " + " | ".join(cells) + " |")
    print()


def main(paths):
    rows = []
    for p in paths:
        if not os.path.exists(p):
            continue
        with open(p) as f:
            d = json.load(f)
        obj, alpha, ep = draft_name(p)
        by = {}
        for r in d["results"]:
            # Fixed-width strict/relaxed rows of the first batch size (not adaptive, not baselines).
            if r["batch_size"] == d["batch_sizes"][0] and r["method"].startswith(r["kind"] + "("):
                by[(r["kind"], r["k"])] = r
        rows.append(Row(obj, alpha, ep, d, by))
    if not rows:
        sys.exit("align_table: no bench JSON files found")
    d0 = rows[0].data
    ks = d0["ks"]
    print(f"{d0['dataset']}: {d0['users']} test users, batch {d0['batch_sizes'][0]}, N = 40, target {d0['target']}\n")
    for kind, title in (("strict", "AtSpeed-S (strict)"), ("relaxed", "AtSpeed-R (relaxed)")):
        print(f"{title}: accepted levels per round / target forwards per request (baseline 4)\n")
        header(ks, " mean acc/rd |")
        for row in rows:
            cells, accs = [], []
            for k in ks:
                r = row.by.get((kind, k))
                if r is None:
                    cells.append("-")
                    continue
                accs.append(r["accepted_levels_per_round"])
                cells.append(f"{r['accepted_levels_per_round']:.2f} / {r['target_forwards']:.2f}")
            mean = f"{sum(accs) / len(accs):.2f}" if accs else "-"
            print(f"| {label(row)} | " + " | ".join(cells) + f" | {mean} |")
        print()
        relative_table(rows, ks, kind)
    print("Speedup (mean of per-request latency ratios) strict / relaxed, and strict identical fraction\n")
    header(ks)
    for row in rows:
        cells = []
        for k in ks:
            s, r = row.by.get(("strict", k)), row.by.get(("relaxed", k))
            if s is None:
                cells.append("-")
                continue
            cell = f"{s['speedup_mean_ratio']:.2f}x"
            if r is not None:
                cell += f" / {r['speedup_mean_ratio']:.2f}x"
            cell += f" ({s.get('identical_fraction', float('nan')):.3f})"
            cells.append(cell)
        print(f"| {label(row)} | " + " | ".join(cells) + " |")
    # Strict decoding must return target beam search's lists: a difference is either a counted
    # near-tie flip (two beams within float noise swap, and a cascade may follow) or a mismatch.
    print("\nStrict lists that differ from target beam search, all K: near-tie flips / cascades / mismatches\n")
    for row in rows:
        strict = [r for (kind, _), r in row.by.items() if kind == "strict"]
        flips = sum(r.get("near_tie_flips", 0) for r in strict)
        cascades = sum(r.get("near_tie_cascades", 0) for r in strict)
        mismatches = sum(r.get("mismatches", 0) for r in strict)
        print(f"- {row.obj}: {flips} / {cascades} / {mismatches}")


if __name__ == "__main__":
    main(sys.argv[1:])
