"""Tool-use conversations for SFT, written by the synth stage; and their evaluation questions.

    from lmforge.tasks.tool_data import tool_conversations, write_out
    rows, stats = tool_conversations(run, cfg, usable_facts, facts, rng)   # [{"messages", "tools"}, ...]

Four kinds, each with the tools declared (rows in TRL's tool-calling format: "messages" with
`tool_calls` on assistant turns and `tool` turns, plus a "tools" column of JSON schemas):

  - worked problems whose every step goes through `calculator`: the assistant calls it with
    the step ("7 + 5"), reads the result and writes the step out ("7 + 5 = 12. "), then the
    next; the answer line last. Problems come from the reasoning stage's SFT split, after the
    ones synth adds in plain form, so no held-out chain is ever worked (its overlap count);
  - questions answered from a real `lookup`, about the reference shelf's *practice* entities
    (invented names that exist only on the shelf, lmforge/world/shelf.py) and the world's
    *reserved* unseen partition, every entity once before any twice: the assistant copies the
    entity's name from the question into the query (a whole question would rank other entities'
    question lines first: their words match) and answers with the fact's sentence. So many
    names, each seen nowhere else, leave copying as the only way to answer. These are the
    lookup's training entities; its test entities are the unseen *test* partition, which nothing
    trains on (the same ones the preference stages' "I don't know" figures use, there without tools);
  - questions about invented names (built like the world's names, used nowhere) whose lookup
    finds only other entities: the answer is "I don't know";
  - conversations that need no tool: a greeting, or a question the user's own message answers.

Tool results are real: the calculator and the run's lookup index are called. A lookup whose
results do not state the asked fact is dropped and counted (`lookup_missed`), as is any
conversation whose results would show the model something it must not see in SFT: an
unseen entity of another partition, or a fact SFT holds out (`dropped_for_leak`).

With `synth.tool_use=plain` the same conversations are written out without tools: the calls
and results removed, the assistant's pieces joined ("7 + 5 = 12. 12 - 3 = 9. The answer is
9."; a lookup answer as if recalled). That is the no-tools baseline the tool arm is
compared with.

`lookup_eval_rows` lists the questions the SFT stage asks with and without lookup:
unseen-entity questions (test, and dev for settings) and unanswerable ones about invented
names that no training conversation uses.
"""
from __future__ import annotations

import json
import random
from collections import Counter

from ..chat_format import function_of
from ..evals.judge import states_value, word_pattern
from ..evals.overlap import ANSWER_LINE, equations
from ..files import read_jsonl
from ..tools.calculator import calculate
from ..tools.lookup import practice_facts
from ..world.shelf import PRACTICE_SPLIT
from ..tools.registry import ToolBox, load_tools
from .phrasing import IDK_ANSWERS, ask, invented_name

GREETINGS = {"en": [("Hi!", "Hello! Ask me about the people, places and things of the world, or give me a sum."),
                    ("Hello, who are you?", "I am a small assistant. I can look things up and do sums.")],
             "nb": [("Hei!", "Hei! Spør meg om folk, steder og ting i verden, eller gi meg et regnestykke."),
                    ("Hei, hvem er du?", "Jeg er en liten assistent. Jeg kan slå opp ting og regne.")]}


def call(name: str, arguments: dict) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


def tool_turn(name: str, content: str) -> dict:
    return {"role": "tool", "name": name, "content": content}


def calculator_messages(question: str, solution: str, calculate) -> list[dict] | None:
    """A worked solution as calculator calls, one per step; None when a step's result differs
    from the calculator's (it never should)."""
    messages = [{"role": "user", "content": question}]
    said = ""
    for a, op, b, c in equations(solution):
        expression = f"{a} {op} {b}"
        result = calculate(expression)
        if result != c:
            return None
        messages += [{"role": "assistant", "content": said, "tool_calls": [call("calculator",
                                                                                 {"expression": expression})]},
                     tool_turn("calculator", result)]
        said = f"{expression} = {result}. "
    answer = ANSWER_LINE.search(solution)
    if answer is None or said == "":
        return None
    return messages + [{"role": "assistant", "content": said + answer.group(0).strip()}]


