"""The generation engine: continuous batching over one KV cache, and generate() / stream().

    from lmforge.engine import generate, stream, SamplingParams, Engine, BackgroundEngine
    outs = generate(model, [[bos, 17, 42], [bos, 5]], max_new_tokens=32,
                    temperature=0.8, top_p=0.95, seed=0, stop_ids=[end_id])
    outs[0].tokens, outs[0].finish_reason      # new ids (stop token left out), "stop" | "length"
    for event in stream(model, tokenizer, prompt_ids, SamplingParams(temperature=0.7, stop=["\\n\\n"])):
        print(event.text, end="", flush=True)  # whole characters only; event.finish_reason at the end

Chat, evaluation, the server and the RL rollouts all call this module; speculative
decoding (lmforge/speculative.py) reuses its samplers and its Sequence bookkeeping. Every
forward here runs on the fast inference path (inference_weights.fast_path).

How the engine works. `Engine` owns one preallocated KV cache of max_batch rows. Rows
share one write position (the KVCache design, cache.py), so a prompt is placed with left
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
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Iterator

import torch

from .cache import KVCache, make_cache
from .inference_weights import fast_path
from .sampling import SamplingParams, sample_rows
from .sequence import Generation, Sequence, StreamEvent
from .tool_loop import ToolSession


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
        self.cache = make_cache(model, max_batch, max_len or 2 * self.seq_len)
        self.rows: list[Sequence] = []   # row i of the cache holds rows[i]
        self.pads: list[int] = []        # left padding of each active row
        self.pos = 0                     # the shared next slot
        self.waiting: deque[Sequence] = deque()
        self.parked: list[Sequence] = []     # rows out of the batch while their tool runs (tool_loop.py)
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

    def step(self) -> bool:
        """Admit what fits, decode one token for every active row. Returns whether work remains."""
        with torch.inference_mode(), fast_path(self.model):
            return self._step()

    def _step(self) -> bool:
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
            temp = make_cache(self.model, len(new), longest, left_pad=own_pads)
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
    mid-generation through the one tool loop (lmforge/engine/tool_loop.py). Their results count
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
    # finish. The preference stage asks for thousands of answers at once, and one row each
    # made a cache of gigabytes (docs/LOG.md). A row's output does not depend on the batch.
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
    one streaming loop of stream() here and speculative.speculative_stream: closing it
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

