"""Know the time before spending it: before `lmforge run` starts, time a few real steps of every
training stage it is about to run, on this machine, and turn them into an estimate per stage
and for the whole run.

    from lmforge.estimate import estimate_run, format_estimate
    plan = estimate_run(cfg, run, stages)      # stage -> {"before", "train", "after", "per_step", ...}
    print(format_estimate(plan, cfg))

What is measured (random weights and tokens of the run's shapes: the arithmetic does not depend
on what the numbers are), each through the code the stage itself runs:
  * one optimizer step of each training stage, through lmforge.train.loop.Trainer with that
    stage's settings (batch, sequence length, optimizer, precision): pretraining's token windows,
    SFT's packed rows (their block-diagonal attention is slower than plain causal), the reward
    model's and DPO's pairs, and GRPO's and PPO's updates on completions;
  * batched decoding through lmforge.generate, at one row and at 64 rows, for everything that
    generates: RL rollouts, the evaluations, the preference candidates.
What is modelled: how many steps (the budget: max_steps, never minutes), how many answers each
evaluation generates and how long they are. Answers to one-fact questions are taken as
ANSWER_TOKENS long and worked solutions as their whole budget, so sampling estimates lean high.
The data stages (collect, clean, tokenizer, ...) run no model; their figures scale reference
times with the world's size and are marked as not measured.
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .config import Config
from .device import pick_device

ANSWER_TOKENS = 16          # a one-fact answer and its <|end|>; rambling ones run longer
PROMPT_TOKENS = 24          # a chat question rendered with its role tokens
TIMED_STEPS = 2             # after one warm-up step
# seconds per stage at the tiny preset's world (360 entities) on the reference machine
DATA_STAGE_SECONDS = {"collect": 14.0, "clean": 16.0, "tokenizer": 3.0, "reasoning": 2.0, "index": 2.0, "synth": 12.0,
                      "report": 12.0}


def _vocab_size(cfg: Config, run) -> int:
    if cfg.model.vocab_size:
        return cfg.model.vocab_size
    meta = run.tokens_dir / "meta.json"
    if meta.exists():
        import json
        return int(json.loads(meta.read_text())["vocab_size"])
    return cfg.tokenizer.vocab_size     # an upper bound: trained vocabularies come out smaller


class Probe:
    """Measures step and decode costs on random weights of the run's model shape."""

    def __init__(self, cfg: Config, run):
        from .model import GPT
        self.cfg = cfg
        self.device = pick_device(cfg.run.device)
        self.model_cfg = dataclasses.replace(cfg.model, vocab_size=_vocab_size(cfg, run))
        torch.manual_seed(0)
        self.make_model = lambda: GPT(self.model_cfg)
        self.vocab = self.model_cfg.vocab_size
        self.rng = np.random.default_rng(0)
        self.decode_cache: dict[int, float] = {}
        self.measured_seconds = 0.0

    def _random_ids(self, rows: int, length: int) -> np.ndarray:
        return self.rng.integers(6, self.vocab, size=(rows, length))   # past the special tokens

    def train_step(self, tcfg, model, batch_fn, loss_fn) -> float:
        """Seconds per optimizer step of the real loop with this stage's settings."""
        from .train.loop import Trainer
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(model, tcfg, out_dir=Path(tmp), log_path=Path(tmp) / "log.jsonl", device=self.device,
                              stage="estimate")
            times = []
            for step in range(TIMED_STEPS + 1):
                batches = [batch_fn(step, micro) for micro in range(tcfg.grad_accum)]
                start = time.perf_counter()
                trainer.train_step(batches, loss_fn)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                times.append(time.perf_counter() - start)
        self.measured_seconds += time.perf_counter() - started
        return float(np.mean(times[1:]))

    def pretrain_step(self, tcfg) -> float:
        from .train.pretrain import next_token_loss_sum

        def batch_fn(step, micro):
            data = torch.from_numpy(self._random_ids(tcfg.batch_size, tcfg.seq_len + 1)).to(self.device)
            return {"x": data[:, :-1], "y": data[:, 1:], "n_items": data[:, 1:].numel()}
        return self.train_step(tcfg, self.make_model(), batch_fn, next_token_loss_sum)

    def masked_step(self, tcfg, rows: int, length: int, segments: int = 1, model=None) -> float:
        """A masked next-token step on rows x length tokens (SFT's packed rows with `segments`
        conversations each; also what an RL update costs per completion batch)."""
        from .train.sft import masked_loss_sum
        seg = np.repeat(np.arange(segments), math.ceil(length / segments))[:length]

        def batch_fn(step, micro):
            data = torch.from_numpy(self._random_ids(rows, length + 1)).to(self.device)
            batch = {"x": data[:, :-1], "y": data[:, 1:], "loss_mask": torch.ones_like(data[:, 1:]),
                     "n_items": rows * length}
            if segments > 1:
                batch["segment_ids"] = torch.from_numpy(np.tile(seg, (rows, 1))).to(self.device)
            return batch
        return self.train_step(tcfg, model or self.make_model(), batch_fn, masked_loss_sum)

    def pair_step(self, tcfg, stage: str, pairs: int, length: int) -> float:
        """One reward-model or DPO step on `pairs` pairs of `length` tokens."""
        from .train.pairs import collate_pairs
        if stage == "reward":
            from .train.reward import RewardModel, make_loss_fn
            model = RewardModel(self.make_model(), likelihood=self.cfg.reward.likelihood)
            loss_fn, collate = make_loss_fn(self.cfg.reward.margin, self.cfg.reward.center_coef), collate_pairs
        else:
            from collections import Counter

            from .train.dpo import collate_with_reference, make_loss_fn
            model, loss_fn, collate = self.make_model(), make_loss_fn(self.cfg.dpo, Counter()), collate_with_reference

        def batch_fn(step, micro):
            rows = []
            for _ in range(pairs):
                ids = self._random_ids(2, length)
                mask = np.r_[np.zeros(length - ANSWER_TOKENS), np.ones(ANSWER_TOKENS)].astype(np.int64)
                rows.append((ids[0], mask, ids[1], mask, -20.0, -21.0))
            return collate(rows, 5, self.device)
        return self.train_step(tcfg, model, batch_fn, loss_fn)

    def decode_step(self, rows: int) -> float:
        """Seconds per decoding step of `rows` sequences (prefill included, spread over the
        steps), linear between the measured 1 and 64 rows and beyond."""
        if not self.decode_cache:
            from .generate import generate
            model = self.make_model().to(self.device).eval()
            started = time.perf_counter()
            for batch in (1, 64):
                prompts = self._random_ids(batch, PROMPT_TOKENS).tolist()
                generate(model, prompts, max_new_tokens=4, temperature=1.0, seed=0)      # warm-up
                start = time.perf_counter()
                generate(model, prompts, max_new_tokens=32, temperature=1.0, seed=0)
                self.decode_cache[batch] = (time.perf_counter() - start) / 32
            self.measured_seconds += time.perf_counter() - started
        one, many = self.decode_cache[1], self.decode_cache[64]
        return one + (many - one) * (rows - 1) / 63

    def generation(self, sequences: int, new_tokens: int, batch: int) -> float:
        """Seconds to generate `sequences` answers of new_tokens each, `batch` at a time."""
        if sequences <= 0:
            return 0.0
        batch = max(1, min(batch, sequences))
        return math.ceil(sequences / batch) * new_tokens * self.decode_step(batch)


