"""The reward model: a GPT backbone with a scalar head that scores prompt + answer, and its files.

    from lmforge.evals.reward_model import load_reward_model
    reward_model = load_reward_model(run.model_dir("reward"), device=device).eval()
    scores = reward_model(ids, lengths, answer_mask)          # (B,) float32

It is trained by the reward stage (lmforge/train/reward.py), read by PPO as its reward and
the start of its value model (lmforge/train/ppo.py), and by the alignment evaluation as a
second judge (lmforge/evals/alignment.py); it sits here, below training, so that evaluation
need not import a trainer. models/reward/ holds backbone/ (a GPT in the usual
model.safetensors + config.json form) and head.safetensors; with no model.safetensors of its
own it is never mistaken for a chat model.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..files import atomic_path
from ..checkpoints import load_model, ModelLoadError, save_model
from ..model import GPT
from .likelihood import target_logprobs


class RewardModel(nn.Module):
    """A GPT backbone and a scalar head on the last real token's hidden state, plus (with
    `likelihood`) a learned mix of how likely the backbone's own LM finds the answer.

    The likelihood features are the mean and the minimum log-probability of the answer's
    tokens under the backbone's LM head and, with `pooled`, an attention-weighted mean of
    them: a linear gate on the hidden state that predicts each token decides how much that
    token counts (softmax over the answer). The SFT model already knows most facts, so a
    made-up or wrong fact shows as an unlikely token, and the mean alone, untrained, ranks
    held-out pairs like the annotator's truth more often than a head trained on the last hidden
    state does (figures in docs/LOG.md, benchmarks/preference_ceilings.py). But a plain mean dilutes the
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
    logp = target_logprobs(backbone.lm_head(hidden[:, :-1]), ids[:, 1:])
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
