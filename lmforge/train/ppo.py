"""RLHF with PPO: the SFT model learns to please the reward model without drifting far from itself.

    lmforge ppo --run-dir runs/tiny                  # after reward; writes models/ppo, logs/ppo.jsonl
    lmforge ppo --run-dir runs/tiny ppo.kl_coef=0.1 ppo.kl_estimator=k3 ppo.iterations=4

Four models take part:
    policy     the SFT model, trained (saved as models/ppo, a chat model like any other)
    reference  the SFT model, frozen: the KL leash
    reward     the reward model (lmforge/evals/reward_model.py, trained by lmforge/train/reward.py),
               frozen: one score per answer
    value      a copy of the reward model (backbone and head) read at every token, trained:
               V(s_t) predicts the return from token t on. Starting from the reward model
               is the usual choice (TRL, the InstructGPT recipe): it already knows what a good
               answer looks like, so the first advantages are not noise.
Policy and value sit in one module (PolicyAndValue) trained by the shared loop's Trainer,
with their own learning rates (ppo.lr, ppo.value_lr) and one checkpoint.

One PPO step:
  1. take `prompts_per_step` prompts (datasets/label_items.jsonl, the preference stage's
     train prompts: its dev and test items are left out; a seeded order per epoch, so the
     step alone fixes them) and sample one answer
     each through the shared generation engine, stopping at <|end|>;
  2. score prompt + answer with the reward model, shifted and scaled to mean 0, std 1 on
     the SFT model's own answers (measured once at the start on `reward_norm_samples`
     prompts, as Ziegler et al. 2019 do), so kl_coef weighs the same against any reward
     model's scale; an answer that never ended loses `missing_end_penalty`;
  3. with no gradient: the policy's log-probs and values at every answer token (one pass),
     and the reference's log-probs;
  4. per-token reward: r_t = -kl_coef * KL_t, plus the score on the last token, where
     KL_t is k1 = logp - ref_logp or k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1;
  5. GAE: delta_t = r_t + gamma V_{t+1} - V_t (V after the last token is 0),
     A_t = delta_t + gamma lam A_{t+1}; returns R_t = A_t + V_t; advantages whitened over
     the batch's tokens;
  6. `iterations` epochs over the batch, shuffled into micro-batches of `batch_size`
     answers (`grad_accum` micro-batches per optimizer step), each step minimizing per token
         max(-A r, -A clip(r, 1 - cliprange, 1 + cliprange))                      policy
       + vf_coef * 0.5 * max((V - R)^2, (V_old + clip(V - V_old, +-cliprange_value) - R)^2)
     with r = pi(token) / pi_old(token), summed and divided by the step's token count.
Log-probabilities are taken at the rollout temperature (the policy that sampled), as in
GRPO; the rollout and batching helpers are the ones GRPO uses (lmforge/train/rollout.py).

Each step writes one row to logs/ppo.jsonl: reward-model score, KL to the reference
(k1 summed over each answer, averaged), entropy, clip fractions, policy and value loss,
answer length, fraction that ended, seconds for rollout and update, and (when the prompts
carry ground truth, as the built-in ones do) the judge's score of the rollouts, which
training never sees. A non-finite loss stops the stage with one line. The manifest holds
the KL and reward curves in brief, the evaluation against SFT on the test prompts (dev
beside it; lmforge/evals/alignment.py) and what those share with the training prompts
(`overlap`, counted from the text: 0).

Checkpoints are the shared loop's (models/ppo/trainer_state.pt: policy, value model, both
optimizers, step); a killed run resumes from the last one with fresh samples.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..world import read_facts
from ..device import pick_device, set_threads
from ..evals.alignment import alignment_metrics
from ..evals.card import read_log
from ..evals.judge import judge, load_index, says_idk
from ..evals.overlap import FactFinder, prompt_overlap
from ..evals.reward_model import RewardModel, answer_mask_for, load_reward_model
from ..files import read_jsonl, read_jsonl_lenient
from ..checkpoints import load_model, save_model
from ..engine import fast_path
from ..model import GPT
from ..errors import StageError
from ..rundir import StageContext
from ..tokenizer import Tokenizer
from .loop import Trainer, budget_line, budget_metrics
from .optim import build_optimizers
from .rollout import make_batches, prompts_for_step, rollout, token_logprobs

# ---------------------------------------------------------------- the models

class ValueModel(nn.Module):
    """A GPT backbone and a scalar head read at every position: V(s_t) for each token."""

    def __init__(self, backbone: GPT, value_head: nn.Linear):
        super().__init__()
        self.backbone = backbone
        self.value_head = value_head

    @classmethod
    def from_reward_model(cls, reward_model: RewardModel) -> ValueModel:
        return cls(copy.deepcopy(reward_model.backbone), copy.deepcopy(reward_model.head))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> values (B, T), float32."""
        return self.value_head(self.backbone(ids, return_hidden=True)).float().squeeze(-1)