def _stage_estimate(name: str, cfg: Config, probe: Probe) -> dict:
    """{"before", "train", "after", "per_step", "steps"} for one model stage."""
    seq = cfg.model.seq_len
    if name == "pretrain":
        t = cfg.pretrain
        per_step = probe.pretrain_step(t)
        facts = probe.generation(cfg.report.fact_eval_limit, 8, 64)
        return {"before": 0.0, "per_step": per_step, "steps": t.max_steps, "after": facts}
    if name == "sft":
        t = cfg.sft
        per_step = probe.masked_step(t, t.batch_size, t.seq_len, segments=max(1, t.seq_len // 64))
        evaluation = probe.generation(2 * t.eval_limit, ANSWER_TOKENS, 64)
        return {"before": 0.0, "per_step": per_step, "steps": t.max_steps, "after": evaluation}
    if name == "preferences":
        lab = cfg.label
        sampling = probe.generation(lab.prompts * lab.candidates, min(lab.max_new_tokens, 2 * ANSWER_TOKENS),
                                    lab.prompts * lab.candidates)
        return {"before": 0.0, "per_step": 0.0, "steps": 0, "after": sampling}
    pair_len = min(seq, PROMPT_TOKENS + ANSWER_TOKENS)
    alignment = 4 * probe.generation(cfg.label.eval_prompts, min(cfg.label.max_new_tokens, 2 * ANSWER_TOKENS),
                                     cfg.label.eval_prompts)
    if name == "reward":
        t = cfg.reward
        return {"before": 0.0, "per_step": probe.pair_step(t, "reward", t.batch_size, pair_len),
                "steps": t.max_steps, "after": 0.0}
    if name == "dpo":
        t = cfg.dpo
        return {"before": 0.0, "per_step": probe.pair_step(t, "dpo", t.batch_size, pair_len), "steps": t.max_steps,
                "after": alignment}
    if name == "ppo":
        t = cfg.ppo
        length = PROMPT_TOKENS + t.max_completion_tokens
        rollout = probe.generation(t.prompts_per_step, t.max_completion_tokens, t.prompts_per_step)
        # policy and value are each updated on every micro-batch, for `iterations` epochs
        updates = t.iterations * math.ceil(t.prompts_per_step / t.batch_size)
        update = updates * 2 * probe.masked_step(t, t.batch_size, length)
        normalizer = probe.generation(t.reward_norm_samples, t.max_completion_tokens, t.reward_norm_samples)
        return {"before": normalizer, "per_step": rollout + update, "steps": t.max_steps, "after": alignment}
    if name == "grpo":
        g = cfg.grpo
        rows = g.prompts_per_step * g.group_size
        rollout = probe.generation(rows, g.max_completion_tokens, rows)
        update = g.iterations * math.ceil(rows / g.batch_size) * probe.masked_step(
            g, min(g.batch_size, rows), PROMPT_TOKENS * 2 + g.max_completion_tokens)
        levels = cfg.reasoning.max_difficulty
        evaluation = (probe.generation(g.eval_per_difficulty * levels, g.max_completion_tokens, 128)
                      + probe.generation((g.eval_k_per_difficulty or g.eval_per_difficulty) * levels * g.eval_k,
                                         g.max_completion_tokens, 128))
        return {"before": evaluation, "per_step": rollout + update, "steps": g.max_steps, "after": evaluation}
    raise KeyError(name)


MODEL_STAGES = ("pretrain", "sft", "preferences", "reward", "dpo", "ppo", "grpo")


def estimate_run(cfg: Config, run, stage_names: list[str]) -> dict[str, dict]:
    """Seconds per stage for the stages about to run: {"before", "train", "after", "per_step",
    "steps", "measured"} (measured False for the data stages)."""
    probe = Probe(cfg, run)
    scale = cfg.world.n_entities / 360
    plan = {}
    for name in stage_names:
        if name in MODEL_STAGES:
            part = _stage_estimate(name, cfg, probe)
            part["train"] = part["per_step"] * part["steps"]
            part["measured"] = True
        else:
            part = {"before": 0.0, "train": 0.0, "after": DATA_STAGE_SECONDS.get(name, 5.0) * scale,
                    "per_step": 0.0, "steps": 0, "measured": False}
        plan[name] = part
    plan["_probe_seconds"] = {"before": probe.measured_seconds, "train": 0.0, "after": 0.0}
    return plan


def total_seconds(plan: dict) -> float:
    return sum(p["before"] + p["train"] + p["after"] for name, p in plan.items() if not name.startswith("_"))


def format_estimate(plan: dict, cfg: Config, reference_minutes: float = 0.0) -> list[str]:
    """The lines `lmforge run` prints before it starts: one per stage, the total, and warnings."""
    from .progress import clock
    lines = [f"estimated time on this machine (measured {plan['_probe_seconds']['before']:.0f}s of real steps):"]
    for name, p in plan.items():
        if name.startswith("_"):
            continue
        seconds = p["before"] + p["train"] + p["after"]
        detail = (f"{p['steps']} steps x {p['per_step']:.2f}s + {p['before'] + p['after']:.0f}s evaluation"
                  if p["steps"] else ("generation" if p["measured"] else "not measured: scaled from the reference"))
        lines.append(f"  {name:<12}{clock(seconds):>9}   {detail}")
        cap = getattr(getattr(cfg, name, None), "max_minutes", 0)
        if cap and p["train"] > cap * 60:
            lines.append(f"  warning: {name}.max_minutes={cap:g} is shorter than its {p['train'] / 60:.1f} estimated "
                         f"minutes of training: the stage will be cut short of its {p['steps']} planned steps")
    total = total_seconds(plan)
    lines.append(f"  {'whole run':<12}{clock(total):>9}")
    if reference_minutes and total > 2 * reference_minutes * 60:
        lines.append(f"  warning: that is {total / 60 / reference_minutes:.1f}x this preset's reference time "
                     f"({reference_minutes:g} min): a slower machine, or other work on it; the planned steps "
                     f"and the results stay the same, only later")
    return lines
