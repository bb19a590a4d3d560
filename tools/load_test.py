#!/usr/bin/env python3
"""Bounded load test of `atspeed serve` (python3 standard library only).

For each mode and each concurrency level it sends a fixed number of POST /v1/recommend requests
from that many client threads (one keep-alive connection each), with real user histories, and
reports throughput (requests/s over the level's wall time), client-side latency p50/p99, errors,
and the server's mean batch size and accepted levels per round. Prints a table and writes JSON.

Histories: the test users of an LC-Rec dataset directory (train + valid items, 1-based ids as in
sequential_*.txt, the last --history-len kept), in file order, cycled.

  python3 tools/load_test.py --url http://127.0.0.1:8080 --data-dir ../shared/data/amazon/beauty \
      --modes target strict relaxed --concurrency 1 4 16 --requests 200 --k 10 --json load.json
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse


def read_split(path):
    users = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            users.append([int(x) for x in parts[1:]])
    return users


def test_histories(data_dir, history_len):
    train = read_split(os.path.join(data_dir, "sequential_train.txt"))
    valid = read_split(os.path.join(data_dir, "sequential_valid.txt"))
    test = read_split(os.path.join(data_dir, "sequential_test.txt"))
    out = []
    for t, v, te in zip(train, valid, test):
        h = (t + v)[-history_len:]
        if te and h:
            out.append(h)
    return out


def percentile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    i = min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))
    return s[i]


def run_level(host, port, mode, k, concurrency, n_requests, histories, timeout):
    lock = threading.Lock()
    next_index = [0]
    latencies, batch_sizes, accepted, rounds, errors = [], [], [], [], {}

    def worker():
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        while True:
            with lock:
                i = next_index[0]
                if i >= n_requests:
                    break
                next_index[0] += 1
            body = json.dumps({"history": histories[i % len(histories)], "k": k, "mode": mode, "seed": i})
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/recommend", body, {"Content-Type": "application/json"})
                res = conn.getresponse()
                data = res.read()
                status = res.status
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
                status, data = type(e).__name__, b""
            dt = time.perf_counter() - t0
            with lock:
                if status == 200:
                    stats = json.loads(data)["stats"]
                    latencies.append(dt)
                    batch_sizes.append(stats["batch_size"])
                    rounds.append(stats["rounds"])
                    accepted.append(stats["accepted_levels"])
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ok = len(latencies)
    return {
        "mode": mode,
        "k": k,
        "concurrency": concurrency,
        "requests": n_requests,
        "ok": ok,
        "errors": errors,
        "wall_s": wall,
        "throughput_rps": ok / wall if wall > 0 else 0.0,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "mean_ms": statistics.fmean(latencies) * 1e3 if latencies else float("nan"),
        "mean_batch_size": statistics.fmean(batch_sizes) if batch_sizes else float("nan"),
        "accepted_levels_per_round": (sum(accepted) / sum(rounds)) if sum(rounds) else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--data-dir", required=True, help="LC-Rec dataset directory (sequential_*.txt)")
    ap.add_argument("--history-len", type=int, default=20)
    ap.add_argument("--modes", nargs="+", default=["target", "strict", "relaxed"])
    ap.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    ap.add_argument("--requests", type=int, default=200, help="requests per (mode, concurrency) level")
    ap.add_argument("--warmup", type=int, default=10, help="requests per mode before measuring")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--json", default="", help="write the results here")
    a = ap.parse_args()

    u = urllib.parse.urlparse(a.url)
    host, port = u.hostname, u.port or 80
    histories = test_histories(a.data_dir, a.history_len)
    if not histories:
        sys.exit(f"no test users with a history in {a.data_dir}")
    print(f"{len(histories)} test-user histories from {a.data_dir}; {a.requests} requests per level, k = {a.k}", flush=True)

    results = []
    for mode in a.modes:
        run_level(host, port, mode, a.k, 1, a.warmup, histories, a.timeout)
        for c in a.concurrency:
            r = run_level(host, port, mode, a.k, c, a.requests, histories, a.timeout)
            results.append(r)
            acc = "-" if r["accepted_levels_per_round"] is None else f"{r['accepted_levels_per_round']:.2f}"
            print(f"  {mode:>8} c={c:<3} {r['throughput_rps']:8.1f} req/s  p50 {r['p50_ms']:8.2f} ms  "
                  f"p99 {r['p99_ms']:8.2f} ms  batch {r['mean_batch_size']:5.2f}  accepted/round {acc}  "
                  f"errors {sum(r['errors'].values())}", flush=True)

    print()
    print("| mode | concurrency | requests | req/s | p50 ms | p99 ms | mean batch | accepted levels / round | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        acc = "-" if r["accepted_levels_per_round"] is None else f"{r['accepted_levels_per_round']:.2f}"
        print(f"| {r['mode']} | {r['concurrency']} | {r['requests']} | {r['throughput_rps']:.1f} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['mean_batch_size']:.2f} | {acc} | {sum(r['errors'].values())} |")
    if a.json:
        d = os.path.dirname(a.json)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"url": a.url, "data_dir": a.data_dir, "k": a.k, "results": results}, f, indent=2)
        print(f"wrote {a.json}")
    if any(r["errors"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