class PolicyAndValue(nn.Module):
    """The two trained models as one module for the Trainer: one forward, one checkpoint."""

    def __init__(self, policy: GPT, value: ValueModel):
        super().__init__()
        self.policy = policy
        self.value = value

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, T) -> (policy hidden states (B, T, d_model), values (B, T))."""
        return self.policy(ids, return_hidden=True), self.value(ids)


def policy_and_values(model, lm_head, batch: dict, temperature: float):
    """At the answer positions of a batch (flat, N): token log-probs, full log-softmax rows
    (N, V) and values. The LM head runs on answer positions only."""
    hidden, values = model(batch["x"])
    logp_all = F.log_softmax(lm_head(hidden[batch["mask"]]).float() / temperature, dim=-1)
    logp = logp_all.gather(-1, batch["targets"][:, None]).squeeze(-1)
    return logp, logp_all, values[batch["mask"]]


# ---------------------------------------------------------------- rewards, KL, GAE, losses

def kl_per_token(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """k1 = logp - ref_logp (unbiased, can be negative per token); k3 = e^d - d - 1 with
    d = ref_logp - logp (unbiased for KL(pi || ref) too, never negative, lower variance)."""
    if estimator == "k1":
        return logp - ref_logp
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def token_rewards(score: float, kl: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """One answer's per-token reward: the KL penalty everywhere, the score on the last token."""
    rewards = -kl_coef * kl
    rewards[-1] += score
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over one answer (1-D tensors, the state after the
    last token is terminal): (advantages, returns = advantages + values)."""
    advantages = torch.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(rewards.numel())):
        next_value = values[t + 1] if t + 1 < rewards.numel() else 0.0
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
    return advantages, advantages + values


def whiten(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return (x - x.mean()) / (x.std(unbiased=False) + eps) if x.numel() > 1 else x - x.mean()


def clipped_policy_loss(logp, old_logp, advantages, cliprange: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO surrogate max(-A r, -A clip(r)) and whether the clipped branch won."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - cliprange, 1 + cliprange)
    return torch.maximum(unclipped, clipped), (clipped > unclipped)


def clipped_value_loss(values, old_values, returns, cliprange_value: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token 0.5 max((V - R)^2, (V_clipped - R)^2), V_clipped kept within cliprange_value of
    the rollout's value, and whether the clipped branch won."""
    clipped_values = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    return 0.5 * torch.maximum(unclipped, clipped), (clipped > unclipped)


# ---------------------------------------------------------------- prompts

@dataclass
class Prompt:
    messages: list[dict]
    prompt_ids: list[int]      # rendered with the assistant turn opened (what rollout.rollout reads)
    item: dict                 # the whole row: "known" / "value" let the judge watch the rollouts


def load_prompts(path: Path, tokenizer: Tokenizer, max_prompt_tokens: int) -> tuple[list[Prompt], Counter]:
    """Prompt rows ({"prompt": [messages] or "text", ...}); bad or too long ones are counted, and
    so are rows of the dev and test splits, which are left out."""
    if not path.exists():
        raise StageError(f"{path} does not exist; run `lmforge preferences` first or set ppo.data_path")
    rows, bad_json = read_jsonl_lenient(path)
    prompts, stats = [], Counter({"skipped:bad_json": bad_json} if bad_json else {})
    for row in rows:
        if isinstance(row, dict) and row.get("split") in ("dev", "test"):
            stats[f"not_trained:{row['split']}_split"] += 1      # label items of dev and test choose and measure only
            continue
        messages = row.get("prompt") if isinstance(row, dict) else None
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        try:
            if not messages or messages[-1].get("role") == "assistant":
                raise ValueError
            ids = tokenizer.render_chat(messages, add_generation_prompt=True)[0]
        except (ValueError, AttributeError, TypeError):
            stats["skipped:bad_prompt"] += 1
            continue
        if len(ids) > max_prompt_tokens:
            stats["skipped:too_long"] += 1
            continue
        stats["kept"] += 1
        prompts.append(Prompt(messages, ids, row))
    return prompts, stats


