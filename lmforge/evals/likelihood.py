"""How likely a model finds given text: the log-probability of answer tokens, of a continuation
after its context, and the mean loss and bits per byte over windows of a token stream.

    from lmforge.evals.likelihood import answer_logprob_sums, continuation_logprobs, window_eval_fn
    continuation_logprobs(model, [(context_ids, choice_ids)], batch_size=16)      # [sum log p]
    window_eval_fn(val_tokens, windows=64, batch_size=8, seq_len=256, device=device)(model)   # {"loss", "bpb"}

One mechanism, once: every log-likelihood the evaluations and the preference stages read
(multiple choice, DPO's sequence log-likelihoods, the KL to SFT, the reward model's
likelihood features) gathers the target tokens' log-softmax through `target_logprobs`, and
pretraining validates (and `lmforge eval` measures bits per byte) through `window_eval_fn`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..device import all_reduce_sums
from ..engine import fast_path
from ..errors import StageError


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at every position: the log-softmax of the logits, in float32, gathered at
    the target ids. logits (..., V), targets (...) -> (...)."""
    return F.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)


def answer_logprob_sums(model, ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Sum of log p(answer token) per row of right-padded prompt + answer ids, the answer's
    tokens marked in loss_mask: the sequence log-likelihood DPO compares (with gradients)."""
    logp = target_logprobs(model(ids[:, :-1]), ids[:, 1:])
    return (logp * loss_mask[:, 1:]).sum(-1)


def continuation_logprobs(model, requests: list[tuple[list[int], list[int]]], batch_size: int,
                          pad_id: int = 0) -> list[float]:
    """For each (context ids, continuation ids): the sum of log p(continuation token | all
    before it). Batched and right-padded; a request longer than the model's context keeps its
    last seq_len + 1 tokens (a continuation longer than seq_len is scored on its last seq_len)."""
    seq_len = model.cfg.seq_len
    device = next(model.parameters()).device
    out = [0.0] * len(requests)
    # longest first, so each batch pads little and the first batch shows the peak memory
    order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][0]) + len(requests[i][1])))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        rows, spans = [], []
        for i in chunk:
            context, cont = requests[i]
            if not cont:
                raise ValueError("an empty continuation cannot be scored")
            tokens = (list(context) + list(cont))[-(seq_len + 1):]
            n_cont = min(len(cont), len(tokens) - 1)
            rows.append(tokens)
            spans.append(n_cont)
        width = max(len(r) for r in rows) - 1
        x = torch.full((len(rows), width), pad_id, dtype=torch.long)
        y = torch.full((len(rows), width), -100, dtype=torch.long)
        for r, tokens in enumerate(rows):
            x[r, :len(tokens) - 1] = torch.tensor(tokens[:-1])
            y[r, :len(tokens) - 1] = torch.tensor(tokens[1:])
        with torch.no_grad(), fast_path(model):
            picked = target_logprobs(model(x.to(device)), y.clamp(min=0).to(device)).cpu()
        for r, (i, tokens) in enumerate(zip(chunk, rows)):
            end = len(tokens) - 1
            out[i] = float(picked[r, end - spans[r]:end].double().sum())
    return out



# ---------------------------------------------------------------- windows of a token stream

def windows_to_batch(tokens: np.ndarray, offsets: np.ndarray, seq_len: int, device) -> dict:
    rows = np.stack([tokens[o:o + seq_len + 1] for o in offsets]).astype(np.int64)
    data = torch.from_numpy(rows)
    x, y = data[:, :-1], data[:, 1:]
    if device.type == "cuda":
        x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    else:
        x, y = x.to(device), y.to(device)
    return {"x": x, "y": y, "n_items": x.numel()}


def bits_per_byte(loss_nats: float, n_bytes: int) -> float:
    """Summed next-token loss in nats over the text's UTF-8 byte count, in bits."""
    return loss_nats / (max(n_bytes, 1) * math.log(2))


def window_losses(model, batch: dict, byte_lengths: torch.Tensor | None) -> tuple[float, int, float, int]:
    """(loss summed over every target, targets, loss summed over targets that are text,
    their bytes). Special tokens (<|bos|> between documents) stand for no bytes, so they
    count in the token loss but not in bits per byte."""
    logits = model(batch["x"])
    losses = F.cross_entropy(logits.view(-1, logits.size(-1)), batch["y"].reshape(-1), reduction="none")
    total = float(losses.sum())
    if byte_lengths is None:
        return total, losses.numel(), 0.0, 0
    nbytes = byte_lengths[batch["y"].reshape(-1)]
    text = nbytes > 0
    return total, losses.numel(), float(losses[text].sum()), int(nbytes.sum())


def window_eval_fn(tokens: np.ndarray, windows: int, batch_size: int, seq_len: int, device,
                 rank: int = 0, world_size: int = 1, byte_lengths: np.ndarray | None = None):
    """Validation on `windows` fixed, evenly spaced windows (the same every eval and however
    many processes share the work: each takes a slice, then sums): {"loss": mean nats per
    token, "bpb": bits per byte} (bpb only when byte_lengths, bytes per token id, is given)."""
    high = len(tokens) - seq_len - 1
    if high < 0:
        raise StageError(f"validation split has {len(tokens)} tokens: fewer than seq_len={seq_len}+1")
    offsets = np.linspace(0, high, num=windows).astype(np.int64)[rank::world_size]
    lengths = torch.as_tensor(byte_lengths, device=device) if byte_lengths is not None else None

    def eval_fn(model) -> dict:
        sums = np.zeros(4)
        for i in range(0, len(offsets), batch_size):
            batch = windows_to_batch(tokens, offsets[i:i + batch_size], seq_len, device)
            sums += window_losses(model, batch, lengths)
        total, count, text_loss, n_bytes = all_reduce_sums(*sums)
        result = {"loss": total / count}
        if lengths is not None:
            result["bpb"] = bits_per_byte(text_loss, int(n_bytes))
        return result
    return eval_fn
