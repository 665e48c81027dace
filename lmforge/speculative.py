"""Speculative decoding: a cheap guesser proposes tokens, the target model checks them all at once.

    from lmforge.speculative import speculative_generate, SpeculativeStats
    stats = SpeculativeStats()
    out = speculative_generate(target, prompt_ids, SamplingParams(max_tokens=64), draft=draft_model,
                               num_draft_tokens=4, stats=stats)           # a small draft model
    out = speculative_generate(target, prompt_ids, params, stats=stats)   # n-gram prompt lookup
    vocab = DraftVocabulary(draft_model, frequent_tokens(train_tokens, vocab_size))
    out = speculative_generate(target, prompt_ids, params, draft=draft_model, draft_vocab=vocab)
    stats.acceptance_rate, stats.tokens_per_target_forward

Each round the proposer guesses k tokens d1..dk with distributions q1..qk (the draft
model's, or one-hot for prompt lookup), then the target runs once over
[last, d1..dk] and gives p1..p(k+1). Draft token di is accepted with probability
min(1, pi(di) / qi(di)); at the first rejection the token is drawn instead from the
normalized max(0, pi - qi) and the round ends; when all k are accepted one bonus token
is drawn from p(k+1). This rule makes every emitted token distributed exactly as the
target's own sampler would (Leviathan et al. 2023; Chen et al. 2023). Temperature,
top-k, top-p and min-p shape p and q the same way (engine.next_token_probs), so the
guarantee holds for the processed distribution. At temperature 0 both are one-hot:
a guess is kept iff it is the target's argmax, so the output is greedy decoding exactly.

A draft may propose from its most frequent tokens only (DraftVocabulary): its LM head
shrinks, which is what a one-layer draft's step time is made of; the output stays exact.

Prompt lookup (no draft model): find the most recent earlier occurrence of the last n
tokens (n = max_ngram down to 1) in prompt + output and propose the tokens that followed
it. Repetitive text (quoting the prompt, lists, code) is accepted cheaply; with no match
the round is a plain one-token decode.

One sequence at a time: speculation trades extra compute for latency, which matters for
a single interactive stream; the batched server engine decodes without it. A draft model
must share the target's tokenizer: `lmforge draft prepare|distill` (lmforge/draft.py) makes
and trains one next to a target run.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .engine import (Generation, SamplingParams, Sequence, StreamEvent, drain_events, fast_path, make_cache,
                     next_token_probs)


# stop a round's drafting after a guess the draft gives less than this probability (see
# _greedy_guesses); chosen with benchmarks/decode.py --draft-confidence (docs/LOG.md)
DRAFT_CONFIDENCE = 0.4


@dataclass
class SpeculativeStats:
    rounds: int = 0
    proposed: int = 0          # draft tokens offered to the target
    accepted: int = 0          # of those, kept
    emitted: int = 0           # tokens produced (accepted + one resampled or bonus per round)
    target_forwards: int = 0
    draft_forwards: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_forward(self) -> float:
        return self.emitted / self.target_forwards if self.target_forwards else 0.0


def _uniform(generator) -> float:
    return float(torch.rand((), generator=generator))


def _pick(probs, greedy: bool, generator) -> int:
    if greedy:
        return int(probs.argmax())
    return int(torch.multinomial(probs, 1, generator=generator))


def verify(p, q, draft_tokens: list[int], greedy: bool = False, generator=None) -> tuple[int, int]:
    """The acceptance rule. p: (k+1, V) target probabilities, q: (k, V) proposal probabilities.

    Returns (how many draft tokens are accepted, the token that follows them): the
    resampled token at the first rejection, or the bonus token from p[k] when all pass.
    """
    for i, token in enumerate(draft_tokens):
        p_x, q_x = float(p[i, token]), float(q[i, token])
        # at temperature 0 the ratio is 0 or 1 and no random number is needed
        if (p_x >= q_x) if greedy else (_uniform(generator) * q_x < p_x):
            continue
        residual = (p[i] - q[i]).clamp(min=0)
        total = float(residual.sum())
        # a rejection implies p_x < q_x, so p has mass elsewhere; guard against rounding anyway
        residual = residual / total if total > 0 else p[i]
        return i, _pick(residual, greedy, generator)
    return len(draft_tokens), _pick(p[len(draft_tokens)], greedy, generator)


def lookup_proposal(tokens: list[int], num_tokens: int, max_ngram: int = 3) -> list[int]:
    """Tokens that followed the latest earlier occurrence of the longest matching tail n-gram."""
    for n in range(min(max_ngram, len(tokens) - 1), 0, -1):
        tail = tokens[-n:]
        # search backwards: the most recent match best predicts what comes next
        for start in range(len(tokens) - n - 1, -1, -1):
            if tokens[start:start + n] == tail:
                follow = tokens[start + n:start + n + num_tokens]
                if follow:
                    return follow
    return []


class DraftVocabulary:
    """The tokens a draft may propose, and its LM head cut down to them.

    A one-layer draft's step is bound by moving its weights, and with a full vocabulary its
    LM head is most of them. Proposing only the tokens that make up 99.9% of the training
    text about halves the head, can keep the whole step in the CPU's L2 cache, and keeps
    every guess that was ever likely to be accepted (figures in docs/LOG.md). The output is
    unchanged: a guess outside the list is
    just never made, and at temperature > 0 the draft's distribution q is zero outside it,
    which the acceptance rule handles exactly like any other q.

    The head is a copy of the draft's weights when this is made: make it after training.
    """

    def __init__(self, draft, token_ids):
        ids = torch.as_tensor(token_ids, dtype=torch.long).unique()   # sorted, without repeats
        vocab_size = draft.cfg.vocab_size
        if ids.numel() == 0 or int(ids[0]) < 0 or int(ids[-1]) >= vocab_size:
            raise ValueError(f"a draft vocabulary needs token ids in [0, {vocab_size}), got {ids.numel()} ids")
        weight = draft.lm_head.weight
        self.vocab_size = vocab_size
        self.ids = ids.to(weight.device)
        with torch.no_grad():
            self.head = weight.detach()[self.ids].contiguous()

    def __len__(self) -> int:
        return self.ids.numel()


def frequent_tokens(tokens: np.ndarray, vocab_size: int, coverage: float = 0.999) -> torch.Tensor:
    """The fewest most frequent token ids that together make up `coverage` of `tokens`, sorted."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    order = np.argsort(-counts, kind="stable")
    covered = np.cumsum(counts[order]) / max(1, counts.sum())
    n = int(np.searchsorted(covered, coverage - 1e-12)) + 1
    return torch.from_numpy(np.sort(order[:min(n, vocab_size)]))


