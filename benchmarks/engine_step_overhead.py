"""Per-step cost of the engine's explicit fast path, and decode ms/step of a trained model.

    python benchmarks/engine_step_overhead.py --model-dir runs/micro/models/pretrain

Prints how long entering and leaving `engine.fast_path` takes (the engine does it once per
decoding step) and the best-of-N ms per decoding step at batch 1 and batch 32 on one thread.
Run it from two checkouts to compare them (docs/LOG.md, issue 18).
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.checkpoints import load_model  # noqa: E402
from lmforge.engine import fast_path, generate  # noqa: E402


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model_dir).eval()

    def enter_leave(n=5000):
        for _ in range(n):
            with fast_path(model):
                pass
    print(f"fast_path enter + leave: {best_of(enter_leave, 5) / 5000 * 1e6:.1f} us")
    one = best_of(lambda: generate(model, [[1, 5, 9, 13]], max_new_tokens=120), args.repeats)
    many = best_of(lambda: generate(model, [[1, 5 + i, 9, 13] for i in range(32)], max_new_tokens=60), args.repeats)
    print(f"batch 1: {one / 120 * 1e3:.3f} ms/step, batch 32: {many / 60 * 1e3:.3f} ms/step")


if __name__ == "__main__":
    main()
