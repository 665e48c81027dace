"""The dpo stage: direct preference optimization, the lighter alternative to reward model + PPO.

    lmforge dpo --run-dir runs/tiny                      # sigmoid (DPO) loss
    lmforge dpo --run-dir runs/tiny dpo.loss_type=ipo    # IPO

The policy starts from the SFT model; a frozen copy of SFT is the reference. For each
preference pair the log-likelihoods of the chosen and rejected answers are compared
with the reference's:

    h = (log p(chosen) - log ref(chosen)) - (log p(rejected) - log ref(rejected))
    sigmoid: -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h)   (eps = label_smoothing)
    ipo:     (h - 1 / (2 beta))^2
    + rpo_alpha * (per-token NLL of the chosen answer), optional (RPO)

The reference log-probabilities never change, so they are computed once before
training. beta * (log p - log ref) is each answer's implicit reward; the log records how
often the chosen answer's is higher (implicit-reward accuracy) and the mean margin.
Evaluation against SFT (win rate, "I don't know" rate, known-entity accuracy, KL) is
lmforge/evals/alignment.py, shared with PPO.
"""
from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F

from ..evals.alignment import alignment_metrics
from ..evals.likelihood import answer_logprob_sums
from ..evals.stats import proportion
from ..checkpoints import load_model, save_model
from ..engine import fast_path
from ..rundir import StageContext
from .loop import Trainer, budget_line, budget_metrics
from .pairs import collate_pairs, mean_pair_loss_fn, split_stats, stage_overlap, stage_pairs
from .sft import row_batch_fn


