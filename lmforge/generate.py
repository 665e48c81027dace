"""Sampling and the generation engine: the one place where token ids come out of a model.

    from lmforge.generate import generate, stream, SamplingParams, Engine, BackgroundEngine
    outs = generate(model, [[bos, 17, 42], [bos, 5]], max_new_tokens=32,
                    temperature=0.8, top_p=0.95, seed=0, stop_ids=[end_id])
    outs[0].tokens, outs[0].finish_reason      # new ids (stop token left out), "stop" | "length"
    for event in stream(model, tokenizer, prompt_ids, SamplingParams(temperature=0.7, stop=["\\n\\n"])):
        print(event.text, end="", flush=True)  # whole characters only; event.finish_reason at the end

Chat, evaluation, the server and the RL rollouts all call this module; speculative
decoding (lmforge/speculative.py) reuses its samplers and its Sequence bookkeeping.

How the engine works. `Engine` owns one preallocated KV cache of max_batch rows. Rows
share one write position (the model's KVCache design), so a prompt is placed with left
padding such that its last token sits just before that position. A step:
  1. admit waiting sequences while there is room: prefill them together (one forward),
     copy their keys/values into free rows, sample each one's first token;
  2. decode: feed every active row its last token (one forward for the whole batch),
     sample one token per row with that row's own settings and random stream;
  3. retire rows that stopped (stop id, stop string, max tokens, cancelled) by moving the
     last active row into their place, so active rows are always rows 0..n-1 and a step
     only computes over those.
Requests can therefore join and leave a running batch at any step (continuous batching).
When a new prompt is longer than the current position the active rows are shifted right;
when the cache would overflow they are shifted left by the smallest padding. A sequence
that does not fit yet waits; admission is first in, first out.

Sampling order, as in transformers: divide logits by the temperature, keep the top_k,
then the nucleus (top_p), then drop tokens below min_p times the most likely one's
probability, renormalize, draw. Temperature 0 is greedy (argmax). A draw is one uniform
number from the row's own generator (seeded with the request's seed) pushed through the
row's cumulative distribution, so a seeded request gives the same text alone or batched.

Text streaming decodes token bytes with an incremental UTF-8 decoder, so a character
split across two tokens is held back until it is whole (no U+FFFD half-characters), and
text that might be the start of a stop string is held back until it is clear.
"""
from __future__ import annotations

import codecs
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .model import KVCache


@dataclass
class Generation:
    tokens: list[int]        # the new ids, without the prompt and without the stop id
    finish_reason: str       # "stop": a stop id or string; "length": max tokens or context; "cancelled";
                             # with tools also "tool_calls" (a client's tool) and "invalid_tool_call"
    text: str | None = None  # the decoded answer text (stop string cut off, no tool calls or results);
                             # only when a tokenizer was given
    injected: list[int] | None = None   # with tools: 1 where a token is context the engine appended (tool results)
    tool_calls: list[dict] | None = None    # with tools: one record per call (name, arguments, result, error, ...)
    messages: list[dict] | None = None      # with tools: the answer as chat messages (calls and results included)


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


# ---------------------------------------------------------------- text streaming

