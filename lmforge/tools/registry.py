"""Tools the model can call: the registry of built-in tools, tools of your own, and the ToolBox that runs them.

    from lmforge.tools.registry import load_tools, ToolBox
    box = ToolBox(load_tools(["calculator", "lookup", "my_pkg.tools:weather"], run, cfg.tools),
                  timeout_s=5.0, max_calls=6)
    box.schemas()                                    # OpenAI / HF JSON schemas, for the chat template
    box.run("calculator", {"expression": "7 + 5"})   # ToolResult(text="12", error=False, ...)

A tool is a plain callable, the same plug-in style as GRPO's rewards: it takes the call's
JSON arguments as keyword arguments and returns text (anything else is turned into text).
`module:function` names one of your own; its name is the function's (or its `tool_name`
attribute), its description the docstring's first line, and its parameters the
`parameters` attribute (a JSON schema) or, failing that, one string parameter per
argument of its signature. Built in: `calculator` (lmforge/tools/calculator.py) and
`lookup` (lmforge/tools/lookup.py, which needs the run's index).

The ToolBox runs calls in a small thread pool, so a slow tool never holds up the decoding
of other rows (lmforge/engine/tool_loop.py and the engine decide how long to wait). A tool
that raises gives "error: <Type>: <message>"; one still running after `timeout_s` gives
"error: ... timed out" (a Python thread cannot be stopped, so it finishes in the
background; the pool's `workers` bound how many can pile up). Results are cut to
`max_result_chars`. Counters (calls, errors, timeouts, seconds spent in tools) are kept
for the manifests and benchmarks/grpo_throughput.py.
"""
from __future__ import annotations

import inspect
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Callable

from ..config import BUILTIN_TOOLS



class ToolError(ValueError):
    """A tool that cannot be set up (unknown name, no index), phrased as one line."""


