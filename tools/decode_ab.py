#!/usr/bin/env python3
"""A/B of decode latency (README "Decode hot path"): `atspeed bench decode` of two builds or settings
on the same checkpoints and users, alternated ROUNDS times (A, B, A, B, ...) so that a slow spell of
the machine hits both. Prints, per K, batch and method, the median over rounds of each side's median
request latency and B / A, with every round's ratio.

    python3 tools/decode_ab.py A_SPEC B_SPEC [ROUNDS] [--target T.h5] [--draft D.h5] [--field F] [--json OUT]

--field: the per-row value of bench decode's JSON to compare (default median_ms; e.g.
rest_ms_per_request, the host time outside the model forwards per request).

A spec is a binary, optionally prefixed by environment settings (as in tools/hotpath_ab.py), e.g. the
glibc allocator settings of `atspeed` against the same binary with them opted out:

    python3 tools/decode_ab.py "GLIBC_TUNABLES=glibc.malloc.check=0 build/bin/atspeed" build/bin/atspeed 12

Defaults: the quickstart pair runs/gpu-kit/{target,draft}/best.h5, 100 Beauty test users
(ATSPEED_DATA_DIR, default ../shared/data/amazon/beauty), K = 1, 5, 20, batch 1 and 8, target beam
search and strict, 2 threads.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

from hotpath_ab import split_spec


def option(args, name, default):
    if name in args:
        i = args.index(name)
        value = args[i + 1]
        del args[i:i + 2]
        return value
    return default


def run(spec, out, target, draft, field):
    binary, env = split_spec(spec)
    data_dir = os.environ.get("ATSPEED_DATA_DIR", "../shared/data/amazon/beauty")
    subprocess.run([binary, "bench", "decode", "data=beauty", f"data.dir={data_dir}", "run.threads=2",
                    f"run.out_dir={os.path.dirname(out)}", "--target", target, "--draft", draft, "--users", "100",
                    "--ks", "1", "5", "20", "--batch-sizes", "1", "8", "--methods", "target", "strict", "--plot", "none",
                    "--json", out], check=True, stdout=subprocess.DEVNULL, env=env)
    rows = json.load(open(out))["results"]
    return {(r["k"], r["batch_size"], r["method"]): r[field] for r in rows}


def main():
    args = sys.argv[1:]
    out_json = option(args, "--json", None)
    target = option(args, "--target", "runs/gpu-kit/target/best.h5")
    draft = option(args, "--draft", "runs/gpu-kit/draft/best.h5")
    field = option(args, "--field", "median_ms")
    if len(args) < 2:
        sys.exit(__doc__)
    specs = {"a": args[0], "b": args[1]}
    rounds = int(args[2]) if len(args) > 2 else 5
    runs = {"a": [], "b": []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(rounds):
            for side in ("a", "b"):
                runs[side].append(run(specs[side], os.path.join(d, side, f"{r}.json"), target, draft, field))
                print(f"round {r + 1}/{rounds} {side} done", file=sys.stderr)
    print(f"A: {specs['a']}\nB: {specs['b']}")
    print(f"{field} (median over {rounds} alternated runs):")
    print(f"{'K':>3} {'batch':>5} {'method':<14} {'A':>8} {'B':>8} {'B/A':>6}  per-round B/A")
    rows = []
    for key in sorted(runs["a"][0], key=lambda k: (k[0], k[1], k[2])):
        a = [x[key] for x in runs["a"]]
        b = [x[key] for x in runs["b"]]
        ma, mb = statistics.median(a), statistics.median(b)
        rows.append({"k": key[0], "batch_size": key[1], "method": key[2], "field": field, "a": ma, "b": mb, "a_runs": a,
                     "b_runs": b, "ratio": mb / ma})
        print(f"{key[0]:>3} {key[1]:>5} {key[2]:<14} {ma:>8.2f} {mb:>8.2f} {mb / ma:>6.2f}  "
              + " ".join(f"{y / x:.2f}" for x, y in zip(a, b)))
    if out_json:
        json.dump({"rounds": rounds, "a": specs["a"], "b": specs["b"], "target": target, "draft": draft, "rows": rows},
                  open(out_json, "w"), indent=2)
        print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