class TextStream:
    """Token ids in, text out: never half a character, never part of a stop string.

    push(id) returns the text that is now safe to show; finish() returns the rest.
    `stopped` turns true when a stop string appears; the text is cut before it.
    """

    def __init__(self, tokenizer, stop=()):
        self.tokenizer = tokenizer
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stop = [s for s in stop if s]
        self.text = ""        # everything decoded so far (cut at a stop string)
        self.sent = 0         # how much of it was already handed out
        self.stopped = False

    def push(self, token_id: int) -> str:
        self.text += self.decoder.decode(self.tokenizer.token_bytes(token_id))
        hold = 0
        if self.stop:
            # a stop string can only start in text not yet handed out: that part was held back
            hits = [i for i in (self.text.find(s, self.sent) for s in self.stop) if i >= 0]
            if hits:
                self.text, self.stopped = self.text[:min(hits)], True
                return self._release(len(self.text))
            hold = self._possible_stop_prefix()
        return self._release(len(self.text) - hold)

    def finish(self) -> str:
        if not self.stopped:
            self.text += self.decoder.decode(b"", final=True)
        return self._release(len(self.text))

    def release_all(self) -> str:
        """Hand out the text held back for a possible stop string (a tool call starts: the answer
        text before it is complete)."""
        return self._release(len(self.text))

    def _possible_stop_prefix(self) -> int:
        """Length of the longest unsent tail of the text that begins some stop string."""
        unsent = self.text[self.sent:]
        for length in range(min(len(unsent), max(len(s) for s in self.stop) - 1), 0, -1):
            tail = unsent[-length:]
            if any(s.startswith(tail) for s in self.stop):
                return length
        return 0

    def _release(self, end: int) -> str:
        out = self.text[self.sent:end]
        self.sent = max(self.sent, end)
        return out


# ---------------------------------------------------------------- one sequence

@dataclass
class StreamEvent:
    text: str                       # new text (may be "" for a token still inside a character)
    tokens: int                     # tokens generated so far
    finish_reason: str | None = None
    tool: dict | None = None        # a tool call ({"type": "call", id, name, arguments}) or its result
                                    # ({"type": "result", id, name, content, error}); lmforge/tools/session.py


class Sequence:
    """One prompt being continued: its settings, output so far, and how it tells the world.

    `on_event(StreamEvent)` (optional) is called from the engine's thread after every token
    and once more with finish_reason set. Set `cancel` (a threading.Event) to stop it at the
    next step with finish_reason "cancelled".
    """

    def __init__(self, prompt: list[int], params: SamplingParams, tokenizer=None,
                 on_event: Callable[[StreamEvent], None] | None = None, cancel: threading.Event | None = None,
                 generator_seed: int | None = None, tools=None):
        """tools: a ToolSession (lmforge/tools/session.py) when the model may call tools."""
        if not prompt:
            raise ValueError("every prompt needs at least one token (e.g. <|bos|>)")
        if tools is not None and tokenizer is None:
            raise ValueError("a sequence with tools needs the tokenizer")
        self.tools = tools
        self.injected: list[int] = []    # with tools: 1 for each token the engine appended (tool results)
        self.prompt = list(prompt)
        self.params = params
        self.stop_ids = set(params.stop_ids)
        self.tokens: list[int] = []
        self.finish_reason: str | None = None
        self.budget = params.max_tokens
        self.cancel = cancel or threading.Event()
        self.on_event = on_event
        seed = params.seed if generator_seed is None else generator_seed
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.text_stream = TextStream(tokenizer, params.stop) if tokenizer is not None else None
        self.created = time.perf_counter()
        self.first_token_at: float | None = None

    def fit_context(self, seq_len: int) -> None:
        """Keep the last seq_len - 1 prompt ids; allow at most seq_len - len(prompt) new ids."""
        self.prompt = self.prompt[-(seq_len - 1):]
        self.budget = max(0, min(self.params.max_tokens, seq_len - len(self.prompt)))

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def remaining(self) -> int:
        return self.budget - len(self.tokens)

    def context(self) -> list[int]:
        """Prompt and tokens so far: what a row that rejoins the batch is prefilled with."""
        return self.prompt + self.tokens

    def uniform(self) -> torch.Tensor:
        return torch.rand((), generator=self.generator)

    def add(self, token: int) -> bool:
        """Record one sampled id; returns False once the sequence has finished."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        if self.tools is not None:
            return self.tools.add(self, token)
        return self.add_answer_token(token)

    def add_answer_token(self, token: int) -> bool:
        """A token of the answer itself: stop ids and strings, the text stream, the budget."""
        if token in self.stop_ids:
            self.finish("stop")
            return False
        self.tokens.append(token)
        if self.tools is not None:
            self.injected.append(0)
        text = ""
        if self.text_stream is not None:
            text = self.text_stream.push(token)
            if self.text_stream.stopped:
                self.finish("stop", text)
                return False
        if len(self.tokens) >= self.budget:
            self.finish("length", text)
            return False
        if self.on_event is not None:
            self.on_event(StreamEvent(text, len(self.tokens)))
        return True

    def finish(self, reason: str, text: str = "") -> None:
        if self.done:
            return
        self.finish_reason = reason
        if self.text_stream is not None:
            text += self.text_stream.finish()
        if self.on_event is not None:
            self.on_event(StreamEvent(text, len(self.tokens), reason))

    def result(self) -> Generation:
        text = self.text_stream.text if self.text_stream is not None else None
        if self.tools is None:
            return Generation(self.tokens, self.finish_reason or "length", text)
        return Generation(self.tokens, self.finish_reason or "length", text, list(self.injected),
                          self.tools.records, self.tools.messages(text or ""))


def sample_rows(logits, seqs: list[Sequence]) -> list[int]:
    """One id per row of logits (B, V), each with its sequence's own settings and generator."""
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


