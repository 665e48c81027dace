"""Why lmforge.engine.InferenceWeights keeps (in, out) weight copies for multi-row CPU inference:

    python benchmarks/cpu_matmul_layout.py [--threads 1] [--out 256] [--in 704]

Times x @ W.T the way F.linear does it (W stored (out, in), as nn.Linear keeps it) against
x @ Wt with Wt a contiguous (in, out) copy, for 1 to 32 rows, over 16 different matrices so
the weights come from memory as in a real forward rather than from a hot cache. Prints
microseconds per matmul for each. A benchmark, never a test.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def per_call(fn, matrices, repeats: int) -> float:
    for _ in range(20):
        fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats / len(matrices))
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=int, default=704, help="output features (rows of W)")
    parser.add_argument("--in", dest="inp", type=int, default=256, help="input features")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = [torch.randn(args.out, args.inp) for _ in range(16)]
    transposed = [w.t().contiguous() for w in weights]
    print(f"{args.out}x{args.inp} fp32, {args.threads} thread(s); microseconds per matmul")
    print(f"{'rows':>5} {'F.linear (out, in)':>20} {'x @ contiguous (in, out)':>26}")
    with torch.inference_mode():
        for rows in (1, 2, 4, 9, 16, 32):
            x = torch.randn(rows, args.inp)
            a = per_call(lambda: [F.linear(x, w) for w in weights], weights, args.repeats)
            b = per_call(lambda: [x @ w for w in transposed], weights, args.repeats)
            print(f"{rows:>5} {a:>20.1f} {b:>26.1f}")


if __name__ == "__main__":
    main()
