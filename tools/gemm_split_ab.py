#!/usr/bin/env python3
"""Fused gate/up projection against two separate ones (README "Decode hot path"): times
linear(x, W[2I, H]) against linear(x, W[:I]), linear(x, W[I:]) with the torch wheel's own MKL, at
the preset shapes (hidden H, intermediate I) and rows M (= batch x new tokens), median of 7 blocks.
Run it with the cached venv's python:

    ~/.cache/atspeed/torch-2.15.0/bin/python tools/gemm_split_ab.py [THREADS]
"""
import sys
import time

import torch

SHAPES = [(128, 344), (256, 688), (768, 3072), (2048, 5632)]  # quickstart_target, target_small, 68M, 1B
ROWS = [1, 5, 20, 40]


def median_us(f, reps):
    for _ in range(max(3, reps // 10)):
        f()
    blocks = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(reps):
            f()
        blocks.append((time.perf_counter() - start) / reps * 1e6)
    return sorted(blocks)[3]


def main():
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
    linear = torch.nn.functional.linear
    print(f"{'H':>5} {'I':>5} {'M':>4} {'fused us':>10} {'split us':>10} {'split/fused':>12}")
    for h, i in SHAPES:
        w = torch.randn(2 * i, h)
        reps = max(10, int(2e8 / (w.numel() * 40)))
        for m in ROWS:
            x = torch.randn(m, h)
            fused = median_us(lambda: linear(x, w), reps)
            split = median_us(lambda: (linear(x, w[:i]), linear(x, w[i:])), reps)
            print(f"{h:>5} {i:>5} {m:>4} {fused:>10.1f} {split:>10.1f} {split / fused:>12.2f}")


if __name__ == "__main__":
    main()