# ---------------------------------------------------------------- the engine

class Engine:
    """Continuous batching over one preallocated KV cache (see the module docstring).

    engine = Engine(model, max_batch=32); engine.submit(seq); while engine.step(): pass
    Not thread-safe except submit(); BackgroundEngine runs step() in its own thread.
    """

    def __init__(self, model, max_batch: int = 32, max_len: int | None = None):
        self.model = model
        self.seq_len = model.cfg.seq_len
        self.max_batch = max_batch
        # two contexts' worth of slots: room for a new prompt beside rows already decoding
        self.cache = model.make_cache(max_batch, max_len or 2 * self.seq_len)
        self.rows: list[Sequence] = []   # row i of the cache holds rows[i]
        self.pads: list[int] = []        # left padding of each active row
        self.pos = 0                     # the shared next slot
        self.waiting: deque[Sequence] = deque()
        self.parked: list[Sequence] = []     # rows out of the batch while their tool runs (tools/session.py)
        self.lock = threading.Lock()
        self.forward_calls = 0
        self._last_view = None   # (key, KVCache) of _view
        self._device = self.cache.k.device

    # ------------------------------------------------------------ queue

    def submit(self, seq: Sequence) -> Sequence:
        seq.fit_context(self.seq_len)
        if seq.budget + len(seq.prompt) > self.cache.max_len:
            raise ValueError(f"prompt + max tokens ({len(seq.prompt) + seq.budget}) exceed the cache "
                             f"({self.cache.max_len} slots)")
        with self.lock:
            self.waiting.append(seq)
        return seq

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.waiting or self.parked)

    # ------------------------------------------------------------ one step

    @torch.inference_mode()
    def step(self) -> bool:
        """Admit what fits, decode one token for every active row. Returns whether work remains."""
        if self.parked:
            self._unpark()
        self._admit()
        self._retire()
        if self.rows:
            for seq in self.rows:
                if seq.cancel.is_set():
                    seq.finish("cancelled")
            self._await_tools()
            self._retire()
        if self.rows:
            n = len(self.rows)
            last = torch.tensor([[seq.tokens[-1]] for seq in self.rows], dtype=torch.long, device=self._device)
            hidden = self.model(last, cache=self._view(n, self.pos, self.pads), return_hidden=True)
            self.forward_calls += 1
            self.pos += 1
            logits = self.model.logits(hidden[:, -1])
            for seq, token in zip(self.rows, sample_rows(logits, self.rows)):
                seq.add(token)
            self._retire()
        if not self.rows:
            self.pos = 0
        return self.busy

    def _view(self, n: int, pos: int, pads: list[int]) -> KVCache:
        """A KVCache over rows 0..n-1 of the big cache (a view: writes land in the big one).

        Kept while the rows and their padding stay the same (every step of a steady batch),
        since making one costs a few small ops each step."""
        key = (n, tuple(pads[:n]))
        if self._last_view is None or self._last_view[0] != key:
            view = KVCache.__new__(KVCache)
            view.k, view.v = self.cache.k[:, :n], self.cache.v[:, :n]
            view.left_pad = None
            if any(pads[:n]):
                view.left_pad = torch.tensor(pads[:n], dtype=torch.long, device=self._device)
            self._last_view = (key, view)
        view = self._last_view[1]
        view.pos = pos
        return view

    def _await_tools(self) -> None:
        """Rows whose tool call is running: wait for them at most their ToolBox's wait_s (all
        together), then park those still waiting, so the next decode goes on without them."""
        started = time.monotonic()
        for seq in self.rows:
            session = seq.tools
            if session is not None and session.pending is not None and not seq.done:
                if not session.ready(seq, started + session.box.wait_s):
                    session.parked = True

    def _unpark(self) -> None:
        """Parked rows whose result has come (or that were cancelled) go back to the front of
        the queue, to be prefilled with their whole context. With nothing else to do, wait a
        little for one rather than spin."""
        idle = not self.rows and not self.waiting
        back = []
        for seq in self.parked:
            if seq.cancel.is_set():
                seq.finish("cancelled")
            elif seq.tools.ready(seq, time.monotonic() + (0.05 if idle else 0.0)):
                seq.tools.flush_forced(seq)
                idle = False
            else:
                continue
            seq.tools.parked = False
            back.append(seq)
        if back:
            self.parked = [seq for seq in self.parked if seq not in back]
            with self.lock:
                self.waiting.extendleft(reversed([seq for seq in back if not seq.done]))

    def _admit(self) -> None:
        with self.lock:
            candidates = []
            while self.waiting and len(self.rows) + len(candidates) < self.max_batch:
                seq = self.waiting[0]
                if seq.cancel.is_set() or seq.remaining <= 0:
                    self.waiting.popleft()
                    seq.finish("cancelled" if seq.cancel.is_set() else "length")
                    continue
                if self._layout(candidates + [seq]) is None:
                    break   # first in, first out: wait until rows finish and make room
                candidates.append(self.waiting.popleft())
        if candidates:
            self._prefill(candidates)

    def _layout(self, new: list[Sequence]):
        """(shift, new_pos) that fits the active rows plus `new` into the cache, or None."""
        if not new:
            return 0, self.pos
        shift_left = min(self.pads) if self.rows else self.pos   # slack every active row has
        base = self.pos - shift_left
        longest = max(len(s.prompt) + len(s.tokens) for s in new)   # a rejoining row brings its tokens
        new_pos = max(base, longest)
        need = max([s.remaining for s in self.rows] + [s.remaining for s in new])
        if new_pos + need > self.cache.max_len:
            return None
        # move as little as possible: keep the current slots unless a prompt needs more room
        # on the left or the tail needs more room on the right
        if self.pos >= longest and self.pos + need <= self.cache.max_len:
            return 0, self.pos
        return new_pos - self.pos, new_pos

    def _shift(self, delta: int) -> None:
        """Move every active row's slots by delta (right if > 0), keeping its positions."""
        if delta == 0 or not self.rows:
            self.pos += delta
            return
        n, start = len(self.rows), min(self.pads)
        for buf in (self.cache.k, self.cache.v):
            buf[:, :n, :, start + delta:self.pos + delta] = buf[:, :n, :, start:self.pos].clone()
        self.pads = [p + delta for p in self.pads]
        self.pos += delta

    def _prefill(self, new: list[Sequence]) -> None:
        delta, new_pos = self._layout(new)
        self._shift(delta)
        contexts = [s.context() for s in new]
        longest = max(len(c) for c in contexts)
        own_pads = [longest - len(c) for c in contexts]
        device = self.cache.k.device
        # pad ids are never attended to, so any valid id (0) will do
        idx = torch.tensor([[0] * pad + c for pad, c in zip(own_pads, contexts)], dtype=torch.long, device=device)
        first, n = len(self.rows), len(self.rows) + len(new)
        if not self.rows:
            # an idle engine: prefill straight into rows 0..k-1 from slot 0
            self.pos = longest
            self.pads = own_pads
            hidden = self.model(idx, cache=self._view(len(new), 0, own_pads), return_hidden=True)
        else:
            # a private cache, then copy its slots so each prompt ends just before self.pos
            temp = self.model.make_cache(len(new), longest, left_pad=own_pads)
            hidden = self.model(idx, cache=temp, return_hidden=True)
            start = self.pos - longest
            self.cache.k[:, first:n, :, start:self.pos] = temp.k
            self.cache.v[:, first:n, :, start:self.pos] = temp.v
            self.pads = self.pads + [start + pad for pad in own_pads]
        self.forward_calls += 1
        self.rows = self.rows + new
        logits = self.model.logits(hidden[:, -1])
        for seq, token in zip(new, sample_rows(logits, new)):
            seq.add(token)

    def _retire(self) -> None:
        """Drop finished and parked rows: the last active row moves into each freed row."""
        for i in range(len(self.rows) - 1, -1, -1):
            seq = self.rows[i]
            if not seq.done and not (seq.tools is not None and seq.tools.parked):
                continue
            if not seq.done:
                self.parked.append(seq)
            last = len(self.rows) - 1
            if i != last and self.pos:
                lo = min(self.pads[i], self.pads[last])
                for buf in (self.cache.k, self.cache.v):
                    buf[:, i, :, lo:self.pos] = buf[:, last, :, lo:self.pos]
            self.rows[i], self.pads[i] = self.rows[last], self.pads[last]
            self.rows.pop()
            self.pads.pop()

    def cancel_all(self, reason: str = "cancelled") -> None:
        with self.lock:
            pending = list(self.waiting) + self.rows + self.parked
            self.waiting.clear()
            self.parked = []
        for seq in pending:
            seq.finish(reason)
        self.rows, self.pads, self.pos = [], [], 0


