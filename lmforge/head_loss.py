"""The LM head and the next-token cross-entropy as one chunked autograd function.

    loss_sum, count = head_cross_entropy(hidden, weight, targets)   # hidden (N, d), weight (V, d)

A training step's largest non-matmul cost on a CPU was the loss over the vocabulary: the
head's (N, V) logits copied to float32, log_softmax, then in the backward a zero-filled
(N, V) gradient, a scatter and log_softmax's backward, each a pass over tens of MB that does
not fit a cache. Here the rows go through in chunks: each chunk's logits are made, turned into
its loss and, when gradients are wanted, straight into the gradients of the hidden states and
the head (softmax minus one-hot, times the weight / the hidden states), all while the chunk is
in cache. The backward pass only scales those stored gradients by the incoming gradient, which
is correct because the loss sum is the end of the graph up to a scalar factor. Nothing of size
(N, V) outlives a chunk.

Same math as F.cross_entropy(hidden @ weight.T, targets, ignore_index=-100, reduction="sum"),
with the matmuls in the autocast dtype when autocast is on (as nn.Linear would be) and the
softmax in float32 (tests/test_model.py compares both). GPT.forward uses it for training losses
unless torch.compile is tracing: inductor fuses the plain path itself.
"""
from __future__ import annotations

import torch

CHUNK_ROWS = 1024     # (1024, V) float32 logits: 12 MB at V = 2,924 (tiny), 200 MB at 50k (gpt2)


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return hidden.dtype


class _HeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, dtype, with_grad: bool):
        # the casts are explicit, so autocast must not add its own (nor run the softmax in bf16)
        with torch.autocast(hidden.device.type, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden) if with_grad else None
            grad_w = torch.zeros_like(weight, dtype=torch.float32) if with_grad else None
            for start in range(0, hidden.shape[0], CHUNK_ROWS):
                rows = slice(start, start + CHUNK_ROWS)
                logits = (h[rows] @ w.T).float()
                target = targets[rows]
                valid = target != -100
                safe = torch.where(valid, target, torch.zeros_like(target))
                lse = torch.logsumexp(logits, dim=-1)
                picked = logits.gather(1, safe[:, None]).squeeze(1)
                loss += torch.where(valid, lse - picked, torch.zeros_like(lse)).sum()
                if not with_grad:
                    continue
                # d(loss)/d(logits) = softmax - one_hot(target), zero on ignored rows
                probs = logits.sub_(lse[:, None]).exp_()
                probs.scatter_add_(1, safe[:, None], torch.full_like(picked[:, None], -1.0))
                probs.mul_(valid[:, None])
                grad_logits = probs.to(dtype)
                grad_h[rows] = grad_logits @ w
                if dtype == torch.float32:
                    grad_w.addmm_(grad_logits.T, h[rows])
                else:
                    grad_w += (grad_logits.T @ h[rows]).float()
        if with_grad:
            ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_loss.to(grad_h.dtype), grad_w * grad_loss.to(grad_w.dtype), None, None, None


def head_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of hidden @ weight.T against targets (-100 = ignored), float32.
    hidden (..., d), weight (V, d), targets (...)."""
    flat_h, flat_t = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    with_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _HeadCrossEntropy.apply(flat_h, weight, flat_t, _compute_dtype(hidden), with_grad)
