"""Muon: momentum, then Newton-Schulz orthogonalization of each hidden matrix's update, in a
dtype the caller chooses.

    opt = Muon(matrices, lr=0.02, ns_dtype=torch.float32)   # lmforge.device.train_precision picks it

The update rule is torch.optim.Muon's (Nesterov momentum 0.95, five quintic Newton-Schulz
steps with the (3.4445, -4.7750, 2.0315) coefficients, decoupled weight decay, the "original"
sqrt(max(1, rows / cols)) learning-rate scale), and with ns_dtype=bfloat16 it matches torch's
to bf16 rounding (tests/test_muon.py). Two things differ, and they are why this file exists:

* torch.optim.Muon always orthogonalizes in bfloat16. On a CPU without native bf16 (AVX2
  only) that is emulated and several times slower than float32 (docs/LOG.md has the
  measurement). Here the dtype is a parameter, float32 where bf16 is slow.
* Matrices of one shape are orthogonalized together as one batch (tall ones transposed to
  wide first, as the iteration wants rows <= columns), so the five steps are a few batched
  matmuls per shape instead of three calls per matrix: fewer, larger kernels, and no Python
  loop over the 28 matrices of a tiny model.

The state is the same "momentum_buffer" per parameter that torch's Muon keeps.

Under FSDP2 (`train.parallel=fsdp`) each parameter is a DTensor holding a block of rows on
each rank. Newton-Schulz on a block of rows is a different (wrong) function of the matrix, so
the momentum stays sharded (it is elementwise) but each update is gathered whole (one
all-gather per matrix shape, `gather_whole`) before it is orthogonalized, and every rank then
keeps its own rows of the result. Every rank orthogonalizes every matrix: redundant work, but no extra
communication beyond the gather, and the update is the one a single process computes
(tests/test_fsdp.py).
"""
from __future__ import annotations

import math
from collections import defaultdict

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
EPS = 1e-7


def newton_schulz(updates: torch.Tensor, steps: int = NS_STEPS, eps: float = EPS,
                  dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Approximately orthogonalize each matrix of a (n, rows, cols) batch with rows <= cols:
    scaled to unit Frobenius norm (so the spectral norm is at most 1), then `steps` quintic
    iterations X <- aX + (bA + cA^2)X with A = XX^T. Returns dtype."""
    a, b, c = NS_COEFFICIENTS
    x = updates.to(dtype)
    norms = torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)
    x = x / norms.clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.baddbmm(x, poly, x, beta=a)
    return x


def is_dtensor(t: torch.Tensor) -> bool:
    return type(t).__name__ == "DTensor"    # no torch.distributed import on the common path


def local_rows(full: torch.Tensor, like) -> torch.Tensor:
    """The part of a whole (unsharded) tensor that DTensor `like` holds on this rank: a
    replicated DTensor redistributed to like's placements, which is a local slice, no
    communication."""
    from torch.distributed.tensor import DTensor, Replicate
    whole = DTensor.from_local(full, like.device_mesh, [Replicate()] * like.device_mesh.ndim, run_check=False)
    return whole.redistribute(like.device_mesh, like.placements).to_local()


def gather_whole(updates: list[torch.Tensor]) -> list[torch.Tensor]:
    """Plain tensors as they are; DTensors (FSDP2's row shards) of one shape stacked and
    all-gathered together, one collective per shape."""
    if not updates or not is_dtensor(updates[0]):
        return updates
    from torch.distributed.tensor import DTensor, Shard
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for i, u in enumerate(updates):
        by_shape[tuple(u.shape)].append(i)
    whole: list = [None] * len(updates)
    for shape, indices in by_shape.items():
        first = updates[indices[0]]
        # the stack adds a leading dimension: each Shard(d) becomes Shard(d + 1)
        placements = [Shard(pl.dim + 1) if isinstance(pl, Shard) else pl for pl in first.placements]
        local = torch.stack([updates[i].to_local() for i in indices])
        size = (len(indices), *shape)
        stacked = DTensor.from_local(local, first.device_mesh, placements, run_check=False, shape=size,
                                     stride=torch.empty(size, device="meta").stride())
        for i, full in zip(indices, stacked.full_tensor()):
            whole[i] = full
    return whole


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters; ns_dtype is the dtype of the Newton-Schulz iteration."""

    def __init__(self, params, lr: float = 0.02, weight_decay: float = 0.0, momentum: float = 0.95,
                 nesterov: bool = True, ns_steps: int = NS_STEPS, eps: float = EPS,
                 ns_dtype: torch.dtype = torch.bfloat16):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"Muon: lr, momentum and weight_decay must be >= 0 (got {lr}, {momentum}, {weight_decay})")
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
                    "ns_steps": ns_steps, "eps": eps}
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon takes 2-D parameters only, got shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            # (rows, cols) of the wide orientation -> [(param, update, transposed)]
            by_shape: dict[tuple[int, int], list] = defaultdict(list)
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad)
                buf = state["momentum_buffer"]
                buf.lerp_(grad, 1 - momentum)
                update = grad.lerp(buf, momentum) if group["nesterov"] else buf
                tall = p.shape[0] > p.shape[1]
                by_shape[(p.shape[1], p.shape[0]) if tall else tuple(p.shape)].append((p, update, tall))
            for items in by_shape.values():
                # the whole matrices (one all-gather per shape under FSDP): never a row shard
                whole = gather_whole([u for _, u, _ in items])
                stacked = torch.stack([u.mT if tall else u for u, (_, _, tall) in zip(whole, items)])
                ortho = newton_schulz(stacked, group["ns_steps"], group["eps"], self.ns_dtype)
                for (p, _, tall), o in zip(items, ortho):
                    scale = math.sqrt(max(1.0, p.shape[0] / p.shape[1]))   # the "original" adjustment
                    o = o.mT if tall else o
                    if is_dtensor(p):                 # this rank's rows of the whole update
                        o = local_rows(o, p)
                        p = p.to_local()
                    p.mul_(1 - lr * group["weight_decay"])
                    p.add_(o, alpha=-lr * scale)
        return loss