# ---------------------------------------------------------------- one PPO step

def _split(flat: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
    return list(torch.split(flat.detach().cpu(), lengths))


@torch.no_grad()
def reward_model_scores(reward_model, completions: list[dict], batch_size: int, pad_id: int, device) -> torch.Tensor:
    """Reward-model score of each prompt + answer (read at its last token)."""
    scores = []
    for start in range(0, len(completions), batch_size):
        rows = [c["prompt_ids"] + c["ids"] for c in completions[start:start + batch_size]]
        ids = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row)
        lengths = torch.tensor([len(r) for r in rows])
        answers = answer_mask_for([len(c["prompt_ids"]) for c in completions[start:start + batch_size]],
                                  lengths.tolist(), ids.size(1), device)
        with fast_path(reward_model):
            scores.append(reward_model(ids.to(device), lengths.to(device), answers).float().cpu())
    return torch.cat(scores)


def attach(batch: dict, rows: list[int], per_answer: dict[str, list[torch.Tensor]], device) -> dict:
    """Add per-token tensors (old log-probs, advantages, ...) of the batch's answers, in its token order."""
    for key, tensors in per_answer.items():
        batch[key] = torch.cat([tensors[i] for i in rows]).to(device)
    return batch


def make_loss_fn(lm_head, ppo_cfg, stats: Counter):
    """loss_fn(model, batch) for Trainer.train_step: the PPO policy + value loss summed over tokens."""
    def loss_fn(model, batch) -> torch.Tensor:
        logp, _, values = policy_and_values(model, lm_head, batch, ppo_cfg.temperature)
        pg, pg_clipped = clipped_policy_loss(logp, batch["old_logp"], batch["advantages"], ppo_cfg.cliprange)
        vf, vf_clipped = clipped_value_loss(values, batch["old_values"], batch["returns"], ppo_cfg.cliprange_value)
        with torch.no_grad():
            stats["policy_loss_sum"] += float(pg.sum())
            stats["value_loss_sum"] += float(vf.sum())
            stats["clipped"] += int(pg_clipped.sum())
            stats["value_clipped"] += int(vf_clipped.sum())
            stats["approx_kl_sum"] += float((0.5 * (logp - batch["old_logp"]) ** 2).sum())
            stats["tokens"] += batch["n_tokens"]
        return (pg + ppo_cfg.vf_coef * vf).sum()
    return loss_fn


@torch.no_grad()
def reward_normalizer(reference, reward_model, tokenizer, prompts: list[Prompt], ppo_cfg, seed: int, device):
    """(mean, std) of the reward model's scores on the reference (SFT) model's own answers to
    `reward_norm_samples` prompts; (0, 1) when that is 0. The reference, not the policy, so a
    resumed run measures the same numbers."""
    if ppo_cfg.reward_norm_samples == 0:
        return 0.0, 1.0
    sample = prompts_for_step(prompts, 0, min(ppo_cfg.reward_norm_samples, len(prompts)), seed)
    completions = []
    for start in range(0, len(sample), ppo_cfg.prompts_per_step):
        completions += rollout(reference, tokenizer, sample[start:start + ppo_cfg.prompts_per_step], 1,
                               ppo_cfg.max_completion_tokens, ppo_cfg.temperature, ppo_cfg.top_p, 0, seed + start)
    scores = reward_model_scores(reward_model, completions, ppo_cfg.batch_size, tokenizer.pad_id, device)
    std = float(scores.std()) if len(scores) > 1 else 1.0
    return float(scores.mean()), std if std > 1e-6 else 1.0