def _draft_logits(draft, vocab: DraftVocabulary | None, hidden):
    """The draft's logits for hidden (..., d_model): over the whole vocabulary, or over `vocab`'s
    tokens only (then index i stands for token vocab.ids[i])."""
    if vocab is None:
        return draft.logits(hidden)
    return F.linear(hidden, vocab.head).float()


def _greedy_guesses(draft, cache, tokens: list[int], n: int, device, min_confidence: float = 0.0,
                    vocab: DraftVocabulary | None = None) -> list[int]:
    """Up to n greedy draft tokens, one draft forward each; the first also catches the draft up
    on the tokens it has not seen (the last one or two). Each guess stays a (1, 1) tensor that
    is fed straight back, and the logits are computed for the last position only: a draft
    step is a handful of small ops, so every op and every host round trip saved shows.

    With min_confidence > 0, drafting stops after a guess to which the draft itself gives less
    than that probability: the guesses after an unsure one are rarely accepted, so their
    draft forwards are mostly wasted (one host read per guess, which is nothing on a CPU)."""
    ids = torch.tensor([tokens[cache.pos:]], dtype=torch.long, device=device)
    out = []
    for _ in range(n):
        hidden = draft(ids, cache=cache, return_hidden=True)
        logits = _draft_logits(draft, vocab, hidden[:, -1:])
        if min_confidence <= 0:
            best = logits.argmax(-1)
            ids = best if vocab is None else vocab.ids[best]
            out.append(ids)
            continue
        # the guess and its probability from one softmax and one max
        confidence, best = torch.softmax(logits, -1).max(-1)
        ids = best if vocab is None else vocab.ids[best]
        out.append(ids)
        if float(confidence) < min_confidence:
            break
    return torch.cat(out, dim=1)[0].tolist()