class BackgroundEngine:
    """An Engine stepping in its own thread, for the server: submit() from any thread.

    Events reach each Sequence's on_event from the engine thread. A failure inside a step
    finishes the affected sequences with finish_reason "error" and the thread goes on.
    """

    def __init__(self, model, max_batch: int = 32, max_len: int | None = None):
        self.engine = Engine(model, max_batch=max_batch, max_len=max_len)
        self.wake = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="lmforge-engine", daemon=True)
        self.last_error: str | None = None

    def start(self) -> "BackgroundEngine":
        self.thread.start()
        return self

    def submit(self, seq: Sequence) -> Sequence:
        self.engine.submit(seq)
        with self.wake:
            self.wake.notify()
        return seq

    def stop(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify()
        self.thread.join(timeout=10)
        self.engine.cancel_all()

    def _loop(self) -> None:
        while True:
            with self.wake:
                while not self.stopping and not self.engine.busy:
                    self.wake.wait()
                if self.stopping:
                    return
            try:
                self.engine.step()
            except Exception as err:  # noqa: BLE001 - one bad step must not take the server down
                self.last_error = f"{type(err).__name__}: {err}"
                self.engine.cancel_all("error")


# ---------------------------------------------------------------- entry points

GENERATE_MAX_BATCH = 256

@torch.inference_mode()
def generate(model, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, seed: int | None = None, stop_ids=(), min_p: float = 0.0,
             stop: tuple[str, ...] = (), tokenizer=None, cancel: threading.Event | None = None,
             tools=None) -> list[Generation]:
    """Continue every prompt with up to max_new_tokens ids; one Generation per prompt.

    tools: a ToolBox (lmforge/tools/registry.py); every row may then call its tools, which run
    mid-generation through the one tool loop (lmforge/tools/session.py). Their results count
    against max_new_tokens, are marked in Generation.injected and are left out of the text.

    A row stops at its first stop id (left out of its tokens, finish_reason "stop"), at a
    stop string (needs the tokenizer; the text is cut before it), or when it has
    max_new_tokens new ids ("length"). The context is the model's seq_len: a prompt longer
    than seq_len - 1 keeps only its last seq_len - 1 ids, and a row gets at most
    seq_len - len(prompt) new ids, also reported as "length". Each row's budget depends
    only on its own prompt, and with a seed row i draws from its own generator seeded with
    seed + i, so a row's output is the same alone or in any batch. With a tokenizer each
    Generation also carries its text. Setting `cancel` stops every row ("cancelled").
    """
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (e.g. <|bos|>)")
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                            max_tokens=max_new_tokens, stop_ids=tuple(stop_ids), stop=tuple(stop), seed=seed)
    params.check()
    seqs = [Sequence(p, params, tokenizer, cancel=cancel, generator_seed=None if seed is None else seed + i,
                     tools=tool_session(tools, tokenizer)) for i, p in enumerate(prompts)]
    for seq in seqs:
        seq.fit_context(model.cfg.seq_len)
    longest = max(len(s.prompt) for s in seqs)
    # At most GENERATE_MAX_BATCH rows decode together; the rest wait and take rows as others
    # finish. The preference stage asks for thousands of answers at once: one row each made a
    # 2 GB cache and a 7.7 GB process at tiny. A row's output does not depend on the batch.
    # With waiting rows the cache gets room for a second wave beside the first, so newcomers
    # need not wait for every row to finish.
    span = longest + max(1, max(s.budget for s in seqs))
    engine = Engine(model, max_batch=min(len(seqs), GENERATE_MAX_BATCH),
                    max_len=span if len(seqs) <= GENERATE_MAX_BATCH else 2 * span)
    for seq in seqs:
        engine.submit(seq)
    while engine.step():
        pass
    return [seq.result() for seq in seqs]


