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
  * batched decoding through lmforge.engine, at one row and at 64 rows, for everything that
    generates: RL rollouts, the evaluations, the preference candidates.
What is modelled: how many steps (the budget: max_steps, or for pretraining the steps
pretrain.tokens_per_param plans, by the stage's own planned_steps; never minutes), how many answers each
evaluation generates and how long they are, and how much of an RL step's work the data
leaves: answers to one-fact questions are taken as ANSWER_TOKENS long, a preference pair as
padded to a prompt plus the answer budget (the batch's longest answer), worked solutions as
COMPLETION_SHARE of their budget, and GRPO's update as NON_FLAT_SHARE of its completions (flat
groups are skipped). Those shares were measured at tiny (docs/ARCHITECTURE.md) and are
what the estimate cannot know before the models exist.
The data stages (collect, clean, tokenizer, ...) run no model; their figures scale reference
times with the world's size and are marked as not measured.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .config import Config
from .device import pick_device

ANSWER_TOKENS = 16          # a one-fact answer and its <|end|>; rambling ones run longer
PROMPT_TOKENS = 16          # a chat question rendered with its role tokens (15 on average at tiny)
COMPLETION_SHARE = 0.65     # GRPO completions at tiny: 25 of 40 tokens on average
NON_FLAT_SHARE = 0.45       # GRPO groups at tiny whose rewards differ (the rest are skipped)
PAIRS_PER_PROMPT = 7.5      # preference pairs per labelled prompt at tiny (6 candidates, ties give none)
PPO_UPDATE_FACTOR = 2.5     # a PPO micro-step against one masked LM step: policy and value, their losses
TIMED_STEPS = 2             # after one warm-up step
# seconds per stage at the tiny preset's world (360 entities) on the reference machine
# (synth: 7 s before the tool-use conversations, which call the calculator and lookup for ~9 s more)
DATA_STAGE_SECONDS = {"collect": 14.0, "clean": 17.0, "tokenizer": 3.0, "reasoning": 14.0, "index": 2.0,
                      "synth": 16.0, "report": 5.0}


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

    def num_params(self) -> int:
        """The model's parameter count (tied matrices once), built on the meta device: no memory."""
        with torch.device("meta"):
            return self.make_model().num_params()

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
            from .evals.reward_model import RewardModel
            from .train.reward import make_loss_fn
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

    def forward(self, rows: int, length: int) -> float:
        """Seconds of a no-grad forward over rows x length tokens (scoring, reference
        log-probs), linear in tokens from one measured 32 x 64 batch."""
        if "forward" not in self.decode_cache:
            from .engine import fast_path
            model = self.make_model().to(self.device).eval()
            ids = torch.from_numpy(self._random_ids(32, 64)).to(self.device)
            started = time.perf_counter()
            with torch.no_grad(), fast_path(model):
                model(ids)
                start = time.perf_counter()
                model(ids)
            self.decode_cache["forward"] = (time.perf_counter() - start) / (32 * 64)
            self.measured_seconds += time.perf_counter() - started
        return self.decode_cache["forward"] * rows * length

    def decode_step(self, rows: int) -> float:
        """Seconds per decoding step of `rows` sequences (prefill included, spread over the
        steps), linear between the measured 1 and 64 rows and beyond."""
        if 1 not in self.decode_cache:
            from .engine import generate
            model = self.make_model().to(self.device).eval()
            started = time.perf_counter()
            for batch in (1, 64):
                prompts = self._random_ids(batch, PROMPT_TOKENS).tolist()
                generate(model, prompts, max_new_tokens=4, temperature=1.0, seed=0)      # warm-up
                start = time.perf_counter()
                generate(model, prompts, max_new_tokens=32, temperature=1.0, seed=0)
                self.decode_cache[batch] = (time.perf_counter() - start) / 32
            self.measured_seconds += time.perf_counter() - started
        # a step of 64 rows never costs less than a step of one; on a busy machine the two timings
        # can say otherwise, and the line through them would then go below zero
        one, many = self.decode_cache[1], max(self.decode_cache[1], self.decode_cache[64])
        return one + (many - one) * (rows - 1) / 63

    def generation(self, sequences: int, new_tokens: int, batch: int, prompt_tokens: int = PROMPT_TOKENS) -> float:
        """Seconds to generate `sequences` answers of new_tokens each after prompts of
        prompt_tokens, `batch` at a time (generate() takes at most GENERATE_MAX_BATCH rows
        together): the prompts' prefill beyond the decode probe's own, then the decode steps."""
        from .engine import GENERATE_MAX_BATCH
        if sequences <= 0:
            return 0.0
        batch = max(1, min(batch, sequences, GENERATE_MAX_BATCH))
        prefill = self.forward(sequences, max(0, prompt_tokens - PROMPT_TOKENS))
        return prefill + math.ceil(sequences / batch) * new_tokens * self.decode_step(batch)


def _stage_estimate(name: str, cfg: Config, probe: Probe) -> dict:
    """{"before", "train", "after", "per_step", "steps"} for one model stage."""
    seq = cfg.model.seq_len
    if name == "pretrain":
        from .train.pretrain import planned_steps     # the stage's own budget: max_steps, or tokens_per_param's
        t = cfg.pretrain
        per_step = probe.pretrain_step(t)
        facts = probe.generation(cfg.report.fact_eval_limit, 8, 64)
        steps = planned_steps(t, probe.num_params(), int(os.environ.get("WORLD_SIZE", "1")))
        return {"before": 0.0, "per_step": per_step, "steps": steps, "after": facts}
    if name == "sft":
        t = cfg.sft
        per_step = probe.masked_step(t, t.batch_size, t.seq_len, segments=max(1, t.seq_len // 64))
        # trained facts, held-out test and dev questions; a batch decodes until its longest answer ends
        evaluation = probe.generation(3 * t.eval_limit, 2 * ANSWER_TOKENS, 64)
        return {"before": 0.0, "per_step": per_step, "steps": t.max_steps, "after": evaluation}
    lab = cfg.preferences
    labelled = lab.prompts + lab.dev_prompts + lab.test_prompts
    answer = min(lab.max_new_tokens, 2 * ANSWER_TOKENS)
    if name == "preferences":
        return {"before": 0.0, "per_step": 0.0, "steps": 0,
                "after": probe.generation(labelled * lab.candidates, answer, labelled * lab.candidates)}
    pair_len = min(seq, PROMPT_TOKENS + lab.max_new_tokens)
    pairs = labelled * PAIRS_PER_PROMPT
    dev_pairs, test_pairs = pairs * lab.dev_prompts / labelled, pairs * lab.test_prompts / labelled
    evaluated = lab.eval_prompts + lab.eval_dev_prompts
    # greedy and sampled answers of the policy and of SFT, then every answer scored
    alignment = 4 * probe.generation(evaluated, answer, evaluated) + probe.forward(4 * evaluated, pair_len)
    if name == "reward":
        t = cfg.reward
        # accuracy on dev and test pairs and on as many training pairs as test pairs
        scoring = probe.forward(2 * (dev_pairs + 2 * test_pairs), pair_len)
        return {"before": 0.0, "per_step": probe.pair_step(t, "reward", t.batch_size, pair_len),
                "steps": t.max_steps, "after": scoring}
    if name == "dpo":
        t = cfg.dpo
        reference = probe.forward(2 * pairs, pair_len)      # the reference's log-probs of every pair, once
        return {"before": reference, "per_step": probe.pair_step(t, "dpo", t.batch_size, pair_len),
                "steps": t.max_steps, "after": alignment + probe.forward(2 * (dev_pairs + test_pairs), pair_len)}
    if name == "ppo":
        t = cfg.ppo
        answer = min(t.max_completion_tokens, ANSWER_TOKENS)
        length = PROMPT_TOKENS + answer
        rollout = probe.generation(t.prompts_per_step, answer, t.prompts_per_step)
        scoring = 3 * probe.forward(t.prompts_per_step, length)     # reward, values and reference log-probs
        updates = t.iterations * math.ceil(t.prompts_per_step / t.batch_size)
        update = updates * PPO_UPDATE_FACTOR * probe.masked_step(t, t.batch_size, length)
        normalizer = probe.generation(t.reward_norm_samples, answer, t.prompts_per_step)
        return {"before": normalizer, "per_step": rollout + scoring + update, "steps": t.max_steps,
                "after": alignment}
    if name == "grpo":
        g = cfg.grpo
        rows = g.prompts_per_step * g.group_size
        completion = max(1, round(g.max_completion_tokens * COMPLETION_SHARE))
        rollout = probe.generation(rows, completion, rows, prompt_tokens=3 * PROMPT_TOKENS)
        updated = max(1, round(rows * NON_FLAT_SHARE))
        update = g.iterations * math.ceil(updated / g.batch_size) * probe.masked_step(
            g, min(g.batch_size, updated), 3 * PROMPT_TOKENS + completion)
        levels = cfg.reasoning.max_difficulty
        # greedy on the test and dev problems, k samples of the first test problems per level
        evaluation = (probe.generation((g.eval_per_difficulty + g.dev_per_difficulty) * levels, completion, 128,
                                       prompt_tokens=3 * PROMPT_TOKENS)
                      + probe.generation((g.eval_k_per_difficulty or g.eval_per_difficulty) * levels * g.eval_k,
                                         completion, 128, prompt_tokens=3 * PROMPT_TOKENS))
        # dev validation every eval_every steps inside the loop (its time counts as training time)
        validations = math.ceil(g.max_steps / g.eval_every)
        validation = probe.generation(g.dev_per_difficulty * levels, completion, 128, prompt_tokens=3 * PROMPT_TOKENS)
        per_step = rollout + update + validation * validations / max(1, g.max_steps)
        return {"before": evaluation, "per_step": per_step, "steps": g.max_steps, "after": evaluation}
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