def ppo_step(trainer: Trainer, ref_model, reward_model, tokenizer, prompts: list[Prompt], ppo_cfg, seed: int,
             normalizer: tuple[float, float] = (0.0, 1.0), judge_index=None) -> dict:
    """Rollout, rewards, GAE and `iterations` epochs of updates; returns the log row's numbers.
    The reward is (score - normalizer[0]) / normalizer[1]; judge_index: the run's JudgeIndex
    for the monitoring judge."""
    model = trainer.model
    policy, lm_head, device = model.policy, model.policy.lm_head, trainer.device
    started = time.perf_counter()
    model.eval()
    completions = rollout(policy, tokenizer, prompts, 1, ppo_cfg.max_completion_tokens, ppo_cfg.temperature,
                          ppo_cfg.top_p, 0, seed)
    rollout_seconds = time.perf_counter() - started
    n = len(completions)
    lengths = [len(c["ids"]) for c in completions]
    ended = torch.tensor([c["ended"] for c in completions], dtype=torch.bool)

    # Scores, and with no gradient the sampling policy's log-probs and values and the reference's log-probs.
    scores = reward_model_scores(reward_model, completions, ppo_cfg.batch_size, tokenizer.pad_id, device)
    rewarded = (scores - normalizer[0]) / normalizer[1] - ppo_cfg.missing_end_penalty * (~ended).float()
    everyone = list(range(n))
    in_order = make_batches(completions, torch.zeros(n), everyone, ppo_cfg.batch_size, "token_mean",
                            ppo_cfg.max_completion_tokens, tokenizer.pad_id, device)
    old_logp, old_values, ref_logp, entropy_sum = [], [], [], 0.0
    with torch.no_grad(), fast_path(model, ref_model):
        for batch in in_order:
            logp, logp_all, values = policy_and_values(model, lm_head, batch, ppo_cfg.temperature)
            old_logp.append(logp)
            old_values.append(values)
            ref_logp.append(token_logprobs(ref_model, ref_model.lm_head, batch, ppo_cfg.temperature)[0])
            entropy_sum += float(-(logp_all.exp() * logp_all).sum())
    old_logp, old_values, ref_logp = (_split(torch.cat(t), lengths) for t in (old_logp, old_values, ref_logp))

    kls = [kl_per_token(old_logp[i], ref_logp[i], ppo_cfg.kl_estimator) for i in everyone]
    advantages, returns = [], []
    for i in everyone:
        adv, ret = gae(token_rewards(float(rewarded[i]), kls[i], ppo_cfg.kl_coef), old_values[i], ppo_cfg.gamma, ppo_cfg.lam)
        advantages.append(adv)
        returns.append(ret)
    if ppo_cfg.whiten_advantages:
        advantages = list(torch.split(whiten(torch.cat(advantages)), lengths))
    per_answer = {"old_logp": old_logp, "old_values": old_values, "advantages": advantages, "returns": returns}

    # `iterations` epochs; each shuffles the answers into micro-batches, grad_accum per optimizer step.
    model.train()
    update_started = time.perf_counter()
    stats: Counter = Counter()
    loss_fn = make_loss_fn(lm_head, ppo_cfg, stats)
    losses = []
    for epoch in range(ppo_cfg.iterations):
        order = [int(i) for i in np.random.default_rng([seed, epoch]).permutation(n)]
        batches = make_batches(completions, torch.zeros(n), order, ppo_cfg.batch_size, "token_mean",
                               ppo_cfg.max_completion_tokens, tokenizer.pad_id, device)
        for b, batch in enumerate(batches):
            attach(batch, order[b * ppo_cfg.batch_size:(b + 1) * ppo_cfg.batch_size], per_answer, device)
        for start in range(0, len(batches), ppo_cfg.grad_accum):
            loss = trainer.train_step(batches[start:start + ppo_cfg.grad_accum], loss_fn)
            if not math.isfinite(loss):
                raise StageError(f"ppo: the loss became {loss} at step {trainer.step + 1} (epoch {epoch + 1}); "
                                 f"lower ppo.lr or ppo.value_lr, or raise ppo.kl_coef")
            losses.append(loss)
    update_seconds = time.perf_counter() - update_started

    k1 = [float((old_logp[i] - ref_logp[i]).sum()) for i in everyone]
    tokens = stats["tokens"] or 1
    row = {
        "loss": round(float(np.mean(losses)), 5),
        "reward": round(float(scores.mean()), 4),
        "reward_std": round(float(scores.std()), 4) if n > 1 else 0.0,
        "kl": round(float(np.mean(k1)), 4),
        "kl_per_token": round(sum(k1) / max(sum(lengths), 1), 5),
        "kl_penalty": round(ppo_cfg.kl_coef * float(np.mean([float(k.sum()) for k in kls])), 4),
        "entropy": round(entropy_sum / max(sum(lengths), 1), 4),
        "clip_fraction": round(stats["clipped"] / tokens, 4),
        "value_clip_fraction": round(stats["value_clipped"] / tokens, 4),
        "approx_kl_old": round(stats["approx_kl_sum"] / tokens, 6),
        "policy_loss": round(stats["policy_loss_sum"] / tokens, 5),
        "value_loss": round(stats["value_loss_sum"] / tokens, 5),
        "response_length": round(float(np.mean(lengths)), 2),
        "ended_fraction": round(float(ended.float().mean()), 4),
        "rollout_seconds": round(rollout_seconds, 3),
        "update_seconds": round(update_seconds, 3),
        "step_seconds": round(time.perf_counter() - started, 3),
        "rollout_tokens_per_second": round(sum(lengths) / max(rollout_seconds, 1e-9), 1),
    }
    row.update(judge_rollouts(prompts, completions, judge_index))
    return row


