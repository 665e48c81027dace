"""The one tool loop, one sequence's side of it: find the call, run it, append the result, go on.

    from lmforge.engine import Sequence, ToolSession
    seq = Sequence(prompt, params, tokenizer, tools=ToolSession(box, tokenizer))
    # the engine (batching.py) then drives it: Sequence.add hands every sampled token here

The loop, for every generation path (generate, stream, the server's BackgroundEngine, and
so chat, compare, evaluation and GRPO rollouts):

  1. detect: <|tool_call|> opens a call; the tokens up to <|tool_call_end|> are its text,
     parsed by lmforge/chat_format.parse_call. None of them is shown as answer text.
  2. execute: the call goes to the ToolBox's threads at once. Before the next decoding step
     the engine waits for it at most `tools.wait_ms` (`ready`); a row whose tool is still
     running steps out of the batch (the engine "parks" it) so the other rows decode on, and
     rejoins, re-encoding its context in one forward, when the result is there. A tool still
     running after `tools.timeout_s` gives an error result.
  3. append: <|tool|> + the result's tokens + <|end|> + <|assistant|> are queued and fed to
     the model one per step instead of sampled ones (`next_forced`): they are context, marked
     in `Sequence.injected` (GRPO masks them from the loss) and never part of the answer text.
  4. go on: the answer continues; after `tools.max_calls` calls a further call gets an error
     result instead of running.

A call that does not parse, or names no tool offered, is malformed: with `malformed="result"`
(generation, evaluation, RL) the model reads an error result and goes on; with "finish"
(the server) the sequence ends with finish_reason "invalid_tool_call". A call to one of
`client_tools` (tools an API client runs itself) ends the sequence with finish_reason
"tool_calls". `prefix` forces the first tokens (the server's tool_choice).
Every call is kept in `records`, and `messages()` gives the answer back as chat messages
(assistant turns with their tool_calls, tool turns with the results), as the renderer
takes them.
"""
from __future__ import annotations

import secrets
import time
from collections import deque
from concurrent.futures import TimeoutError as FutureTimeout

from ..chat_format import CallError, parse_call
from .sequence import StreamEvent