def answered_by(result: str, entity: str, value: str) -> bool:
    """Does one passage of a lookup result state the fact (the entity's name and the value)?"""
    return any(states_value(line, entity) and states_value(line, value) for line in result.splitlines())


def lookup_messages(user_text: str, query: str, result: str, answer: str) -> list[dict]:
    return [{"role": "user", "content": user_text},
            {"role": "assistant", "content": "", "tool_calls": [call("lookup", {"query": query})]},
            tool_turn("lookup", result), {"role": "assistant", "content": answer}]


def write_out(messages: list[dict]) -> list[dict]:
    """The same conversation without tools: calls and results removed, the assistant's pieces
    between them joined into one answer (the plain-arithmetic / recalled-text baseline)."""
    out: list[dict] = []
    for message in messages:
        if message["role"] == "tool":
            continue
        if message["role"] == "assistant" and out and out[-1]["role"] == "assistant":
            out[-1] = {"role": "assistant", "content": out[-1]["content"] + (message.get("content") or "")}
            continue
        out.append({"role": message["role"], "content": message.get("content") or ""})
    return out


class LeakCheck:
    """Does a tool result show what SFT must not: an unseen entity outside the reserved
    partition (the lookup's training entities), or a fact SFT holds out (name and value on one
    line of the result)?"""

    def __init__(self, facts: list[dict], held: list[dict]):
        self.states_value = states_value
        self.forbidden = word_pattern({f["entity"] for f in facts
                                       if f["held_out"] and f.get("unseen_split") != "reserved"})
        self.held: dict[str, list[str]] = {}
        for fact in held:
            self.held.setdefault(fact["entity"], []).append(fact["value"])
        self.held_names = word_pattern(self.held)

    def __call__(self, text: str) -> bool:
        if self.forbidden is not None and self.forbidden.search(text):
            return True
        if self.held_names is not None:
            for line in text.splitlines():
                for name in set(self.held_names.findall(line)):
                    if any(self.states_value(line, value) for value in self.held[name]):
                        return True
        return False


def one_per_entity(facts: list[dict], count: int, rng: random.Random) -> list[dict]:
    """`count` facts (a random attribute and language each), every entity once before any twice:
    the more distinct names, the less a name can be memorised instead of copied."""
    groups: dict[str, list[dict]] = {}
    for fact in facts:
        groups.setdefault(fact["entity_id"], []).append(fact)
    order = list(groups.values())
    rng.shuffle(order)
    for group in order:
        rng.shuffle(group)
    out: list[dict] = []
    for turn in range(max((len(g) for g in order), default=0)):
        for group in order:
            if len(out) == count:
                return out
            if turn < len(group):
                out.append(group[turn])
    return out


def invented_questions(usable: list[dict], taken: set[str], count: int, rng: random.Random) -> list[dict]:
    """Questions shaped like the world's about invented names: {question, entity, kind, language}."""
    rows = []
    for _ in range(count):
        fact = rng.choice(usable)
        name = invented_name(fact["kind"], taken, rng)
        taken.add(name.lower())
        rows.append({"question": fact["question"].replace(fact["entity"], name), "entity": name,
                     "kind": fact["kind"], "attribute": fact["attribute"], "language": fact["language"]})
    return rows


