"""`lmforge chat`: talk to a trained model in the terminal.

    lmforge chat --run-dir runs/tiny [--stage sft] [--system "You are terse."] [--temperature 0.7]
    lmforge chat --run-dir runs/tiny --draft runs/draft      # speculative decoding with a draft run
    lmforge chat --run-dir runs/tiny --prompt-lookup         # speculative, guesses from the history
    lmforge chat --run-dir runs/tiny --tools calculator      # only these tools (default: calculator and
                                                             # lookup when the run's SFT taught tool use)

Answers stream as they are decoded. The conversation is rendered with the chat template
(tokenizer.render_chat with the assistant prompt appended) and an answer ends at <|end|>.
When the history no longer fits the model's context, the oldest turns are dropped (the
system prompt stays). Ctrl-C stops the answer being written, not the program; Ctrl-D or
/exit leaves. With --draft or --prompt-lookup answers come from speculative decoding
(lmforge/speculative.py): the same answers (token for token at temperature 0, in
distribution otherwise), sooner; /settings shows the acceptance rate so far. With tools
(lmforge/tools/) the model may call them mid-answer; each call and its result are shown
in brackets, and the history keeps them, so the next turn renders what the model saw.
Tools are off with speculative decoding (it runs one sequence outside the engine's tool
loop) and with a tokenizer from before tool use (one line says so). Commands:

    /temperature 0.7   /top_p 0.9   /top_k 40   /min_p 0.05   /seed 42 (or /seed off)
    /max_tokens 200    /system TEXT (or /system to clear it)   /tools (on / off)   /clear   /settings
    /help   /exit
"""
from __future__ import annotations

import sys

from .checkpoints import load_for_sampling
from .draft import load_draft
from .engine import SamplingParams, ToolSession, stream
from .speculative import SpeculativeStats, speculative_stream
from .tools.registry import command_tools

GUESSES = 8   # per speculative round, as benchmarks/decode.py measured best (docs/ARCHITECTURE.md)

HELP = __doc__[__doc__.index("/temperature"):].rstrip()


def show_tool(tool: dict) -> str:
    """A tool call or result as the terminal shows it: [calculator {"expression": "7 + 5"} -> 12]."""
    if tool["type"] == "call":
        return f"[{tool['name']} {tool['arguments']}" + (f": malformed, {tool.get('detail')}]"
                                                          if tool.get("malformed") else "")
    content = " ".join(str(tool["content"]).split())
    return f" -> {content[:200] + ' …' if len(content) > 200 else content}] "