def speculative_generate(target, prompt: list[int], params: SamplingParams, draft=None,
                         num_draft_tokens: int = 4, max_ngram: int = 3, tokenizer=None,
                         stats: SpeculativeStats | None = None, cancel=None,
                         min_draft_confidence: float = DRAFT_CONFIDENCE,
                         draft_vocab: DraftVocabulary | None = None) -> Generation:
    """Continue one prompt exactly as `generate` would in distribution (and token for token
    at temperature 0), proposing with `draft` (a smaller GPT with the same tokenizer) or,
    when draft is None, with n-gram prompt lookup. A round's drafting stops early after a
    guess the draft gives less than min_draft_confidence (0 = always num_draft_tokens);
    with draft_vocab the draft proposes only those tokens (DraftVocabulary). Both change
    the speed only, never the output."""
    seq = Sequence(prompt, params, tokenizer, cancel=cancel)
    for _ in _rounds(target, seq, draft, num_draft_tokens, max_ngram, stats, min_draft_confidence, draft_vocab):
        pass
    return seq.result()


def speculative_stream(target, tokenizer, prompt: list[int], params: SamplingParams,
                       cancel: threading.Event | None = None, draft=None, num_draft_tokens: int = 4,
                       max_ngram: int = 3, stats: SpeculativeStats | None = None,
                       min_draft_confidence: float = DRAFT_CONFIDENCE,
                       draft_vocab: DraftVocabulary | None = None) -> Iterator[StreamEvent]:
    """engine.stream with speculative decoding (the options are speculative_generate's):
    StreamEvents as each round's tokens are confirmed, the last with finish_reason. Runs in
    the caller's thread; closing the generator early (break, Ctrl-C) cancels it."""
    events: deque[StreamEvent] = deque()
    seq = Sequence(prompt, params, tokenizer, on_event=events.append, cancel=cancel)
    rounds = _rounds(target, seq, draft, num_draft_tokens, max_ngram, stats, min_draft_confidence, draft_vocab)
    return drain_events(rounds, events, seq)


def _probs(logits, params: SamplingParams):
    return next_token_probs(logits, params.temperature, params.top_k, params.top_p, params.min_p)


class _Proposer:
    """A round's guesses: from the draft model (greedy or sampled), or by prompt lookup."""

    def __init__(self, draft, draft_vocab, cache, params: SamplingParams, generator, max_ngram: int,
                 min_confidence: float, stats: SpeculativeStats, device):
        self.draft, self.vocab, self.cache = draft, draft_vocab, cache
        self.params, self.generator, self.max_ngram = params, generator, max_ngram
        self.min_confidence, self.stats, self.device = min_confidence, stats, device

    def propose(self, tokens: list[int], n: int) -> tuple[list[int], list]:
        """(up to n guesses, their proposal distributions q: one row each when sampled from the
        draft, [] for greedy or lookup guesses, whose q is one-hot)."""
        if n <= 0:
            return [], []
        if self.draft is None:
            return lookup_proposal(tokens, n, self.max_ngram), []
        if self.params.temperature == 0:
            guesses = _greedy_guesses(self.draft, self.cache, tokens, n, self.device, self.min_confidence,
                                      self.vocab)
            self.stats.draft_forwards += len(guesses)
            return guesses, []
        return self._sampled(tokens, n)

    def _logits(self, ids: list[int]):
        """The sampled path's draft step: logits for the last position only."""
        hidden = self.draft(torch.tensor([ids], dtype=torch.long, device=self.device), cache=self.cache,
                            return_hidden=True)
        self.stats.draft_forwards += 1
        return _draft_logits(self.draft, self.vocab, hidden[0, -1:])

    def _sampled(self, tokens: list[int], n: int) -> tuple[list[int], list]:
        guesses, q_rows = [], []
        # the draft catches up on whatever it has not seen (the last one or two tokens)
        logits = self._logits(tokens[self.cache.pos:])
        for i in range(n):
            q = _probs(logits, self.params)[0]
            pick = _pick(q, False, self.generator)
            if self.vocab is not None:
                # back to token ids: q over the whole vocabulary, zero off the draft's list
                pick = int(self.vocab.ids[pick])
                full = torch.zeros(self.vocab.vocab_size, dtype=q.dtype, device=q.device)
                q = full.index_copy_(0, self.vocab.ids, q)
            q_rows.append(q)
            guesses.append(pick)
            if float(q.max()) < self.min_confidence:
                break   # an unsure draft: the guesses after this one would rarely be kept
            if i + 1 < n:
                logits = self._logits([pick])
        return guesses, q_rows