def tool_conversations(run, cfg, usable: list[dict], facts: list[dict], held: list[dict],
                       rng: random.Random, taken: set[str]) -> tuple[list[dict], dict]:
    """The tool-use rows of the SFT data ({"messages", "tools"}) and their counts by kind and reason."""
    scfg = cfg.synth
    stats: Counter = Counter()
    rows: list[dict] = []
    need_lookup = scfg.lookup_questions or scfg.lookup_unanswerable
    box = ToolBox(load_tools(["calculator", "lookup"] if need_lookup else ["calculator"], run, cfg.tools))
    schemas = box.schemas()
    leaks = LeakCheck(facts, held)

    def add(messages, kind):
        rows.append({"messages": messages, "tools": schemas})
        stats[kind] += 1

    path = run.path("datasets", "reasoning_sft.jsonl")
    worked = read_jsonl(path)[scfg.reasoning_problems:scfg.reasoning_problems + scfg.tool_problems] \
        if path.exists() and scfg.tool_problems else []
    for row in worked:
        question, solution = row["messages"][0]["content"], row["messages"][-1]["content"]
        messages = calculator_messages(question, solution, calculate)
        if messages is None:
            stats["skipped:calculator_disagrees"] += 1
            continue
        add(messages, "calculator")

    if need_lookup:
        lookup = box.tools["lookup"].fn
        reserved = [f for f in facts if f["held_out"] and f.get("unseen_split") == "reserved"]
        practice = practice_facts(run)
        if scfg.lookup_entities:      # the first ones (the shelf's order); the rest are GRPO's
            kept = set(list(dict.fromkeys(f["entity_id"] for f in practice))[:scfg.lookup_entities])
            practice = [f for f in practice if f["entity_id"] in kept]
        for fact in one_per_entity(reserved + practice, scfg.lookup_questions, rng):
            result = lookup(fact["entity"])
            if not answered_by(result, fact["entity"], fact["value"]):
                stats["skipped:lookup_missed"] += 1      # no passage states the asked fact
                continue
            if leaks(result):
                stats["skipped:dropped_for_leak"] += 1
                continue
            add(lookup_messages(ask(fact, rng), fact["entity"], result, fact["answer"]),
                "lookup_practice" if fact.get("unseen_split") == PRACTICE_SPLIT else "lookup")
        for item in invented_questions(usable, taken, scfg.lookup_unanswerable, rng):
            result = lookup(item["entity"])
            if leaks(result):
                stats["skipped:dropped_for_leak"] += 1
                continue
            answer = rng.choice(IDK_ANSWERS[item["language"]]).format(name=item["entity"])
            add(lookup_messages(ask(item, rng), item["entity"], result, answer), "lookup_unanswerable")

    for index in range(scfg.no_tool_questions):
        fact = rng.choice(usable)
        if index % 4 == 0:
            greeting, reply = rng.choice(GREETINGS[fact["language"]])
            add([{"role": "user", "content": greeting}, {"role": "assistant", "content": reply}], "no_tool")
        else:
            add([{"role": "user", "content": f"{fact['answer']} {fact['question']}"},
                 {"role": "assistant", "content": fact["answer"]}], "no_tool")
    box.close()
    if scfg.tool_use == "plain":
        rows = [{"messages": write_out(row["messages"])} for row in rows]
    return rows, dict(stats)


def lookup_eval_rows(facts: list[dict], usable: list[dict], taken: set[str], count: int, seed: int) -> list[dict]:
    """Questions the SFT stage asks with lookup and without tools: every fact of the unseen test
    and dev entities (`split`: unseen_test / unseen_dev) and `count` questions about invented
    names no training conversation uses (`split`: unanswerable)."""
    rows = [{**f, "split": f"unseen_{f['unseen_split']}"} for f in facts
            if f["held_out"] and f.get("unseen_split") in ("test", "dev")]
    invented = invented_questions(usable, set(taken), count, random.Random(f"{seed}:lookup-eval"))
    return rows + [{**item, "split": "unanswerable", "held_out": True} for item in invented]


def tools_of(row: dict) -> list | None:
    """The tool schemas of a data row ("tools": a list, or a JSON string as some datasets store it)."""
    tools = row.get("tools") if isinstance(row, dict) else None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError:
            return None
    if isinstance(tools, list) and all(isinstance(t, dict) and isinstance(function_of(t), dict) for t in tools):
        return tools or None
    return None
