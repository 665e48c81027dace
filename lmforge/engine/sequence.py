"""One request being continued: its settings, its tokens so far, its text, and its events.

    from lmforge.engine import Sequence, SamplingParams
    seq = Sequence(prompt_ids, SamplingParams(max_tokens=32, stop=["\\n\\n"]), tokenizer, on_event=print)
    # the engine (lmforge/engine/batching.py) samples; seq.add(token) records each id
    seq.result()    # Generation(tokens, finish_reason, text, ...)

Text streaming decodes token bytes with an incremental UTF-8 decoder, so a character
split across two tokens is held back until it is whole (no U+FFFD half-characters), and
text that might be the start of a stop string is held back until it is clear.
"""
from __future__ import annotations

import codecs
import threading
import time
from dataclasses import dataclass
from typing import Callable

import torch

from .sampling import SamplingParams



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
                                    # ({"type": "result", id, name, content, error}); lmforge/engine/tool_loop.py


class Sequence:
    """One prompt being continued: its settings, output so far, and how it tells the world.

    `on_event(StreamEvent)` (optional) is called from the engine's thread after every token
    and once more with finish_reason set. Set `cancel` (a threading.Event) to stop it at the
    next step with finish_reason "cancelled".
    """

    def __init__(self, prompt: list[int], params: SamplingParams, tokenizer=None,
                 on_event: Callable[[StreamEvent], None] | None = None, cancel: threading.Event | None = None,
                 generator_seed: int | None = None, tools=None):
        """tools: a ToolSession (lmforge/engine/tool_loop.py) when the model may call tools."""
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