def _check(logits, guesses: list[int], q_rows: list, params: SamplingParams, generator) -> tuple[int, int]:
    """(accepted guesses, the token after them) from the target's logits over [last] + guesses."""
    if params.temperature == 0:
        # verify() with one-hot p and q: keep guesses while they equal the target's argmax
        best = logits.argmax(-1).tolist()
        accepted = 0
        while accepted < len(guesses) and guesses[accepted] == best[accepted]:
            accepted += 1
        return accepted, best[accepted]
    p = _probs(logits, params)
    if q_rows:
        q = torch.stack(q_rows)
    else:
        # a lookup guess is certain: its proposal distribution is one-hot
        q = torch.zeros(len(guesses), p.size(-1))
        if guesses:
            q[torch.arange(len(guesses)), torch.tensor(guesses)] = 1.0
    return verify(p, q, guesses, False, generator)


@torch.inference_mode()
def _rounds(target, seq: Sequence, draft, num_draft_tokens: int, max_ngram: int, stats: SpeculativeStats | None,
            min_draft_confidence: float, draft_vocab: DraftVocabulary | None) -> Iterator[None]:
    """Continue seq round by round (see speculative_generate), yielding after each round."""
    params = seq.params
    params.check()
    if draft_vocab is not None and (draft is None or draft_vocab.vocab_size != draft.cfg.vocab_size):
        raise ValueError("draft_vocab was made for another draft model")
    stats = stats if stats is not None else SpeculativeStats()
    seq.fit_context(target.cfg.seq_len)
    k = max(1, num_draft_tokens)
    # room for the prompt, the output, and one round of guesses past the end
    max_len = len(seq.prompt) + seq.budget + k + 1
    target_cache = make_cache(target, 1, max_len)
    draft_cache = make_cache(draft, 1, max_len) if draft is not None else None
    device = target.embed.weight.device
    proposer = _Proposer(draft, draft_vocab, draft_cache, params, seq.generator, max_ngram, min_draft_confidence,
                         stats, device)
    tokens = list(seq.prompt)     # prompt + output so far; the last one is not yet in the target cache

    if seq.budget == 0:
        seq.finish("length")
        return
    # prefill: everything but the last prompt token, whose logits the first round computes
    if len(tokens) > 1:
        with fast_path(target, draft):
            for model, cache in ((target, target_cache), (draft, draft_cache)):
                if model is not None:
                    model(torch.tensor([tokens[:-1]], device=device), cache=cache, return_hidden=True)
        stats.target_forwards += 1
        stats.draft_forwards += draft is not None

    while not seq.done:
        if seq.cancel.is_set():
            seq.finish("cancelled")
            break
        before = len(tokens)
        with fast_path(target, draft):   # one round at a time, never across a yield
            # never guess past the output budget: the target cache has room for exactly that
            guesses, q_rows = proposer.propose(tokens, min(k, seq.remaining - 1))
            logits = target(torch.tensor([[tokens[-1]] + guesses], dtype=torch.long, device=device),
                            cache=target_cache)[0]
        stats.target_forwards += 1
        accepted, next_token = _check(logits, guesses, q_rows, params, seq.generator)
        stats.rounds += 1
        stats.proposed += len(guesses)
        stats.accepted += accepted
        # keep the cache entries of the last confirmed token and the accepted guesses only
        target_cache.pos = before + accepted
        if draft_cache is not None:
            draft_cache.pos = min(draft_cache.pos, before + accepted)
        for token in guesses[:accepted] + [next_token]:
            stats.emitted += 1
            tokens.append(token)
            if not seq.add(token):
                break
        yield
