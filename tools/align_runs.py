#!/usr/bin/env python3
"""Training summary of draft runs (launch/align.sh, results.sh): epochs run, the best epoch and its
validation loss (from each run's metrics.jsonl eval records), and the wall-clock minutes of training
from the training's own logs (the stdout of train-draft, given with --logs; see log_times for runs
resumed across logs), so the README can state compute hours.

    python3 tools/align_runs.py runs/align/beauty-h128-*-e20 --logs runs/logs/*.log [--save docs/results]

--save DIR also writes DIR/<run name>/train_summary.json, so the numbers outlive runs/.
Directories that already hold a train_summary.json (e.g. docs/results/<run>) are read as they are.
"""
import json
import os
import re
import sys


def log_times(logs):
    """run name -> (minutes of training, whether its last "done:" line says the run stopped early).
    A run resumed after SIGTERM (possibly in another session, another log) has several segments, each
    from a "draft training: ... out <run>" line to the next "done: ... (<run>/best.h5" or "stopped by
    signal ...; <run>/last.h5" line of the same log; the minutes are their sum, so the gap between
    sessions is not counted."""
    stamp = re.compile(r"^\[(\d+):(\d+):(\d+)\.\d+\] \[\w+\] (draft training: .* out (\S+)"
                       r"|done: .*\((\S+)/best\.h5|stopped by signal .*; (\S+)/last\.h5)")
    minutes, early = {}, {}  # early: only runs whose "done:" line was seen
    for path in logs:
        start = {}  # run -> start second of its open segment in this log
        with open(path, errors="replace") as f:
            for line in f:
                m = stamp.match(line)
                if not m:
                    continue
                t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
                if m.group(5):
                    start[os.path.basename(m.group(5))] = t
                    continue
                run = os.path.basename(m.group(6) or m.group(7))
                if run not in start:
                    continue
                # Log times have no date: a segment that crosses midnight wraps once.
                minutes[run] = minutes.get(run, 0.0) + ((t - start.pop(run)) % 86400) / 60
                if m.group(6):
                    early[run] = "(early stopped)" in line
    return {r: (minutes[r], early[r]) for r in early}


def summarise(run, times):
    saved = os.path.join(run, "train_summary.json")
    if os.path.exists(saved) and not os.path.exists(os.path.join(run, "metrics.jsonl")):
        with open(saved) as f:
            return json.load(f)
    evals, steps = [], 0
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if "valid_loss" in r:
                evals.append(r)
            elif "step" in r:
                steps = max(steps, r["step"])
    if not evals:
        raise SystemExit(f"align_runs: {run}/metrics.jsonl has no eval records")
    best = min(evals, key=lambda r: r["valid_loss"])
    name = os.path.basename(os.path.normpath(run))
    if name not in times:
        raise SystemExit(f"align_runs: no start and done lines for {name} in the --logs files")
    return {"run": name, "steps": steps, "epochs": evals[-1]["epoch"],
            "best_epoch": best["epoch"], "best_valid_loss": best["valid_loss"],
            "early_stopped": times[name][1], "train_minutes": round(times[name][0], 1)}


def main(argv):
    save, logs = None, []
    if "--save" in argv:
        i = argv.index("--save")
        save = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if "--logs" in argv:  # every argument after --logs up to the next option is a log file
        i = argv.index("--logs")
        j = next((k for k in range(i + 1, len(argv)) if argv[k].startswith("--")), len(argv))
        logs, argv = argv[i + 1:j], argv[:i] + argv[j:]
    times = log_times(logs)
    rows = []
    for r in argv:
        if os.path.exists(os.path.join(r, "metrics.jsonl")) and not os.path.exists(os.path.join(r, "done")):
            print(f"({r}: not finished, left out)", file=sys.stderr)
            continue
        rows.append(summarise(r, times))
    print("| run | epochs run | best epoch | best valid loss | train minutes |")
    print("|---|---|---|---|---|")
    for s in rows:
        print(f"| {s['run']} | {s['epochs']} | {s['best_epoch']} | {s['best_valid_loss']:.4f} | {s['train_minutes']:.1f} |")
        if save:
            os.makedirs(os.path.join(save, s["run"]), exist_ok=True)
            with open(os.path.join(save, s["run"], "train_summary.json"), "w") as f:
                json.dump(s, f, indent=1)
                f.write("\n")
    print(f"\n{sum(s['train_minutes'] for s in rows) / 60:.2f} core-hours of training in all (each run on 1 thread)"
          if rows else "no runs")


if __name__ == "__main__":
    main(sys.argv[1:])