@torch.no_grad()
def add_reference_logprobs(reference, rows: list, batch_size: int, pad_id: int, device) -> list:
    """Each row (c_ids, c_mask, r_ids, r_mask) gains the reference's (chosen, rejected) sums."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = collate_pairs(chunk, pad_id, device)
        with fast_path(reference):
            sums = answer_logprob_sums(reference, batch["ids"], batch["loss_mask"]).tolist()
        half = len(chunk)
        out += [(*row, sums[i], sums[half + i]) for i, row in enumerate(chunk)]
    return out


def collate_with_reference(rows: list, pad_id: int, device) -> dict:
    batch = collate_pairs(rows, pad_id, device)
    batch["ref"] = torch.tensor([r[4] for r in rows] + [r[5] for r in rows], device=device)
    return batch


def preference_loss(h: torch.Tensor, loss_type: str, beta: float, label_smoothing: float) -> torch.Tensor:
    """Per-pair loss from h, the policy-vs-reference log-ratio of chosen minus that of rejected."""
    if loss_type == "ipo":
        return (h - 1 / (2 * beta)) ** 2
    return -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)


def make_loss_fn(dcfg, stats: Counter):
    def loss_fn(model, batch) -> torch.Tensor:
        policy_logp = answer_logprob_sums(model, batch["ids"], batch["loss_mask"])
        logratio = policy_logp - batch["ref"]
        half = logratio.size(0) // 2
        chosen, rejected = logratio[:half], logratio[half:]
        losses = preference_loss(chosen - rejected, dcfg.loss_type, dcfg.beta, dcfg.label_smoothing)
        if dcfg.rpo_alpha:
            tokens = batch["loss_mask"][:half, 1:].sum(-1).clamp(min=1)
            losses = losses - dcfg.rpo_alpha * policy_logp[:half] / tokens
        with torch.no_grad():
            stats["pairs"] += half
            stats["correct"] += int((chosen > rejected).sum())
            stats["margin"] += float(dcfg.beta * (chosen - rejected).sum())
            stats["chosen_reward"] += float(dcfg.beta * chosen.sum())
            stats["rejected_reward"] += float(dcfg.beta * rejected.sum())
        return losses.sum()
    return loss_fn


def drain(stats: Counter) -> dict:
    """The implicit-reward statistics gathered since the last call, then reset."""
    n = stats["pairs"]
    if not n:
        return {}
    row = {"reward_accuracy": round(stats["correct"] / n, 4), "reward_margin": round(stats["margin"] / n, 4),
           "chosen_reward": round(stats["chosen_reward"] / n, 4),
           "rejected_reward": round(stats["rejected_reward"] / n, 4)}
    stats.clear()
    return row


def run_stage(ctx: StageContext) -> dict:
    cfg, run, dcfg = ctx.cfg, ctx.run, ctx.cfg.dpo
    data = stage_pairs(ctx, dcfg)
    tokenizer, path, rows, device = data.tokenizer, data.path, data.rows, data.device
    reference = load_model(run.model_dir("sft"), device=device).eval()
    reference.requires_grad_(False)
    train_rows, dev_rows, test_rows = (add_reference_logprobs(reference, r, dcfg.batch_size, tokenizer.pad_id, device)
                                       for r in (rows.train, rows.dev, rows.test))
    del reference
    policy = load_model(run.model_dir("sft"))
    trainer = Trainer(policy, dcfg, out_dir=run.model_dir("dpo"), log_path=run.log_path("dpo"), seed=cfg.run.seed,
                      device=device, save_fn=save_model, stage="dpo")
    ctx.progress(f"{len(train_rows):,} train / {len(dev_rows):,} dev / {len(test_rows):,} test pairs "
                 f"({split_stats(rows)}); {dcfg.loss_type} loss, beta {dcfg.beta}")
    train_stats, val_stats = Counter(), Counter()
    loss_fn, val_loss_fn = make_loss_fn(dcfg, train_stats), make_loss_fn(dcfg, val_stats)
    batch_fn = row_batch_fn(train_rows, dcfg.batch_size, dcfg.grad_accum, cfg.run.seed, tokenizer.pad_id,
                             trainer.device, collate_fn=collate_with_reference)
    # the checkpoint kept is the one with the lowest loss on the dev pairs
    eval_fn = mean_pair_loss_fn(dev_rows, val_loss_fn, collate_with_reference, dcfg.batch_size, tokenizer.pad_id,
                                trainer)
    test_fn = mean_pair_loss_fn(test_rows, val_loss_fn, collate_with_reference, dcfg.batch_size, tokenizer.pad_id,
                                trainer)
    result = trainer.fit(batch_fn, loss_fn, eval_fn, resume=ctx.resume, log_extra=lambda: drain(train_stats))
    if not trainer.is_main:
        return {}
    best = load_model(run.model_dir("dpo"), device=trainer.device).eval()
    implicit = {}
    for name, fn in (("val", eval_fn), ("test", test_fn)):     # val_*: the dev pairs (the older name)
        val_stats.clear()
        with torch.no_grad(), fast_path(best):
            fn(best)
        correct, n = val_stats["correct"], val_stats["pairs"]
        implicit.update({f"{name}_{k}": v for k, v in drain(val_stats).items()})
        implicit[f"{name}_reward_accuracy_figure"] = proportion(correct, n)
    metrics = alignment_metrics(run, cfg, best, tokenizer, trainer.device, stage="dpo", limit=dcfg.eval_prompts)
    ctx.progress(f"win rate vs SFT {metrics['win_rate']:.1%} (test); I-don't-know on unseen entities "
                 f"{metrics['sft_idk_rate']:.1%} -> {metrics['idk_rate']:.1%}; known-entity accuracy "
                 f"{metrics['sft_known_accuracy']:.1%} -> {metrics['known_accuracy']:.1%}; {budget_line(result)}")
    return {
        **metrics,
        **implicit,
        "val_loss": round(result.best_val_loss, 4),
        **budget_metrics(result),
        "pairs_per_second": result.items_per_second,
        "loss_type": dcfg.loss_type,
        "beta": dcfg.beta,
        "data": str(path),
        "pairs": split_stats(rows),
        "overlap": stage_overlap(run, rows),
    }