def tool_session(tools, tokenizer):
    """A fresh ToolSession for one row from a ToolBox (a ToolSession is used as it is), or None."""
    from .tools.session import ToolSession
    if tools is None or isinstance(tools, ToolSession):
        return tools
    return ToolSession(tools, tokenizer)


def stream(model, tokenizer, prompt: list[int], params: SamplingParams,
           cancel: threading.Event | None = None, tools=None) -> Iterator[StreamEvent]:
    """Continue one prompt, yielding StreamEvents as tokens arrive; the last has finish_reason.
    With tools (a ToolBox) calls and results come as events with `tool` set.

    Runs in the caller's thread. Closing the generator early (break, Ctrl-C) cancels it.
    """
    params.check()
    events: deque[StreamEvent] = deque()
    seq = Sequence(prompt, params, tokenizer, on_event=events.append, cancel=cancel,
                   tools=tool_session(tools, tokenizer))
    seq.fit_context(model.cfg.seq_len)
    engine = Engine(model, max_batch=1, max_len=len(seq.prompt) + max(1, seq.budget))
    engine.submit(seq)
    return drain_events(iter(engine.step, False), events, seq)


def drain_events(steps: Iterator, events: deque, seq: Sequence) -> Iterator[StreamEvent]:
    """Advance a generation step by step, yielding the StreamEvents each step queued. The
    one streaming loop of generate.stream and speculative.speculative_stream: closing it
    early cancels the sequence and closes `steps`."""
    try:
        for _ in steps:
            while events:
                yield events.popleft()
        while events:
            yield events.popleft()
    finally:
        seq.cancel.set()
        close = getattr(steps, "close", None)
        if close is not None:
            close()


