#!/usr/bin/env python3
"""Do two `atspeed bench decode` JSON files describe the same decoding? Compares every per-row field
that does not come from a clock (accepted levels, target and draft forwards, recall, NDCG, identical
fractions, flips, bytes copied, ...) for every (method, K, batch, N, gamma) row, and the row sets.
Used to check that a pipeline rebuilt from nothing reproduces committed results (README, "The
paper's protocol on Beauty / Games"): the same target and draft give the same rows on any machine
and thread count of the bench; only the timings move.

    python3 tools/bench_same.py A.json B.json

Prints each differing field and exits 1 when any differs, 0 when the two are the same.
"""
import json
import sys

# Fields measured by a clock, or derived from one (speedups, time fractions, cost projections).
TIMING_SUFFIXES = ("_ms", "_s", "_fraction", "_ms_per_request")


def is_timing(field):
    return field.startswith(("speedup", "projection")) or field.endswith(TIMING_SUFFIXES)


def rows(path):
    with open(path) as f:
        data = json.load(f)
    return {(r["method"], r["k"], r["batch_size"], r.get("draft_width"), r.get("gamma")): r for r in data["results"]}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = rows(sys.argv[1]), rows(sys.argv[2])
    diffs = 0
    for key in sorted(set(a) ^ set(b), key=str):
        print(f"row {key}: only in {sys.argv[1] if key in a else sys.argv[2]}")
        diffs += 1
    compared = 0
    for key in sorted(set(a) & set(b), key=str):
        for field in sorted(set(a[key]) | set(b[key])):
            if is_timing(field):
                continue
            compared += 1
            if a[key].get(field) != b[key].get(field):
                print(f"row {key}: {field} {a[key].get(field)!r} != {b[key].get(field)!r}")
                diffs += 1
    print(f"{len(set(a) & set(b))} common rows, {compared} fields compared, {diffs} differences")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