@dataclass
class Tool:
    name: str
    fn: Callable[..., object]
    description: str = ""
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})

    def schema(self) -> dict:
        """The OpenAI / Hugging Face tool schema."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass
class ToolResult:
    text: str
    error: bool = False
    seconds: float = 0.0
    ids: list | None = None       # the text's token ids, when the session encoded it in the worker


def tool_from_callable(fn: Callable, name: str | None = None) -> Tool:
    """A Tool from any callable: name, description and parameters from its attributes or signature."""
    name = name or getattr(fn, "tool_name", None) or getattr(fn, "__name__", None)
    if not name or not str(name).replace("_", "").replace("-", "").isalnum():
        raise ToolError(f"tool {fn!r} needs a name made of letters, digits, '_' and '-'")
    doc = (inspect.getdoc(fn) or "").strip().splitlines()
    description = getattr(fn, "description", None) or (doc[0] if doc else "")
    parameters = getattr(fn, "parameters", None)
    if not isinstance(parameters, dict):
        try:
            arguments = [p for p in inspect.signature(fn).parameters.values()
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        except (TypeError, ValueError):
            arguments = []
        parameters = {"type": "object", "properties": {p.name: {"type": "string"} for p in arguments},
                      "required": [p.name for p in arguments if p.default is inspect.Parameter.empty]}
    return Tool(str(name), fn, str(description), parameters)


def resolve_tool(spec: str, run=None, tools_cfg=None) -> Tool:
    """A built-in name or "package.module:function" -> Tool; ToolError with one line otherwise."""
    if spec == "calculator":
        from .calculator import calculate
        return tool_from_callable(calculate, "calculator")
    if spec == "lookup":
        from .lookup import LookupIndex
        if run is None:
            raise ToolError("the lookup tool needs a run's index (lmforge index --run-dir RUN)")
        k, chars = (tools_cfg.lookup_k, tools_cfg.lookup_chars) if tools_cfg is not None else (2, 160)
        try:
            index = LookupIndex.load(run, k=k, chars=chars)
        except FileNotFoundError as err:
            raise ToolError(str(err)) from None
        return tool_from_callable(index, "lookup")
    if ":" not in spec:
        raise ToolError(f"unknown tool {spec!r}; built in: {', '.join(BUILTIN_TOOLS)}, or give module:function")
    from ..plugins import import_callable
    try:
        return tool_from_callable(import_callable(spec, "tool"))
    except ValueError as err:
        raise ToolError(str(err)) from None


def load_tools(specs: list, run=None, tools_cfg=None) -> list[Tool]:
    """The named tools plus `tools.extra`, each name once (a later one with the same name wins)."""
    extra = list(getattr(tools_cfg, "extra", []) or []) if specs else []
    tools: dict[str, Tool] = {}
    for spec in [*specs, *extra]:
        tool = resolve_tool(str(spec), run, tools_cfg)
        tools[tool.name] = tool
    return list(tools.values())


class ToolBox:
    """Tools, their limits and the threads that run them; shared by every sequence that may call them."""

    def __init__(self, tools: list[Tool], timeout_s: float = 5.0, max_calls: int = 6, max_result_chars: int = 600,
                 wait_s: float = 0.02, workers: int = 4):
        self.tools = {tool.name: tool for tool in tools}
        self.timeout_s, self.max_calls, self.max_result_chars, self.wait_s = timeout_s, max_calls, max_result_chars, \
            wait_s
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lmforge-tool")
        self.lock = threading.Lock()
        # tool_seconds: inside the tools (in the pool's threads); wait_seconds: the decoding
        # thread blocked waiting for a result (lmforge/engine/tool_loop.py)
        self.stats = {"calls": 0, "errors": 0, "timeouts": 0, "tool_seconds": 0.0, "wait_seconds": 0.0}

    @classmethod
    def from_config(cls, specs: list, run, tools_cfg) -> "ToolBox":
        return cls(load_tools(specs, run, tools_cfg), tools_cfg.timeout_s, tools_cfg.max_calls,
                   tools_cfg.max_result_chars, tools_cfg.wait_ms / 1000, tools_cfg.workers)

    @property
    def names(self) -> list[str]:
        return list(self.tools)

    def schemas(self) -> list[dict]:
        return [tool.schema() for tool in self.tools.values()]

    def count(self, key: str, amount=1) -> None:
        with self.lock:
            self.stats[key] += amount

    def _call(self, name: str, arguments: dict, encode) -> ToolResult:
        started = time.perf_counter()
        try:
            value = self.tools[name].fn(**arguments)
            text, error = (value if isinstance(value, str) else str(value)), False
            error = text.startswith("error:")
        except Exception as err:  # noqa: BLE001 - any tool may fail in any way; the model reads why
            text, error = f"error: {type(err).__name__}: {' '.join(str(err).split())[:200]}", True
        if len(text) > self.max_result_chars:
            text = text[:self.max_result_chars] + " …"
        seconds = time.perf_counter() - started
        self.count("tool_seconds", seconds)
        if error:
            self.count("errors")
        return ToolResult(text, error, seconds, encode(text) if encode is not None else None)

    def submit(self, name: str, arguments: dict, encode=None) -> Future:
        """Run a call in the pool; the Future gives a ToolResult (never raises). `encode` (text -> ids)
        runs there too, off the decoding thread."""
        self.count("calls")
        return self.pool.submit(self._call, name, arguments, encode)

    def timed_out(self, name: str) -> ToolResult:
        self.count("timeouts")
        self.count("errors")
        return ToolResult(f"error: {name} did not answer within {self.timeout_s:g} s", True, self.timeout_s)

    def run(self, name: str, arguments: dict) -> ToolResult:
        """One call, waiting for it (at most timeout_s)."""
        if name not in self.tools:
            return ToolResult(f"error: unknown tool {name!r}; tools: {', '.join(self.tools) or 'none'}", True)
        future = self.submit(name, arguments)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            return self.timed_out(name)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def builtin_toolbox(specs: list, run, tools_cfg, tokenizer, where: str) -> ToolBox | None:
    """The ToolBox an interactive command runs (chat, compare, serve), or None with a one-line note
    on stderr when the tools cannot be had: none named, a tokenizer from before tool use, or a
    tool that cannot be set up (e.g. no lookup index)."""
    import sys
    if not specs:
        return None
    if not tokenizer.has_tools:
        print(f"{where}: this run's tokenizer has no tool tokens (it was trained before tool use); tools are off",
              file=sys.stderr)
        return None
    try:
        return ToolBox.from_config(list(specs), run, tools_cfg)
    except ToolError as err:
        print(f"{where}: {err}; tools are off", file=sys.stderr)
        return None


def command_tools(spec: str | None, run, cfg, tokenizer) -> ToolBox | None:
    """The ToolBox of a command's `--tools` (chat, compare): None = the built-in tools when the run's
    SFT data taught tool use and the run has what they need, quietly; "none" = off; a comma list =
    those, saying why one cannot be had."""
    if spec is None:
        sft = (run.read_manifest("sft") or {}).get("metrics") or {}
        if not tokenizer.has_tools or not (sft.get("examples") or {}).get("tool_use"):
            return None
        for names in (list(BUILTIN_TOOLS), ["calculator"]):
            try:
                return ToolBox.from_config(names, run, cfg.tools)
            except ToolError:
                continue
        return None
    names = [] if spec.strip() == "none" else [n.strip() for n in spec.split(",") if n.strip()]
    return builtin_toolbox(names, run, cfg.tools, tokenizer, "--tools")