# ---------------------------------------------------------------- display

_EIGHTHS = " ▏▎▍▌▋▊▉"


def format_bar_chart(pairs: list[tuple[str, float]], width: int = 40) -> str:
    """One line per (token, probability): the token's repr, a bar (width = 100%), the percent.

        'the'   ████████████▌                             31.4%
        ' a'    ███▏                                       7.9%
    """
    if not pairs:
        return ""
    labels = [repr(token) for token, _ in pairs]
    label_width = max(len(label) for label in labels)
    lines = []
    for label, (_, prob) in zip(labels, pairs):
        prob = min(max(float(prob), 0.0), 1.0)
        eighths = round(prob * width * 8)
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        lines.append(f"{label:<{label_width}}  {bar:<{width}} {100 * prob:5.1f}%")
    return "\n".join(lines)


# ---------------------------------------------------------------- `lmforge generate` and `lmforge next`

def model_stages(run) -> list[str]:
    """Stages of the run that have a model on disk, in graph order, then any other model
    folder (e.g. one written by `lmforge import`)."""
    from .rundir import STAGE_NAMES
    models = run.path("models")
    found = [name for name in STAGE_NAMES if (run.model_dir(name) / "model.safetensors").exists()]
    if models.is_dir():
        found += sorted(p.name for p in models.iterdir()
                        if p.name not in found and (p / "model.safetensors").exists())
    return found