class ChatSession:
    """History, settings and the model; `reply()` streams one answer."""

    def __init__(self, model, tokenizer, system: str | None = None, temperature: float = 0.7, top_p: float = 1.0,
                 top_k: int = 0, min_p: float = 0.0, seed: int | None = None, max_tokens: int = 256,
                 speculate: dict | None = None, tools=None):
        """speculate: None for plain decoding, else speculative_stream's options ({} = prompt
        lookup, {"draft": model, "draft_vocab": ...} = a draft model). tools: a ToolBox."""
        self.model, self.tokenizer = model, tokenizer
        self.tools = tools if speculate is None else None
        self.tools_on = self.tools is not None
        self.speculate = speculate
        self.speculative_stats = SpeculativeStats()
        self.system = system
        self.messages: list[dict] = []
        self.settings = {"temperature": temperature, "top_p": top_p, "top_k": top_k, "min_p": min_p,
                         "seed": seed, "max_tokens": max_tokens}

    def prompt_ids(self) -> list[int]:
        """The rendered history; oldest turns go first when it does not fit with room to answer."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        room = self.model.cfg.seq_len - min(self.settings["max_tokens"], self.model.cfg.seq_len // 2)
        turns = list(self.messages)
        schemas = self.tools.schemas() if self.tools_on else None
        while True:
            ids, _ = self.tokenizer.render_chat(head + turns, add_generation_prompt=True, tools=schemas)
            if len(ids) <= room or len(turns) <= 1:
                return ids
            # drop the oldest exchange: a user turn and everything up to the next one
            later = [i for i, m in enumerate(turns) if m["role"] == "user" and i > 0]
            turns = turns[later[0]:] if later else turns[1:]

    def params(self) -> SamplingParams:
        s = self.settings
        t = self.tokenizer
        stops = (t.end_id, t.bos_id, t.user_id, t.system_id, t.assistant_id)
        if t.has_tools:     # a tool turn the model starts itself ends its answer; so does a call when no tools
            stops += (t.tool_id,) + (() if self.tools_on else (t.tool_call_id,))
        return SamplingParams(temperature=s["temperature"], top_k=s["top_k"], top_p=s["top_p"], min_p=s["min_p"],
                              max_tokens=s["max_tokens"], seed=s["seed"], stop_ids=stops)

    def reply(self, user_text: str, write=None) -> tuple[str, str]:
        """Add the user's turn, stream the answer through write(text), keep it in the history.

        Returns (answer, finish_reason); Ctrl-C during the answer gives finish_reason "interrupted"
        and keeps what was written so far.
        """
        write = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
        self.messages.append({"role": "user", "content": user_text})
        parts, reason = [], "interrupted"
        session = ToolSession(self.tools, self.tokenizer) if self.tools_on else None
        if self.speculate is None:
            events = stream(self.model, self.tokenizer, self.prompt_ids(), self.params(), tools=session)
        else:
            options = {"num_draft_tokens": GUESSES, **self.speculate}
            events = speculative_stream(self.model, self.tokenizer, self.prompt_ids(), self.params(),
                                        stats=self.speculative_stats, **options)
        try:
            for event in events:
                if event.tool is not None:
                    write(show_tool(event.tool))
                if event.text:
                    parts.append(event.text)
                    write(event.text)
                if event.finish_reason:
                    reason = event.finish_reason
        except KeyboardInterrupt:
            reason = "interrupted"
        finally:
            events.close()     # cancels the sequence if it was cut short
        answer = "".join(parts)
        # with tools the history keeps the calls and results, so the next prompt is what the model saw
        self.messages += session.messages(answer) if session is not None else [{"role": "assistant",
                                                                                "content": answer}]
        return answer, reason

    def command(self, line: str) -> str | None:
        """Run a /command; returns a line to show, or None to leave."""
        name, _, value = line[1:].partition(" ")
        value = value.strip()
        if name in ("exit", "quit"):
            return None
        if name == "help":
            return HELP
        if name == "clear":
            self.messages = []
            return "(history cleared)"
        if name == "settings":
            line = "  ".join(f"{k}={v}" for k, v in self.settings.items()) + f"  system={self.system!r}"
            line += f"  tools={','.join(self.tools.names) if self.tools_on else 'off'}"
            if self.speculate is not None:
                st = self.speculative_stats
                how = "draft model" if self.speculate.get("draft") is not None else "prompt lookup"
                line += (f"  speculative={how} (acceptance {st.acceptance_rate:.2f}, "
                         f"{st.tokens_per_target_forward:.2f} tokens per target forward)")
            return line
        if name == "system":
            self.system = value or None
            return f"(system prompt {'set' if value else 'cleared'})"
        if name == "tools":
            if self.tools is None:
                return "(no tools: none were named, this run has none, or speculative decoding is on)"
            if value in ("on", "off"):
                self.tools_on = value == "on"
            return f"(tools {'on' if self.tools_on else 'off'}: {', '.join(self.tools.names)})"
        limits = {"temperature": (float, 0.0, 100.0), "top_p": (float, 1e-9, 1.0), "top_k": (int, 0, 10**9),
                  "min_p": (float, 0.0, 1.0), "max_tokens": (int, 1, 10**6), "seed": (int, 0, 2**63 - 1)}
        if name not in limits:
            return f"unknown command /{name}; /help lists them"
        kind, lo, hi = limits[name]
        if name == "seed" and value in ("off", "none", ""):
            self.settings["seed"] = None
            return "(seed off: answers vary)"
        try:
            number = kind(value)
        except ValueError:
            return f"/{name} needs a {'whole ' if kind is int else ''}number between {lo} and {hi}"
        if not lo <= number <= hi:
            return f"/{name} must be between {lo} and {hi}"
        self.settings[name] = number
        return f"({name} = {number})"


def chat_loop(session: ChatSession, read=input, write=None, stage: str = "") -> int:
    """The read-answer loop. Ctrl-C at the prompt is a hint, Ctrl-D leaves."""
    out = write or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    out(f"lmforge chat{f' ({stage} model)' if stage else ''}. /help for commands, Ctrl-C stops an answer, "
        "Ctrl-D leaves.\n")
    while True:
        try:
            line = read("you> ")
        except EOFError:
            out("\n")
            return 0
        except KeyboardInterrupt:
            out("\n(Ctrl-D or /exit to leave)\n")
            continue
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            message = session.command(line)
            if message is None:
                return 0
            out(message + "\n")
            continue
        out("assistant> ")
        _, reason = session.reply(line, out)
        out("  [stopped]\n" if reason == "interrupted" else ("  [max tokens]\n" if reason == "length" else "\n"))


def cli_chat(args, run, cfg) -> int:
    tokenizer, model, stage = load_for_sampling(run, args.stage)
    model.eval()
    speculate = None
    if args.draft and args.prompt_lookup:
        raise SystemExit("choose one of --draft and --prompt-lookup")
    if args.draft:
        draft, vocab, _ = load_draft(args.draft, run)
        speculate = {"draft": draft, "draft_vocab": vocab}
    elif args.prompt_lookup:
        speculate = {}
    pick = lambda value, default: default if value is None else value  # noqa: E731
    tools = command_tools(getattr(args, "tools", None), run, cfg, tokenizer)
    if tools is not None and speculate is not None:
        print("(tools are off with speculative decoding)", file=sys.stderr)
    session = ChatSession(model, tokenizer, system=args.system,
                          temperature=pick(args.temperature, cfg.generate.temperature),
                          top_p=pick(args.top_p, cfg.generate.top_p), top_k=pick(args.top_k, cfg.generate.top_k),
                          min_p=pick(args.min_p, 0.0), seed=args.seed,
                          max_tokens=pick(args.max_new_tokens, max(cfg.generate.max_new_tokens, 128)),
                          speculate=speculate, tools=tools)
    try:
        import readline  # noqa: F401 - line editing and history for input(), where available
    except ImportError:
        pass
    return chat_loop(session, stage=stage)
