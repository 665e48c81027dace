"""RLHF throughput: PPO rollout tokens/s and update seconds per step; DPO pairs/s. One run's models.

    python benchmarks/rlhf_throughput.py --run-dir runs/tiny [--steps 4] [--prompts 32]
                                         [--max-completion-tokens 48] [--ppo-batch-size 4] [--dpo-steps 10]
                                         [--threads 2] [--device auto] [--out rlhf_bench.json]

Needs a run with sft, preferences and reward done (models/sft, models/reward,
datasets/label_items.jsonl, datasets/preferences.jsonl). Settings not given on the command
line are the run's config (config.yaml; the tiny preset when there is none).

PPO: the stage's own step (lmforge/train/ppo.py: ppo_step) on `--prompts` prompts per
step: rollout through the shared generation engine, reward-model scores, the no-grad
policy / value / reference passes and GAE, then `ppo.iterations` epochs of updates. The
first step is a warm-up and is not timed. Reported: rollout tokens/s (answer tokens
sampled per second of rollout), rollout, scoring and update seconds per step, seconds
per step, answer length.

DPO: the dpo stage's loss and batches (lmforge/train/dpo.py, lmforge/train/pairs.py) on
the run's preference pairs, reference log-probs computed once first (timed apart), then
`--dpo-steps` optimizer steps of dpo.batch_size pairs x dpo.grad_accum through the shared
Trainer (the first not timed). Reported: pairs/s of training, and of the reference pass.

A benchmark, never a test.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.config import load_config  # noqa: E402
from lmforge.checkpoints import load_model  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402
from lmforge.tokenizer import Tokenizer  # noqa: E402
from lmforge.train.dpo import add_reference_logprobs, collate_with_reference, make_loss_fn  # noqa: E402
from lmforge.device import pick_device  # noqa: E402
from lmforge.train.loop import Trainer  # noqa: E402
from lmforge.train.pairs import load_pair_rows  # noqa: E402
from lmforge.train.ppo import build_policy_and_value, load_prompts, make_trainer, ppo_step  # noqa: E402


def run_config(run: RunDir):
    return run.load_config() if run.config_path.exists() else load_config("tiny")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_ppo(run: RunDir, cfg, args, device: torch.device) -> dict:
    p = cfg.ppo
    p.prompts_per_step = args.prompts
    p.max_completion_tokens = args.max_completion_tokens
    if args.ppo_batch_size:
        p.batch_size = args.ppo_batch_size
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    model, reference, reward_model = build_policy_and_value(run, p, device)
    prompts, _ = load_prompts(run.path("datasets", "label_items.jsonl"), tokenizer,
                              model.policy.cfg.seq_len - p.max_completion_tokens)
    if len(prompts) < args.prompts:
        sys.exit(f"only {len(prompts)} usable prompts in {run.path('datasets', 'label_items.jsonl')}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(model, p, Path(tmp), Path(tmp) / "log.jsonl", cfg.run.seed, device)
        for step in range(args.steps + 1):
            batch = prompts[(step * args.prompts) % len(prompts):][:args.prompts]
            batch += prompts[:args.prompts - len(batch)]
            sync(device)
            started = time.perf_counter()
            row = ppo_step(trainer, reference, reward_model, tokenizer, batch, p, seed=1000 + step)
            sync(device)
            row["wall"] = time.perf_counter() - started
            row["tokens"] = row["response_length"] * len(batch)
            rows.append(row)
    timed = rows[1:]
    rollout = sum(r["rollout_seconds"] for r in timed)
    mean = lambda key: statistics.mean(r[key] for r in timed)  # noqa: E731
    return {"rollout_tokens_per_second": round(sum(r["tokens"] for r in timed) / rollout, 1),
            "rollout_seconds_per_step": round(mean("rollout_seconds"), 3),
            "score_and_gae_seconds_per_step": round(mean("wall") - mean("rollout_seconds") - mean("update_seconds"), 3),
            "update_seconds_per_step": round(mean("update_seconds"), 3),
            "seconds_per_step": round(mean("wall"), 3),
            "response_length_mean": round(mean("response_length"), 1),
            "prompts_per_step": args.prompts, "batch_size": p.batch_size, "iterations": p.iterations,
            "max_completion_tokens": p.max_completion_tokens}


def bench_dpo(run: RunDir, cfg, args, device: torch.device) -> dict:
    d = cfg.dpo
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    train_rows = load_pair_rows(run.path("datasets", "preferences.jsonl"), tokenizer, d.seq_len,
                                d.val_fraction, d.test_fraction, cfg.run.seed).train
    per_step = d.batch_size * d.grad_accum
    train_rows = (train_rows * (1 + (args.dpo_steps + 1) * per_step // len(train_rows)))[:(args.dpo_steps + 1) * per_step]
    reference = load_model(run.model_dir("sft"), device=device).eval().requires_grad_(False)
    sync(device)
    started = time.perf_counter()
    train_rows = add_reference_logprobs(reference, train_rows, d.batch_size, tokenizer.pad_id, device)
    sync(device)
    reference_seconds = time.perf_counter() - started
    step_seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(load_model(run.model_dir("sft")), d, out_dir=Path(tmp), log_path=Path(tmp) / "log.jsonl",
                          seed=cfg.run.seed, device=device, stage="dpo")
        loss_fn = make_loss_fn(d, Counter())
        for step in range(args.dpo_steps + 1):
            rows = train_rows[step * per_step:(step + 1) * per_step]
            batches = [collate_with_reference(rows[i:i + d.batch_size], tokenizer.pad_id, device)
                       for i in range(0, len(rows), d.batch_size)]
            sync(device)
            started = time.perf_counter()
            trainer.train_step(batches, loss_fn)
            sync(device)
            step_seconds.append(time.perf_counter() - started)
    timed = step_seconds[1:]
    return {"pairs_per_second": round(per_step * len(timed) / sum(timed), 1),
            "seconds_per_step": round(statistics.mean(timed), 3),
            "reference_pairs_per_second": round(len(train_rows) / reference_seconds, 1),
            "pairs_per_step": per_step, "loss_type": d.loss_type, "seq_len": d.seq_len}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--steps", type=int, default=4, help="timed PPO steps (after one warm-up step)")
    parser.add_argument("--prompts", type=int, default=32, help="PPO prompts (rollouts) per step")
    parser.add_argument("--max-completion-tokens", type=int, default=48)
    parser.add_argument("--ppo-batch-size", type=int, default=0, help="PPO micro-batch; 0 = the run's config")
    parser.add_argument("--dpo-steps", type=int, default=10, help="timed DPO steps (after one warm-up step)")
    parser.add_argument("--skip-dpo", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = RunDir(args.run_dir)
    device = pick_device(args.device)
    result = {"run_dir": str(run.root), "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "load_average_before": os.getloadavg()}
    result["ppo"] = bench_ppo(run, run_config(run), args, device)
    print("ppo:", json.dumps(result["ppo"]), flush=True)
    if not args.skip_dpo:
        result["dpo"] = bench_dpo(run, run_config(run), args, device)
        print("dpo:", json.dumps(result["dpo"]), flush=True)
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