def resolve_stage(run, stage: str | None) -> str | None:
    """The named stage, else the latest finished one with a model, else any model folder."""
    if stage:
        return stage
    found = run.latest_model_stage()
    if found is None:
        stages = model_stages(run)
        found = stages[-1] if stages else None
    return found


def load_for_sampling(run, stage: str | None):
    """The tokenizer and the model of `stage` (default: the latest finished stage with a model)."""
    from .model import load_model
    from .errors import StageError
    from .tokenizer import Tokenizer
    stage = resolve_stage(run, stage)
    if stage is None or not (run.model_dir(stage) / "model.safetensors").exists():
        raise StageError(f"no trained model in {run.root}" + (f" for stage {stage!r}" if stage else "")
                         + "; run `lmforge run --to pretrain` first")
    return Tokenizer.load(run.tokenizer_dir), load_model(run.model_dir(stage)), stage


def _sampling_args(args, cfg) -> dict:
    pick = lambda value, default: default if value is None else value  # noqa: E731
    settings = {"temperature": pick(args.temperature, cfg.generate.temperature),
                "top_k": pick(args.top_k, cfg.generate.top_k), "top_p": pick(args.top_p, cfg.generate.top_p)}
    from .errors import StageError
    min_p = getattr(args, "min_p", None)
    if min_p is not None:
        settings["min_p"] = min_p
    if settings["temperature"] < 0 or not 0 < settings["top_p"] <= 1 or settings["top_k"] < 0 \
            or not 0 <= settings.get("min_p", 0.0) <= 1:
        raise StageError("need --temperature >= 0, 0 < --top-p <= 1, --top-k >= 0 and 0 <= --min-p <= 1")
    return settings


def cli_generate(args, run, cfg) -> int:
    tokenizer, model, _ = load_for_sampling(run, args.stage)
    settings = _sampling_args(args, cfg)
    prompt_ids = [tokenizer.bos_id] + tokenizer.encode(args.prompt)
    max_new = args.max_new_tokens or cfg.generate.max_new_tokens
    seed = cfg.run.seed if args.seed is None else args.seed
    outs = generate(model, [prompt_ids] * max(1, args.num_samples), max_new_tokens=max_new, seed=seed,
                    stop_ids=(tokenizer.end_id, tokenizer.bos_id), **settings)
    for out in outs:
        print(args.prompt + tokenizer.decode(out.tokens))
    return 0


def cli_next(args, run, cfg) -> int:
    tokenizer, model, stage = load_for_sampling(run, args.stage)
    settings = _sampling_args(args, cfg)
    if args.temperature is None:
        settings["temperature"] = 1.0     # the model's own distribution unless asked otherwise
    ids = torch.tensor([[tokenizer.bos_id] + tokenizer.encode(args.prompt)])
    ids = ids[:, -model.cfg.seq_len:]
    with torch.inference_mode():
        logits = model(ids)[:, -1, :]
    probs = next_token_probs(logits, **settings)[0]
    top = torch.topk(probs, min(args.show, probs.numel()))
    pairs = [(tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(top.values, top.indices) if p > 0]
    print(f"next token after {args.prompt!r} ({stage} model, temperature {settings['temperature']}):")
    print(format_bar_chart(pairs))
    return 0
