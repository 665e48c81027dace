"""Where a greedy speculative run's time goes, measured in place (not op by op in isolation):

    python benchmarks/speculative_breakdown.py --run-dir runs/tiny --draft-run-dir runs/draft [--threads 1]

Runs the same speculative decoding as benchmarks/decode.py (8 guesses, confidence stop 0.4,
its fact prompts) with the draft's whole vocabulary and with its frequent tokens
(--draft-vocab-coverage), and for each prints:
  * the share of the wall time spent in draft steps, in target verifies and elsewhere;
  * a draft step's median time: its forward (the first step of a round, which follows a
    verify and catches the draft up on one or two tokens, apart from the later ones), its
    LM head, and the mean of the rest (softmax, max, host read, bookkeeping);
  * the median verify time for each number of tokens verified.
Timers wrap the calls, so the figures carry a few microseconds of timer overhead each. The
cache behaviour is the point: a step timed alone keeps its weights in cache, here it
competes with the target's. A benchmark, never a test.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lmforge.speculative as spec  # noqa: E402
from lmforge.checkpoints import load_for_sampling  # noqa: E402
from lmforge.engine import SamplingParams  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode import prompts_for  # noqa: E402


def measure(target, draft, prompts, tokens: int, vocab, repeats: int) -> dict:
    """The fastest of `repeats` runs, with timers around the target's forwards, the draft's
    forwards, its LM head and the whole of each round's drafting."""
    best = None
    for _ in range(repeats):
        times: dict = defaultdict(list)
        verify: dict = defaultdict(list)
        state = {"first": True}   # the next draft forward is a round's first (it follows a verify)

        def timer(fn, record):
            def timed(*args, **kwargs):
                t0 = time.perf_counter()
                out = fn(*args, **kwargs)
                record(args, time.perf_counter() - t0)
                return out
            return timed

        def on_verify(args, seconds):
            verify[args[0].shape[1]].append(seconds)
            state["first"] = True

        def on_draft(args, seconds):
            times[("first" if state["first"] else "later") + " forward"].append(seconds)
            state["first"] = False
        real_guesses, real_logits = spec._greedy_guesses, spec._draft_logits
        spec._greedy_guesses = timer(real_guesses, lambda args, s: times["drafting"].append(s))
        spec._draft_logits = timer(real_logits, lambda args, s: times["head"].append(s))
        target.forward, draft.forward = timer(target.forward, on_verify), timer(draft.forward, on_draft)
        try:
            start = time.perf_counter()
            for p in prompts:
                spec.speculative_generate(target, p, SamplingParams(max_tokens=tokens), draft=draft,
                                          num_draft_tokens=8, draft_vocab=vocab)
            wall = time.perf_counter() - start
        finally:
            spec._greedy_guesses, spec._draft_logits = real_guesses, real_logits
            del target.forward, draft.forward
        if best is None or wall < best[0]:
            best = (wall, times, verify)
    wall, times, verify = best
    steps = len(times["first forward"]) + len(times["later forward"])
    median_us = lambda values: round(statistics.median(values) * 1e6)   # noqa: E731
    # confidence and bookkeeping: what drafting took beyond the forwards and the heads
    rest = sum(times["drafting"]) - sum(times["first forward"]) - sum(times["later forward"]) - sum(times["head"])
    return {"wall_s": round(wall, 3), "draft_share": round(sum(times["drafting"]) / wall, 3),
            "verify_share": round(sum(sum(v) for v in verify.values()) / wall, 3),
            "draft_step_us": {"first forward": median_us(times["first forward"]),
                              "later forward": median_us(times["later forward"]),
                              "head": median_us(times["head"]), "confidence and rest (mean)": round(rest / steps * 1e6)},
            # length 1 is only the prefill of one-token prompts; the rest are verifies of 1 + guesses
            "verify_us_by_tokens": {n: (len(v), median_us(v)) for n, v in sorted(verify.items())}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--draft-run-dir", required=True)
    parser.add_argument("--draft-vocab-coverage", type=float, default=0.999)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--spec-prompts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="the fastest run of each is reported")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = RunDir(args.run_dir)
    tokenizer, target, _ = load_for_sampling(run, None)
    target.eval()
    draft, _, name = spec.load_draft(args.draft_run_dir, run, coverage=0)
    prompts = prompts_for(run, tokenizer, args.spec_prompts)
    print(f"target {run.root}, draft {name}, {args.threads} thread(s)")
    for label, vocab in (("whole vocabulary", None),
                         (f"coverage {args.draft_vocab_coverage}",
                          spec.run_draft_vocabulary(RunDir(args.draft_run_dir), draft, args.draft_vocab_coverage))):
        size = len(vocab) if vocab is not None else draft.cfg.vocab_size
        result = measure(target, draft, prompts, args.tokens, vocab, args.repeats)
        print(f"\n{label} ({size} tokens): {result['wall_s']} s, draft steps {result['draft_share']:.0%}, "
              f"verifies {result['verify_share']:.0%}")
        print("  draft step, median us: " + ", ".join(f"{k} {v}" for k, v in result["draft_step_us"].items()))
        print("  verify, median us by tokens (count): " +
              ", ".join(f"{n}: {us} ({count})" for n, (count, us) in result["verify_us_by_tokens"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
