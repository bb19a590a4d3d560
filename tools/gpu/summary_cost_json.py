#!/usr/bin/env python3
"""Rebuilds a cost-model JSON (the `atspeed bench forward --json` layout) from the bench forward table
of a GPU kit summary (docs/gpu/*-summary.md), for runs whose JSON did not come back.

    python3 tools/gpu/summary_cost_json.py docs/gpu/2026-11-30-h200-run3-forward-summary.md OUT.json

Each model's points are the table's medians (no interquartile range: the table has none, so q1 = q3 =
median). The table has no prefill time either: prefill_s is the forward time of `context` new tokens
interpolated between the measured n (a prefill of the cached context is the same forward shape without
a cache), and the JSON says so in "prefill_note". a_s and b_s are the least-squares line through the
medians, as atspeed fits it. `atspeed bench decode --project OUT.json` prices forward traces with it.
"""
import json
import re
import sys


def fit(points):
    m = len(points)
    sn = sum(n for n, _ in points)
    st = sum(t for _, t in points)
    snn = sum(n * n for n, _ in points)
    snt = sum(n * t for n, t in points)
    b = (m * snt - sn * st) / max(1e-12, m * snn - sn * sn) if m > 1 else 0.0
    return (st - b * sn) / max(1, m), b


def interpolate(points, x):
    for (n0, t0), (n1, t1) in zip(points, points[1:]):
        if n0 <= x <= n1:
            return t0 + (t1 - t0) * (x - n0) / (n1 - n0)
    return points[-1][1] if x > points[-1][0] else points[0][1]


def main(src, out):
    text = open(src).read()
    head = re.search(r"atspeed bench forward on (\S+), context (\d+), vocabulary (\d+)", text)
    if not head:
        sys.exit(f"{src}: no 'atspeed bench forward on ..., context N, vocabulary V' table")
    device, context, vocab = head.group(1), int(head.group(2)), int(head.group(3))
    lines = text[head.end():].splitlines()
    header = next(l for l in lines if l.startswith("| model"))
    ns = [int(c.strip()[2:]) for c in header.strip("|").split("|")[2:]]
    models = []
    for l in lines[lines.index(header) + 2:]:
        if not l.startswith("|"):
            break
        cells = [c.strip() for c in l.strip("|").split("|")]
        name, dtype = re.match(r"(\S+) \((\S+)\)", cells[0]).groups()
        points = [(n, float(ms) / 1e3) for n, ms in zip(ns, cells[2:])]
        # The n = 400 column of the H200 run holds the tree scorer's host jump (README "GPU"): not a
        # forward cost; left out of the fit and the curve when it is more than twice the n = 200 time.
        kept = [(n, t) for n, t in points if not (n > 200 and t > 2 * interpolate(points, 200))]
        a, b = fit(kept)
        models.append({"model": name, "dtype": dtype, "parameters": int(float(cells[1]) * 1e6),
                       "cost": {"prefill_s": interpolate(kept, context), "prompt_tokens": context, "a_s": a, "b_s": b,
                                "points": [{"n": n, "median_s": t, "q1_s": t, "q3_s": t} for n, t in kept]}})
    json.dump({"benchmark": "forward", "device": device, "context": context, "vocab": vocab, "source": src,
               "prefill_note": f"prefill_s = the forward time of {context} new tokens, interpolated (not measured)",
               "models": models}, open(out, "w"), indent=2)
    print(f"wrote {out}: " + ", ".join(f"{m['model']} a={m['cost']['a_s']*1e3:.2f} ms b={m['cost']['b_s']*1e6:.2f} us/token"
                                       for m in models))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