class ToolSession:
    def __init__(self, box, tokenizer, client_tools=(), malformed: str = "result", prefix=()):
        if not tokenizer.has_tools:
            raise ValueError("this tokenizer has no tool tokens (it was trained before tool use): tools are off")
        self.box, self.tokenizer = box, tokenizer
        self.client_tools = set(client_tools)
        self.malformed = malformed
        self.forced: deque[tuple[int, bool]] = deque((token, False) for token in prefix)
        self.in_call = False
        self.call_ids: list[int] = []
        self.pending = None          # (record, future, submitted_at) while a tool runs
        self.parked = False          # set by the engine while the row waits outside the batch
        self.records: list[dict] = []
        self.boundaries: list[int] = []   # answer-text position of each call

    # ------------------------------------------------------------ tokens in

    def add(self, seq, token: int) -> bool:
        """Sequence.add for a sequence with tools; returns False once it has finished."""
        tok = self.tokenizer
        if self.forced:
            forced, context = self.forced.popleft()
            token = forced
            if context:
                return self._append(seq, token, context=True)
        if self.in_call:
            if token == tok.tool_call_end_id:
                self._append(seq, token)
                return self._end_call(seq)
            if token in seq.stop_ids or token in (tok.tool_call_id, tok.tool_id):
                self._malformed_record(tok.decode(self.call_ids), "the call was not closed with <|tool_call_end|>")
                self.in_call = False
                if self.malformed == "finish":
                    seq.finish("invalid_tool_call")
                    return False
                if token in seq.stop_ids:
                    seq.finish("stop")
                    return False
            else:
                self.call_ids.append(token)
                return self._append(seq, token)
        if token == tok.tool_id:          # the model began a tool turn itself: its answer is over
            seq.finish("stop")
            return False
        if token == tok.tool_call_end_id:   # an end without a call: counted, not shown
            self._malformed_record("", "<|tool_call_end|> without <|tool_call|>")
            return self._append(seq, token)
        if token == tok.tool_call_id:
            self.in_call, self.call_ids = True, []
            text = seq.text_stream.release_all() if seq.text_stream is not None else ""
            self.boundaries.append(len(seq.text_stream.text) if seq.text_stream is not None else 0)
            if text and seq.on_event is not None:
                seq.on_event(_event(text, len(seq.tokens)))
            return self._append(seq, token)
        return seq.add_answer_token(token)

    def _append(self, seq, token: int, context: bool = False) -> bool:
        seq.tokens.append(token)
        seq.injected.append(1 if context else 0)
        if len(seq.tokens) >= seq.budget:
            seq.finish("length")
            return False
        return True

    # ------------------------------------------------------------ calls

    def _malformed_record(self, text: str, error: str) -> dict:
        name = text.strip().split(" ", 1)[0].split("{", 1)[0]
        record = {"id": "call_" + secrets.token_hex(8), "name": name, "arguments": text.strip()[len(name):].strip(),
                  "result": None, "error": True, "malformed": True, "detail": error, "seconds": 0.0}
        self.records.append(record)
        return record

    def _end_call(self, seq) -> bool:
        self.in_call = False
        text = self.tokenizer.decode(self.call_ids)
        offered = set(self.box.names if self.box is not None else ()) | self.client_tools
        try:
            name, arguments = parse_call(text)
            if name not in offered:
                raise CallError(f"unknown tool {name!r}; tools: {', '.join(sorted(offered)) or 'none'}")
        except CallError as err:
            record = self._malformed_record(text, str(err))
            if self.malformed == "finish":
                seq.finish("invalid_tool_call")
                return False
            self._event(seq, {"type": "call", **_public(record)})
            return self._give_result(seq, record, f"error: {err}", True)
        record = {"id": "call_" + secrets.token_hex(8), "name": name,
                  "arguments": text.strip()[len(name):].strip() or "{}", "parsed": arguments, "result": None,
                  "error": False, "malformed": False, "seconds": 0.0}
        self.records.append(record)
        self._event(seq, {"type": "call", **_public(record)})
        if name in self.client_tools:
            seq.finish("tool_calls")
            return False
        if sum(not r["malformed"] for r in self.records) > self.box.max_calls:
            return self._give_result(seq, record, f"error: no more tool calls (the limit is {self.box.max_calls}); "
                                                  "answer with what you have", True)
        self.pending = (record, self.box.submit(name, arguments, self.tokenizer.encode), time.monotonic())
        return True

    def ready(self, seq, deadline: float) -> bool:
        """Wait until `deadline` (time.monotonic) at most for the running call; True when it is over
        (its result is queued, or the row finished for want of room), False while it still runs."""
        record, future, submitted = self.pending
        timeout_at = submitted + self.box.timeout_s
        waited = time.monotonic()
        wait = max(0.0, min(deadline, timeout_at) - waited)
        try:
            result = future.result(timeout=wait)
        except FutureTimeout:
            self.box.count("wait_seconds", time.monotonic() - waited)
            if time.monotonic() < timeout_at:
                return False
            future.cancel()
            result = self.box.timed_out(record["name"])
        else:
            self.box.count("wait_seconds", time.monotonic() - waited)
        self.pending = None
        record["seconds"] = round(result.seconds, 6)
        self._give_result(seq, record, result.text, result.error, result.ids)   # may finish the row ("length")
        return True

    def _give_result(self, seq, record: dict, text: str, error: bool, ids=None) -> bool:
        tok = self.tokenizer
        record["result"], record["error"] = text, error
        ids = list(ids) if ids is not None else tok.encode(text)
        room = seq.remaining - len(self.forced) - 4       # <|tool|>, <|end|>, <|assistant|> and one answer token
        if room <= 0:
            seq.finish("length")
            return False
        self.forced.extend((t, True) for t in [tok.tool_id, *ids[:room], tok.end_id, tok.assistant_id])
        self._event(seq, {"type": "result", "id": record["id"], "name": record["name"], "content": text,
                          "error": error})
        return True

    def flush_forced(self, seq) -> None:
        """Append every queued context token at once (a parked row about to rejoin the batch)."""
        while self.forced and self.forced[0][1]:
            seq.tokens.append(self.forced.popleft()[0])
            seq.injected.append(1)

    # ------------------------------------------------------------ out

    def _event(self, seq, tool: dict) -> None:
        if seq.on_event is not None:
            seq.on_event(_event("", len(seq.tokens), tool))

    def messages(self, text: str) -> list[dict]:
        """The answer as chat messages: assistant turns with their tool calls, tool turns with results."""
        messages, start = [], 0
        for record, boundary in zip(self.records, self.boundaries):
            call = {"id": record["id"], "type": "function",
                    "function": {"name": record["name"], "arguments": record["arguments"]}}
            messages.append({"role": "assistant", "content": text[start:boundary], "tool_calls": [call]})
            if record["result"] is not None:
                messages.append({"role": "tool", "tool_call_id": record["id"], "content": record["result"]})
            start = boundary
        if start < len(text) or not messages or messages[-1]["role"] == "tool":
            messages.append({"role": "assistant", "content": text[start:]})
        return messages

    @property
    def malformed_calls(self) -> int:
        return sum(r["malformed"] for r in self.records)


def _public(record: dict) -> dict:
    return {k: record[k] for k in ("id", "name", "arguments", "malformed") if k in record} | \
        ({"detail": record["detail"]} if "detail" in record else {})


def _event(text: str, tokens: int, tool: dict | None = None) -> StreamEvent:
    return StreamEvent(text, tokens, tool=tool)