def judge_rollouts(prompts: list[Prompt], completions: list[dict], index=None) -> dict:
    """The ground-truth judge's view of the rollouts (monitoring only; training never sees it)."""
    judged = [(p.item, c) for p, c in zip(prompts, completions)
              if isinstance(p.item.get("known"), bool) and (not p.item["known"] or p.item.get("value"))]
    if not judged:
        return {}
    row = {"judge_score": round(float(np.mean([judge(c["text"], c["ended"], item, index).score
                                                for item, c in judged])), 4)}
    for known, key in ((False, "idk_on_unknown"), (True, "idk_on_known")):
        texts = [c["text"] for item, c in judged if item["known"] == known]
        if texts:
            row[key] = round(float(np.mean([says_idk(t) for t in texts])), 4)
    return row


# ---------------------------------------------------------------- the stage

def build_policy_and_value(run, ppo_cfg, device) -> tuple[PolicyAndValue, GPT, RewardModel]:
    """(policy + value to train, frozen reference, frozen reward model)."""
    policy = load_model(run.model_dir("sft"))
    reference = load_model(run.model_dir("sft"), device=device).eval().requires_grad_(False)
    reward_model = load_reward_model(run.model_dir("reward"), device=device).eval().requires_grad_(False)
    value = ValueModel.from_reward_model(reward_model).requires_grad_(True).train()
    if ppo_cfg.freeze_embeddings:
        # Adam moves every embedding row a little whatever its gradient, dragging tokens the
        # answers rely on (see lmforge/train/grpo.py); a tied LM head stays fixed with them.
        policy.embed.weight.requires_grad_(False)
    return PolicyAndValue(policy, value), reference, reward_model


def make_trainer(model: PolicyAndValue, ppo_cfg, out_dir, log_path, seed: int, device) -> Trainer:
    """The shared loop's Trainer for policy + value. They learn at their own rates (ppo_cfg.lr,
    ppo_cfg.value_lr): one optimizer set each, stepped and checkpointed together. The stage's
    output is the policy alone."""
    def optimizers(m, dev, precision):
        ns = precision.newton_schulz
        return (build_optimizers(m.policy, ppo_cfg, dev, ns)
                + build_optimizers(m.value, dataclasses.replace(ppo_cfg, lr=ppo_cfg.value_lr), dev, ns))
    return Trainer(model, ppo_cfg, out_dir=out_dir, log_path=log_path, seed=seed, device=device, stage="ppo",
                   optimizers=optimizers, save_fn=lambda m, d: save_model(m.policy, d))


def curve_summary(rows: list[dict], key: str, points: int = 5) -> dict:
    """`key` at `points` evenly spaced steps, plus first, last (mean of the last 5) and max."""
    values = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    if not values:
        return {}
    picks = sorted({round(i * (len(values) - 1) / max(points - 1, 1)) for i in range(points)})
    return {"at_step": {str(values[i][0]): values[i][1] for i in picks},
            "first": values[0][1], "final": round(float(np.mean([v for _, v in values[-5:]])), 4),
            "max": max(v for _, v in values), "min": min(v for _, v in values)}


