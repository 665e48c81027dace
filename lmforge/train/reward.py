"""The reward stage: a reward model that imitates the labelers' preferences.

    lmforge reward --run-dir runs/tiny        # reads datasets/preferences.jsonl, writes models/reward/

The reward model is the SFT chat model with its LM head replaced by a scalar head read
at the last token of prompt + answer (the answer's closing <|end|> when it ended). It is
trained with the Bradley-Terry loss through the shared loop:

    loss = -log sigmoid(r_chosen - r_rejected - margin) + center_coef * (r_chosen + r_rejected)^2

The optional margin asks for a minimum gap; the centering term keeps rewards near zero,
so PPO's reward scale does not drift. Pairs come split by fact (lmforge/train/pairs.py):
the model trains on the train pairs, the checkpoint kept is the one with the lowest loss
on the dev pairs, and the headline figures are on the test pairs, which choose nothing.
The manifest's held_out_* figures are the test split's: pair accuracy against the labels,
the mean margin r_chosen - r_rejected and, with the automatic annotator, the accuracy
against the truth it saw and the label ceiling, the share of test labels it did not flip
(no model can beat the labels by more); `figures` gives each with its size and 95 %
interval, dev_* the same on the dev pairs, `overlap` what dev and test share with training.

The model itself, its save and load (models/reward/: backbone/ and head.safetensors) are in
lmforge/evals/reward_model.py.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..evals.reward_model import RewardModel, load_reward_model, save_reward_model
from ..evals.stats import proportion
from ..checkpoints import load_model
from ..engine import fast_path
from ..rundir import StageContext
from .loop import Trainer, budget_line, budget_metrics
from .pairs import collate_pairs, mean_pair_loss_fn, split_stats, stage_overlap, stage_pairs
from .sft import row_batch_fn


def pair_rewards(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    rewards = model(batch["ids"], batch["lengths"], batch["loss_mask"])
    half = rewards.size(0) // 2
    return rewards[:half], rewards[half:]


def make_loss_fn(margin: float, center_coef: float):
    def loss_fn(model, batch) -> torch.Tensor:
        chosen, rejected = pair_rewards(model, batch)
        loss = -F.logsigmoid(chosen - rejected - margin) + center_coef * (chosen + rejected) ** 2
        return loss.sum()
    return loss_fn


@torch.no_grad()
def pair_metrics(model, rows: list, batch_size: int, pad_id: int, device, flipped: list | None = None) -> dict:
    """Accuracy (chosen scored higher), mean margin and mean reward over pairs; with `flipped`
    also the accuracy against the truth the noisy annotator saw (flipped labels reversed) and
    the label ceiling: the accuracy against these labels of a model always right about the truth."""
    correct = total = agree_truth = 0
    margin_sum = reward_sum = 0.0
    model.eval()
    for start in range(0, len(rows), batch_size):
        with fast_path(model):
            chosen, rejected = pair_rewards(model, collate_pairs(rows[start:start + batch_size], pad_id, device))
        correct += int((chosen > rejected).sum())
        if flipped is not None:
            wrong_label = torch.tensor(flipped[start:start + batch_size], device=chosen.device)
            agree_truth += int(((chosen > rejected) != wrong_label).sum())
        margin_sum += float((chosen - rejected).sum())
        reward_sum += float((chosen + rejected).sum())
        total += chosen.numel()
    result = {"accuracy": round(correct / max(total, 1), 4), "mean_margin": round(margin_sum / max(total, 1), 4),
              "mean_reward": round(reward_sum / max(2 * total, 1), 4), "pairs": total, "correct": correct}
    if flipped is not None:
        result["accuracy_vs_truth"] = round(agree_truth / max(total, 1), 4)
        result["agree_truth"] = agree_truth
        result["flipped_labels"] = int(sum(flipped))
        result["label_ceiling"] = round(1 - sum(flipped) / max(total, 1), 4)
    return result


def run_stage(ctx: StageContext) -> dict:
    cfg, run, rcfg = ctx.cfg, ctx.run, ctx.cfg.reward
    data = stage_pairs(ctx, rcfg)
    tokenizer, path, rows, device = data.tokenizer, data.path, data.rows, data.device
    model = RewardModel(load_model(run.model_dir("sft")), likelihood=rcfg.likelihood)
    out_dir = run.model_dir("reward")
    trainer = Trainer(model, rcfg, out_dir=out_dir, log_path=run.log_path("reward"), seed=cfg.run.seed,
                      device=device, save_fn=save_reward_model, stage="reward")
    ctx.progress(f"{len(rows.train):,} train / {len(rows.dev):,} dev / {len(rows.test):,} test pairs "
                 f"({split_stats(rows)})")
    batch_fn = row_batch_fn(rows.train, rcfg.batch_size, rcfg.grad_accum, cfg.run.seed, tokenizer.pad_id,
                             trainer.device, collate_fn=collate_pairs)
    loss_fn = make_loss_fn(rcfg.margin, rcfg.center_coef)
    # the kept checkpoint is the one with the lowest loss on the dev pairs; test pairs choose nothing
    eval_fn = mean_pair_loss_fn(rows.dev, loss_fn, collate_pairs, rcfg.batch_size, tokenizer.pad_id, trainer)
    result = trainer.fit(batch_fn, loss_fn, eval_fn, resume=ctx.resume)
    if not trainer.is_main:
        return {}
    best = load_reward_model(out_dir, device=trainer.device)
    test = pair_metrics(best, rows.test, rcfg.batch_size, tokenizer.pad_id, trainer.device, rows.flipped["test"])
    dev = pair_metrics(best, rows.dev, rcfg.batch_size, tokenizer.pad_id, trainer.device, rows.flipped["dev"])
    on_train = pair_metrics(best, rows.train[:len(rows.test) * 2], rcfg.batch_size, tokenizer.pad_id, trainer.device)
    overlap = stage_overlap(run, rows)
    ctx.progress(f"test pair accuracy {test['accuracy']:.1%} (against the truth {test['accuracy_vs_truth']:.1%}, "
                 f"label ceiling {test['label_ceiling']:.1%}; {test['pairs']} pairs), dev {dev['accuracy']:.1%}; "
                 f"{budget_line(result)}")
    n = test["pairs"]
    return {
        "held_out_accuracy": test["accuracy"],
        "held_out_mean_margin": test["mean_margin"],
        "held_out_mean_reward": test["mean_reward"],
        "held_out_pairs": n,
        "held_out_accuracy_vs_truth": test["accuracy_vs_truth"],
        "held_out_flipped_labels": test["flipped_labels"],
        "held_out_label_ceiling": test["label_ceiling"],
        "held_out_split": "test",
        "dev_accuracy": dev["accuracy"],
        "dev_accuracy_vs_truth": dev["accuracy_vs_truth"],
        "dev_pairs": dev["pairs"],
        "figures": {"test_accuracy": proportion(test["correct"], n),
                    "test_accuracy_vs_truth": proportion(test["agree_truth"], n),
                    "test_label_ceiling": proportion(n - test["flipped_labels"], n),
                    "dev_accuracy": proportion(dev["correct"], dev["pairs"])},
        "train_accuracy": on_train["accuracy"],
        "val_loss": round(result.best_val_loss, 4),
        **budget_metrics(result),
        "pairs_per_second": result.items_per_second,
        "data": str(path),
        "pairs": split_stats(rows),
        "overlap": overlap,
    }
