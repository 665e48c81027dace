"""Sampling: how one next token is chosen from a model's logits.

    from lmforge.engine import SamplingParams, next_token_probs, sample_next
    probs = next_token_probs(logits, temperature=0.8, top_k=50, top_p=0.95)   # (B, V) -> (B, V)
    ids = sample_next(logits, temperature=0.8, generator=torch.Generator().manual_seed(0))

Sampling order, as in transformers: divide logits by the temperature, keep the top_k,
then the nucleus (top_p), then drop tokens below min_p times the most likely one's
probability, renormalize, draw. Temperature 0 is greedy (argmax). A draw is one uniform
number from the row's own generator (seeded with the request's seed) pushed through the
row's cumulative distribution, so a seeded request gives the same text alone or batched.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SamplingParams:
    """How one sequence is sampled and when it stops."""
    temperature: float = 0.0
    top_k: int = 0                        # 0 = off
    top_p: float = 1.0                    # 1.0 = off
    min_p: float = 0.0                    # 0.0 = off
    max_tokens: int = 64
    stop_ids: tuple[int, ...] = ()        # ids that end the sequence (left out of the output)
    stop: tuple[str, ...] = ()            # strings that end the sequence (cut from the text)
    seed: int | None = None               # None: torch's global random stream

    def check(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {self.max_tokens}")


# ---------------------------------------------------------------- samplers

def next_token_probs(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0):
    """The distribution the sampler draws from: logits (B, V) -> probabilities (B, V), float32.

    temperature 0 gives all the mass to the argmax. top_k = 0, top_p = 1.0 and min_p = 0 are
    off. top_p keeps the smallest set of most likely tokens whose mass reaches top_p (always
    at least one token); min_p keeps tokens whose probability is at least min_p times the
    most likely token's.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits = logits.float()
    if temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    logits = logits / temperature
    if 0 < top_k < logits.size(-1):
        # keep exactly top_k entries by index (a >= threshold test would keep every tie)
        kept = torch.full_like(logits, float("-inf"))
        values, indices = torch.topk(logits, top_k, dim=-1)
        logits = kept.scatter_(-1, indices, values)
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        # a token is kept while the mass of the more likely tokens has not yet reached top_p;
        # the most likely token is always kept (this also covers top_p == 0)
        keep_sorted = mass_before < top_p
        keep_sorted[..., 0] = True
        keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    if min_p > 0.0:
        # relative to the most likely token, so it is the same before or after renormalizing
        keep = probs >= min_p * probs.max(-1, keepdim=True).values
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample_next(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, generator=None,
                min_p: float = 0.0):
    """One token per row: logits (B, V) -> ids (B,). Reproducible with a seeded torch.Generator."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = next_token_probs(logits, temperature, top_k, top_p, min_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def draw(probs, uniforms):
    """Inverse-CDF sampling: probs (B, V), uniforms (B,) in [0, 1) -> ids (B,).

    One uniform per row lets every row use its own seeded generator while the search
    itself runs batched. `right=True` returns the first id whose cumulative mass exceeds
    u * total, which always has probability > 0.
    """
    cdf = probs.cumsum(-1)
    target = (uniforms.to(cdf) * cdf[:, -1]).unsqueeze(-1)
    ids = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=probs.size(-1) - 1)
    # float rounding can push u * total onto the last cumulative value; fall back to the argmax
    ok = probs.gather(-1, ids[:, None]).squeeze(-1) > 0
    return torch.where(ok, ids, probs.argmax(-1))



def sample_rows(logits, seqs: list) -> list[int]:
    """One id per row of logits (B, V), each with its Sequence's own settings and generator."""
    if all(seq.params.temperature == 0 for seq in seqs):
        return logits.argmax(-1).tolist()   # the common greedy batch, without the grouping
    by_settings: dict[tuple, list[int]] = {}
    for row, seq in enumerate(seqs):
        p = seq.params
        by_settings.setdefault((p.temperature, p.top_k, p.top_p, p.min_p), []).append(row)
    ids = [0] * len(seqs)
    for (temperature, top_k, top_p, min_p), rows in by_settings.items():
        group = logits if len(rows) == len(seqs) else logits[rows]
        if temperature == 0:
            chosen = group.argmax(-1).tolist()
        else:
            probs = next_token_probs(group, temperature, top_k, top_p, min_p)
            uniforms = torch.stack([seqs[r].uniform() for r in rows])
            chosen = draw(probs, uniforms).tolist()
        for row, token in zip(rows, chosen):
            ids[row] = token
    return ids