def run_stage(ctx: StageContext) -> dict:
    cfg, run, ppo_cfg = ctx.cfg, ctx.run, ctx.cfg.ppo
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    set_threads(cfg.run.threads)
    device = pick_device(cfg.run.device)
    model, reference, reward_model = build_policy_and_value(run, ppo_cfg, device)
    data_path = Path(ppo_cfg.data_path) if ppo_cfg.data_path else run.path("datasets", "label_items.jsonl")
    prompts, prompt_stats = load_prompts(data_path, tokenizer, model.policy.cfg.seq_len - ppo_cfg.max_completion_tokens)
    if not prompts:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(prompt_stats.items())) or "the file is empty"
        raise StageError(f"no usable prompts in {data_path} ({reasons})")
    ctx.progress(f"{len(prompts):,} prompts ({dict(prompt_stats)}) from {data_path}")

    facts_path = run.world_dir / "facts.jsonl"
    judge_index = load_index(facts_path) if facts_path.exists() else None
    trainer = make_trainer(model, ppo_cfg, run.model_dir("ppo"), run.log_path("ppo"), cfg.run.seed, device)
    normalizer = reward_normalizer(reference, reward_model, tokenizer, prompts, ppo_cfg, cfg.run.seed + 1, trainer.device)
    ctx.progress(f"reward model on SFT answers: mean {normalizer[0]:.3f}, std {normalizer[1]:.3f} (the reward is "
                 f"shifted and scaled by these)")

    def step_fn(step: int) -> dict:
        batch = prompts_for_step(prompts, step, ppo_cfg.prompts_per_step, cfg.run.seed)
        seed = cfg.run.seed * 1_000_003 + step * 10_007
        return ppo_step(trainer, reference, reward_model, tokenizer, batch, ppo_cfg, seed, normalizer, judge_index)

    result = trainer.run(step_fn, resume=ctx.resume, postfix=lambda row: {
        "reward": f"{row['reward']:.2f}", "kl": f"{row['kl']:.2f}", "len": f"{row['response_length']:.0f}"})
    policy = model.policy.eval()

    rows = read_log(trainer.log_path)      # the whole run, also across a resume
    metrics = {
        **budget_metrics(result),
        "rollout_seconds_per_step": round(float(np.mean([r["rollout_seconds"] for r in rows])), 3) if rows else None,
        "update_seconds_per_step": round(float(np.mean([r["update_seconds"] for r in rows])), 3) if rows else None,
        "kl_curve": curve_summary(rows, "kl"),
        "kl_max": max((r["kl"] for r in rows), default=None),
        "reward_curve": curve_summary(rows, "reward"),
        "judge_score_curve": curve_summary(rows, "judge_score"),
        "ended_fraction_final": rows[-1]["ended_fraction"] if rows else None,
        "prompts": dict(sorted(prompt_stats.items())),
        "overlap": ppo_overlap(run, prompts),
        "reward_normalizer": {"mean": round(normalizer[0], 4), "std": round(normalizer[1], 4)},
        "data": str(data_path),
    }
    ctx.progress(f"{budget_line(result)} in {result.wall_seconds:.0f}s; reward "
                 f"{metrics['reward_curve'].get('first')} -> {metrics['reward_curve'].get('final')}, "
                 f"KL max {metrics['kl_max']}")
    if trainer.is_main:
        metrics.update(alignment_metrics(run, cfg, policy, tokenizer, trainer.device, "ppo", limit=ppo_cfg.eval_prompts))
        ctx.progress(f"win rate vs SFT {metrics['win_rate']:.1%}; I-don't-know on unseen entities "
                     f"{metrics['sft_idk_rate']:.1%} -> {metrics['idk_rate']:.1%}; known-entity accuracy "
                     f"{metrics['sft_known_accuracy']:.1%} -> {metrics['known_accuracy']:.1%}")
    return metrics


def ppo_overlap(run, prompts: list[Prompt]) -> dict:
    """The evaluation prompts (dev, test) against the prompts PPO trains on, from their text."""
    eval_path, facts_path = run.path("datasets", "preferences_eval.jsonl"), run.world_dir / "facts.jsonl"
    if not eval_path.exists():
        return {}
    finder = FactFinder(read_facts(facts_path) if facts_path.exists() else [])
    train = [m["content"] for p in prompts for m in p.messages]
    rows = read_jsonl(eval_path)
    return {name: prompt_overlap(train, [r["prompt"][-1]["content"] for r in rows if r.get("split", "test") == name],
                                 finder) for name in ("dev", "test")}

