"""The optimizers and the learning-rate schedule of the one training loop (train/loop.py).

    optimizers = build_optimizers(model, cfg.pretrain, device)      # Muon + AdamW, or AdamW alone
    for group in opt.param_groups: group["lr"] = group["base_lr"] * lr_multiplier(step, cfg.pretrain, total)

Muon (`muon.py`, orthogonalizing in the precision `lmforge.device` chose) trains the 2-D hidden
matrices; AdamW (fused on CUDA) the embeddings, output heads and norms. The schedule is a
linear warmup, then cosine or warmup-stable-decay.
"""
from __future__ import annotations

import math

import torch

from ..config import TrainConfig
from .muon import Muon

# Parameters of these modules are the model's input/output maps, not hidden matrices.
IO_PARAM_PARTS = {"embed", "lm_head", "value_head", "score_head"}


def build_optimizers(model: torch.nn.Module, tc: TrainConfig, device: torch.device,
                     ns_dtype: torch.dtype = torch.bfloat16) -> list[torch.optim.Optimizer]:
    """Muon for 2-D hidden weights (attention and MLP matrices); AdamW for embeddings,
    the output head and norms, where Muon's orthogonalized updates are not meant to go.

    A model may carry `lr_scale`, {first part of a parameter name: multiplier}, for a few
    small new parameters that must travel much further than the fine-tuned backbone's
    (the reward model's likelihood mix: Adam moves a weight by about lr per step).
    ns_dtype is the dtype Muon orthogonalizes in (Trainer passes its Precision's)."""
    scales = getattr(model, "lr_scale", {})
    matrices, others = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        parts = name.split(".")
        is_io = any(part in IO_PARAM_PARTS for part in parts)
        if tc.optimizer == "muon" and param.ndim == 2 and not is_io and parts[0] not in scales:
            matrices.append(param)
        else:
            others.append((parts[0], param))
    fused = device.type == "cuda"
    groups = []
    for scale in sorted({scales.get(part, 1.0) for part, _ in others}):
        mine = [p for part, p in others if scales.get(part, 1.0) == scale]
        groups += [{"params": [p for p in mine if p.ndim >= 2], "weight_decay": tc.weight_decay, "lr": tc.lr * scale},
                   {"params": [p for p in mine if p.ndim < 2], "weight_decay": 0.0, "lr": tc.lr * scale}]
    groups = [g for g in groups if g["params"]]
    optimizers: list[torch.optim.Optimizer] = []
    if groups:
        optimizers.append(torch.optim.AdamW(groups, lr=tc.lr, betas=(tc.beta1, tc.beta2), fused=fused))
    if matrices:
        optimizers.append(Muon(matrices, lr=tc.matrix_lr, weight_decay=tc.weight_decay, ns_dtype=ns_dtype))
    for opt in optimizers:
        for group in opt.param_groups:
            group["base_lr"] = group["lr"]
    return optimizers


def lr_multiplier(step: int, tc: TrainConfig, total_steps: int, time_fraction: float = 0.0) -> float:
    """Linear warmup, then cosine or warmup-stable-decay (WSD) down to min_lr_ratio.

    Progress is whichever budget is further along: steps (step / total_steps) or wall
    time (time_fraction of max_minutes), so a run stopped by its time budget still ends
    with its learning rate decayed instead of being cut off at the peak.
    """
    if tc.warmup_steps and step < tc.warmup_steps:
        return (step + 1) / tc.warmup_steps
    if tc.schedule == "constant":
        return 1.0
    floor = tc.min_lr_ratio
    if tc.schedule == "cosine":
        span = max(1, total_steps - tc.warmup_steps)
        progress = min(1.0, max((step - tc.warmup_steps) / span, time_fraction))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    progress = min(1.0, max(step / max(1, total_steps), time_fraction))
    decay_start = 1.0 - tc.decay_fraction
    if progress < decay_start or tc.decay_fraction == 0:
        return 1.0
    return floor + (1 - floor) * max(0.0, (1 - progress) / tc.decay_fraction)
