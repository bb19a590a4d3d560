#!/usr/bin/env python3
"""A/B of the per-forward fixed cost (README "Decode hot path"): `atspeed bench forward` of two
builds, alternated ROUNDS times (before, after, before, after, ...) so that a slow spell of the
machine hits both, each run the median of 31 round-robin repetitions at n = 1 and 5 new tokens.
Prints, per model and n, the median over rounds of each build's medians, their range, and
after / before.

    python3 tools/hotpath_ab.py BEFORE_BIN AFTER_BIN [ROUNDS] [--json OUT]

A build may be prefixed by environment settings, e.g. "ATSPEED_FUSED_CPU=0 build/bin/atspeed" (the
same binary with its fused CPU kernels off).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile

MODELS = ["target_small", "quickstart_target", "target_deep", "draft_small", "quickstart_draft", "draft_shallow"]
NS = [1, 5]


def split_spec(spec):
    """'KEY=VALUE ... BINARY' -> (BINARY, environment with the settings applied)."""
    words = spec.split()
    env = dict(os.environ)
    while words and "=" in words[0] and not words[0].startswith(("/", ".")):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    return " ".join(words), env


def run(spec, out):
    binary, env = split_spec(spec)
    subprocess.run([binary, "bench", "forward", "run.threads=2", f"run.out_dir={os.path.dirname(out)}", "--models", *MODELS,
                    "--ns", *map(str, NS), "--reps", "31", "--json", out], check=True, stdout=subprocess.DEVNULL, env=env)
    j = json.load(open(out))
    return {(m["model"], p["n"]): p["median_s"] * 1e3 for m in j["models"] for p in m["cost"]["points"]}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--json")]
    out_json = next((sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--json"), None)
    if out_json:
        args.remove(out_json)
    if len(args) < 2:
        sys.exit(__doc__)
    before, after = args[0], args[1]
    rounds = int(args[2]) if len(args) > 2 else 5
    runs = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(rounds):
            for name, b in (("before", before), ("after", after)):
                runs[name].append(run(b, os.path.join(d, f"{name}{r}.json")))
    rows = []
    print(f"per-forward time (ms, median over {rounds} alternated runs of 31 repetitions each; [min-max]):")
    print(f"{'model':<20} {'n':>3} {'before':>22} {'after':>22} {'after/before':>13}")
    for m in MODELS:
        for n in NS:
            b = [x[(m, n)] for x in runs["before"]]
            a = [x[(m, n)] for x in runs["after"]]
            mb, ma = statistics.median(b), statistics.median(a)
            rows.append({"model": m, "n": n, "before_ms": mb, "after_ms": ma, "before_runs": b, "after_runs": a,
                         "ratio": ma / mb})
            print(f"{m:<20} {n:>3} {mb:>8.3f} [{min(b):.3f}-{max(b):.3f}] {ma:>8.3f} [{min(a):.3f}-{max(a):.3f}] {ma / mb:>12.2f}x")
    if out_json:
        json.dump({"rounds": rounds, "before": before, "after": after, "rows": rows}, open(out_json, "w"), indent=2)
        print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
