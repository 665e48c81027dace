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

models/reward/ holds backbone/ (a GPT in the usual model.safetensors + config.json
form) and head.safetensors; with no model.safetensors of its own it is never mistaken
for a chat model.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_model, save_model
from ..engine import fast_path
from ..model import GPT
from ..run import StageContext
from .loop import Trainer, budget_line, budget_metrics
from .pairs import collate_pairs, mean_pair_loss_fn, split_stats, stage_overlap, stage_pairs
from .sft import make_batch_fn


class RewardModel(nn.Module):
    """A GPT backbone and a scalar head on the last real token's hidden state, plus (with
    `likelihood`) a learned mix of how likely the backbone's own LM finds the answer.

    The likelihood features are the mean and the minimum log-probability of the answer's
    tokens under the backbone's LM head and, with `pooled`, an attention-weighted mean of
    them: a linear gate on the hidden state that predicts each token decides how much that
    token counts (softmax over the answer). The SFT model already knows most facts, so a
    made-up or wrong fact shows as an unlikely token; on a tiny run the mean alone, untrained,
    ranked 86% of held-out pairs like the annotator's truth, where a head trained on the last
    hidden state reached 75% (benchmarks/preference_ceilings.py). But a plain mean dilutes the
    one fact token among filler, and the minimum falls with every extra token, so both rank a
    long right answer below a short wrong one; the gate learns which positions carry the
    answer. The mix starts at the pooled feature with a zero gate (= the mean), so training
    starts from the mean's ranking and the head adds what likelihood misses (rambling,
    curtness).
    """

    def __init__(self, backbone: GPT, likelihood: bool = False, pooled: bool | None = None):
        super().__init__()
        self.backbone = backbone
        self.cfg = backbone.cfg
        self.head = nn.Linear(backbone.cfg.d_model, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        pooled = likelihood if pooled is None else pooled
        self.gate = None
        if likelihood and pooled:
            self.gate = nn.Linear(backbone.cfg.d_model, 1, bias=False)
            nn.init.zeros_(self.gate.weight)
            self.likelihood = nn.Parameter(torch.tensor([0.0, 0.0, 1.0]))
            # the mix and the gate start from nothing and must move far in a few hundred steps
            self.lr_scale = {"likelihood": 30.0, "gate": 30.0}
        else:
            self.likelihood = nn.Parameter(torch.tensor([1.0, 0.0])) if likelihood else None

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, answer_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) right-padded, lengths (B,), answer_mask (B, T) marking the answer's tokens
        (needed with likelihood features) -> rewards (B,), float32."""
        hidden = self.backbone(ids, return_hidden=True)
        last = hidden[torch.arange(ids.size(0), device=ids.device), lengths - 1]
        reward = self.head(last).float().squeeze(-1)
        if self.likelihood is None:
            return reward
        if answer_mask is None:
            raise ValueError("this reward model reads the answer's likelihood: pass answer_mask")
        return reward + answer_likelihood(self.backbone, hidden, ids, answer_mask, self.gate) @ self.likelihood


def answer_likelihood(backbone: GPT, hidden: torch.Tensor, ids: torch.Tensor, answer_mask: torch.Tensor,
                      gate: nn.Module | None = None) -> torch.Tensor:
    """(B, 2), or (B, 3) with a gate: mean and minimum log-probability of each row's answer
    tokens under the backbone's LM head, given the hidden states it already computed (the
    prediction of token t+1 is read at t), then the gate-weighted mean. Rows with no answer
    token get zeros."""
    logp = torch.log_softmax(backbone.lm_head(hidden[:, :-1]).float(), dim=-1)
    logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    mask = answer_mask[:, 1:].bool()
    count = mask.sum(-1)
    empty = count == 0
    mean = torch.where(mask, logp, torch.zeros_like(logp)).sum(-1) / count.clamp(min=1)
    lowest = torch.where(mask, logp, torch.full_like(logp, float("inf"))).min(-1).values
    lowest = torch.where(empty, torch.zeros_like(lowest), lowest)
    if gate is None:
        return torch.stack([mean, lowest], dim=-1)
    scores = gate(hidden[:, :-1]).float().squeeze(-1).masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores.masked_fill(empty[:, None], 0.0), dim=-1)
    pooled = (weights * logp.masked_fill(~mask, 0.0)).sum(-1)
    pooled = torch.where(empty, torch.zeros_like(pooled), pooled)
    return torch.stack([mean, lowest, pooled], dim=-1)


def answer_mask_for(prompt_lengths: list[int], total_lengths: list[int], width: int, device) -> torch.Tensor:
    """(B, width) mask of the answer tokens of right-padded prompt + answer rows."""
    slots = torch.arange(width)
    mask = (slots[None, :] >= torch.tensor(prompt_lengths)[:, None]) & (slots[None, :] < torch.tensor(total_lengths)[:, None])
    return mask.long().to(device)


def _unwrap(model: nn.Module) -> RewardModel:
    while not isinstance(model, RewardModel):
        model = getattr(model, "_orig_mod", None) or getattr(model, "module")
    return model


def save_reward_model(model: nn.Module, directory) -> None:
    from safetensors.torch import save_file

    from ..files import atomic_path
    model, directory = _unwrap(model), Path(directory)
    save_model(model.backbone, directory / "backbone")
    state = {k: v.detach().contiguous().cpu() for k, v in model.head.state_dict().items()}
    if model.likelihood is not None:
        state["likelihood"] = model.likelihood.detach().contiguous().cpu()
    if model.gate is not None:
        state["gate.weight"] = model.gate.weight.detach().contiguous().cpu()
    with atomic_path(directory / "head.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})


def load_reward_model(directory, device="cpu") -> RewardModel:
    from safetensors.torch import load_file

    from ..checkpoints import ModelLoadError
    directory = Path(directory)
    head_path = directory / "head.safetensors"
    if not head_path.is_file():
        raise ModelLoadError(f"{head_path}: missing; run `lmforge reward` first")
    backbone = load_model(directory / "backbone")
    try:
        state = load_file(str(head_path))
        likelihood = state.pop("likelihood", None)   # absent: a head without likelihood features
        gate = state.pop("gate.weight", None)        # absent: mean and min only (older heads)
        model = RewardModel(backbone, likelihood=likelihood is not None, pooled=gate is not None)
        model.head.load_state_dict(state)
        if likelihood is not None:
            model.likelihood.data.copy_(likelihood)
        if gate is not None:
            model.gate.weight.data.copy_(gate)
    except Exception as err:  # noqa: BLE001 - any failure means the file is unusable
        raise ModelLoadError(f"{head_path}: not a valid reward head ({str(err).splitlines()[0][:160]})") from None
    return model.to(device)


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
    from ..evals.stats import proportion
    cfg, run, rcfg = ctx.cfg, ctx.run, ctx.cfg.reward
    data = stage_pairs(ctx, rcfg)
    tokenizer, path, rows, device = data.tokenizer, data.path, data.rows, data.device
    model = RewardModel(load_model(run.model_dir("sft")), likelihood=rcfg.likelihood)
    out_dir = run.model_dir("reward")
    trainer = Trainer(model, rcfg, out_dir=out_dir, log_path=run.log_path("reward"), seed=cfg.run.seed,
                      device=device, save_fn=save_reward_model, stage="reward")
    ctx.progress(f"{len(rows.train):,} train / {len(rows.dev):,} dev / {len(rows.test):,} test pairs "
                 f"({split_stats(rows)})")
    batch_fn = make_batch_fn(rows.train, rcfg.batch_size, rcfg.grad_accum, cfg.run.seed, tokenizer.pad_id,
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
