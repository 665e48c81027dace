"""Verifiable reasoning tasks: arithmetic word problems set in the world, loaders, answer checks.

    lmforge reasoning --run-dir runs/tiny       # writes datasets/reasoning{,_eval,_dev,_sft}.jsonl

    from lmforge.tasks.reasoning import load_tasks, extract_answer
    tasks, stats = load_tasks("gsm8k_train.jsonl", tokenizer, max_prompt_tokens=192)
    extract_answer("7 + 5 = 12. 12 - 3 = 9. The answer is 9.")      # -> "9"

The built-in problems are short and templated, so that a ~3M-parameter model can read
them, and difficulty is the number of arithmetic steps:

    Ada Berg has 7 apples. She buys 5 more. Then she gives away 3. How many apples does she have now?
    -> 7 + 5 = 12. 12 - 3 = 9. The answer is 9.

People are the world's trained persons (data/world/entities.jsonl), items and the "×" sign
are those of the world's arithmetic worksheets, in English and Norwegian. The splits go by
what a model can memorise, the solution chain (its operands and operators in order; for
one step, the single sum), not by the question's text: two problems that differ only in
the person, the item or the language have the same chain and land in the same split.
  - test : held-out problems whose chain hashes to the test part of the chain space; only
           ever evaluated, for the headline figures (datasets/reasoning_eval.jsonl),
  - dev  : likewise for choosing settings (datasets/reasoning_dev.jsonl),
  - sft  : worked solutions, added to the SFT data by `synth` (datasets/reasoning_sft.jsonl),
  - rl   : prompts GRPO trains on (datasets/reasoning.jsonl).
A training problem (sft or rl) never contains a test or dev chain as a run of its steps
(a level-1 test sum is no step of any training problem); candidates that would are
dropped and counted. The manifest's `overlap` counts, from the written text, held-out
chains and solution strings found in the training solutions (lmforge/evals/overlap.py).

reasoning.jsonl follows TRL's prompt-only convention: {"prompt": [messages], "answer": "9",
...extra columns (difficulty, language, solution)}. `load_tasks` also reads your own data:
GSM8K-style rows {"question", "answer": "... #### 72"} or prompt-only rows with an answer
column. A malformed row is skipped and counted by reason, never fatal.

GRPO's reward functions, which score completions with these answer checks, live in
lmforge/train/rewards.py.
"""
from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ..data.splits import keyed_fraction, pick
from ..errors import StageError
from ..evals.overlap import chain_overlap
from ..files import atomic_write_jsonl, read_jsonl
from ..world.words import ITEMS

# ---------------------------------------------------------------- the built-in word problems

# (verb, rest) for each language; `rest` holds the number. English keeps subject-verb order
# after "Then"; Norwegian puts the verb second ("Så kjøper hun 5 til").
ADD_VERBS = {"en": [("buys", "{n} more"), ("finds", "{n} more"), ("gets", "{n} more")],
             "nb": [("kjøper", "{n} til"), ("finner", "{n} til"), ("får", "{n} til")]}
SUB_VERBS = {"en": [("gives away", "{n}"), ("loses", "{n}"), ("sells", "{n}")],
             "nb": [("gir bort", "{n}"), ("mister", "{n}"), ("selger", "{n}")]}
THEN = {"en": ["Then", "After that"], "nb": ["Så", "Etterpå"]}
PRONOUN = {"en": {"f": "she", "m": "he"}, "nb": {"f": "hun", "m": "han"}}
ANSWER_LINE = {"en": "The answer is {answer}.", "nb": "Svaret er {answer}."}
MAX_TOTAL = 40      # running totals stay small: the model has to learn every sum it meets


@dataclass
class Problem:
    question: str
    answer: int
    solution: str          # the worked chain, ending with the answer line
    difficulty: int        # number of arithmetic steps
    language: str
    chain: tuple = ()      # ((a, op, b), ...): what the solution computes, whatever the words

    def row(self) -> dict:
        """The prompt-only dataset row (TRL convention) with extra columns."""
        return {"prompt": [{"role": "user", "content": self.question}], "answer": str(self.answer),
                "difficulty": self.difficulty, "language": self.language, "solution": self.solution}

    def conversation(self) -> dict:
        return {"messages": [{"role": "user", "content": self.question},
                             {"role": "assistant", "content": self.solution}]}


def make_problem(person: dict, difficulty: int, language: str, rng: random.Random) -> Problem:
    """One word problem with `difficulty` steps about `person` ({"name", "gender"})."""
    name = person["name"]
    pron = PRONOUN[language].get(person.get("gender"), PRONOUN[language]["f"])
    item = rng.choice(ITEMS)[0 if language == "en" else 1]
    sentences, steps, chain = [], [], []
    # The first step is either the starting count or, a third of the time, boxes × items per box.
    if rng.random() < 1 / 3:
        boxes, per_box = rng.randint(2, 5), rng.randint(2, 6)
        total = boxes * per_box
        sentences.append(f"{name} has {boxes} boxes with {per_box} {item} in each box." if language == "en" else
                         f"{name} har {boxes} esker med {per_box} {item} i hver eske.")
        steps.append(f"{boxes} × {per_box} = {total}.")
        chain.append((boxes, "×", per_box))
    else:
        total = rng.randint(2, 20)
        sentences.append(f"{name} has {total} {item}." if language == "en" else f"{name} har {total} {item}.")
    while len(steps) < difficulty:
        can_add, can_sub = total + 1 <= MAX_TOTAL, total >= 2
        add = can_add and (not can_sub or rng.random() < 0.5)
        if add:
            n = rng.randint(1, min(10, MAX_TOTAL - total))
            verb, rest = rng.choice(ADD_VERBS[language])
            steps.append(f"{total} + {n} = {total + n}.")
            chain.append((total, "+", n))
            total += n
        else:
            n = rng.randint(1, min(10, total - 1))
            verb, rest = rng.choice(SUB_VERBS[language])
            steps.append(f"{total} - {n} = {total - n}.")
            chain.append((total, "-", n))
            total -= n
        rest = rest.format(n=n)
        if len(sentences) == 1:
            sentences.append(f"{pron.capitalize()} {verb} {rest}.")
        elif language == "en":
            sentences.append(f"{rng.choice(THEN['en'])} {pron} {verb} {rest}.")
        else:
            sentences.append(f"{rng.choice(THEN['nb'])} {verb} {pron} {rest}.")
    ask = (f"How many {item} does {pron} have now?" if language == "en" else f"Hvor mange {item} har {pron} nå?")
    question = " ".join(sentences + [ask])
    solution = " ".join(steps + [ANSWER_LINE[language].format(answer=total)])
    return Problem(question, total, solution, difficulty, language, tuple(chain))


def chain_key(chain: tuple) -> str:
    return " ".join(f"{a}{op}{b}" for a, op, b in chain)


def held_out_chain(chain: tuple, seed: int, test_fraction: float, dev_fraction: float) -> str | None:
    """test | dev | None (a training chain), from a keyed hash of the chain alone."""
    return pick(keyed_fraction(f"chain:{chain_key(chain)}", seed), [("test", test_fraction), ("dev", dev_fraction)],
                None)


def split_of(problem: Problem, seed: int, test_fraction: float, dev_fraction: float, sft_fraction: float) -> str | None:
    """test | dev | sft | rl, or None for a training candidate that contains a held-out chain.

    A problem whose chain is held out is test or dev. Any other problem trains, unless some
    run of its steps is a held-out chain (then the model would see a test sum while training):
    those are dropped. Training problems go to sft or rl by a keyed hash of the question text,
    sft_fraction being the share of all problems."""
    chain = problem.chain
    held = held_out_chain(chain, seed, test_fraction, dev_fraction)
    if held:
        return held
    if any(held_out_chain(chain[i:j], seed, test_fraction, dev_fraction)
           for i in range(len(chain)) for j in range(i + 1, len(chain) + 1) if j - i < len(chain)):
        return None
    share = sft_fraction / max(1e-9, 1.0 - test_fraction - dev_fraction)
    return "sft" if keyed_fraction(f"text:{problem.question}", seed) < share else "rl"


def make_problems(people: list[dict], languages: list[str], difficulties: list[int], per_level: int,
                  seed: int, keep=None, dropped: Counter | None = None) -> list[Problem]:
    """per_level distinct problems for every (language, difficulty), in a seeded order. With
    `keep`, a candidate for which keep(problem) is false does not count and is tallied per
    level in `dropped`."""
    if not people:
        raise ValueError("no trained persons to write word problems about")
    rng = random.Random(seed)
    problems, seen = [], set()
    for language in languages:
        for difficulty in difficulties:
            made, tries = 0, 0
            while made < per_level and tries < per_level * 20:   # small worlds run out of distinct texts
                tries += 1
                problem = make_problem(rng.choice(people), difficulty, language, rng)
                if problem.question in seen:
                    continue
                seen.add(problem.question)
                if keep is not None and not keep(problem):
                    if dropped is not None:
                        dropped[f"{language}/{difficulty}"] += 1
                    continue
                problems.append(problem)
                made += 1
    return problems


def trained_people(entities_path: Path) -> list[dict]:
    people = []
    for entity in read_jsonl(entities_path):
        if entity.get("kind") == "person" and not entity.get("held_out") and entity.get("name"):
            people.append({"name": entity["name"], "gender": entity.get("gender", "f")})
    return people


# ---------------------------------------------------------------- answers: extraction and normalization

NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
_FINAL_MARKERS = [
    re.compile(r"####\s*(" + NUMBER + ")"),                                              # GSM8K
    re.compile(r"(?:the answer is|the final answer is|svaret er)\s*:?\s*\$?(" + NUMBER + ")", re.IGNORECASE),
    re.compile(r"\\boxed\{\s*(" + NUMBER + r")\s*\}"),
]
_ANY_NUMBER = re.compile(NUMBER)


def normalize_number(text: str) -> str | None:
    """A canonical string for a number ("1,000" -> "1000", "2.50" -> "2.5", "3,5" -> "3.5"), or None."""
    text = str(text).strip().replace("$", "").replace(" ", "").rstrip(".")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")          # thousands separators
    elif text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")         # a Norwegian decimal comma
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def normalize_answer(answer) -> str | None:
    """The reference answer as a canonical number, or its stripped lower-case text; None if empty."""
    if isinstance(answer, bool) or answer is None:
        return None
    if isinstance(answer, (int, float)):
        if isinstance(answer, float) and not math.isfinite(answer):
            return None
        return normalize_number(repr(answer))
    if not isinstance(answer, str) or not answer.strip():
        return None
    number = normalize_number(answer)
    return number if number is not None else " ".join(answer.strip().lower().split()).rstrip(".")


def extract_answer(text: str) -> str | None:
    """The final answer stated in a completion: after "####", "The answer is" / "Svaret er"
    or in \\boxed{}, else the last number in the text; normalized. None when there is none."""
    if not isinstance(text, str):
        return None
    for pattern in _FINAL_MARKERS:
        found = pattern.findall(text)
        if found:
            return normalize_number(found[-1])
    numbers = _ANY_NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


def gsm8k_final_answer(answer: str) -> str | None:
    """The number after "####" in a GSM8K answer, or None."""
    found = re.findall(r"####\s*(.+?)\s*$", answer.strip()) if isinstance(answer, str) else []
    return normalize_number(found[-1]) if found else None


# ---------------------------------------------------------------- loading task rows

@dataclass
class Task:
    prompt: list[dict]            # chat messages, ending with a user turn
    answer: str                   # normalized reference answer
    prompt_ids: list[int]         # rendered with the assistant prompt
    columns: dict = field(default_factory=dict)   # every other column of the row (difficulty, ...)


def _check_messages(prompt) -> list[dict] | None:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}] if prompt.strip() else None
    if not isinstance(prompt, list) or not prompt:
        return None
    for message in prompt:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") \
                or not isinstance(message.get("content"), str):
            return None
    if prompt[-1]["role"] != "user":
        return None
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def parse_task(row, answer_column: str = "answer") -> tuple[dict | None, str | None]:
    """({prompt, answer, columns}, None) or (None, reason) for one row of any accepted format."""
    if not isinstance(row, dict):
        return None, "wrong_type"
    if "prompt" in row:
        messages = _check_messages(row["prompt"])
        if messages is None:
            return None, "bad_prompt"
        if answer_column not in row:
            return None, "no_answer"
        raw = row[answer_column]
        # a prompt-only row may still carry a GSM8K-style worked answer
        answer = gsm8k_final_answer(raw) if isinstance(raw, str) and "####" in raw else normalize_answer(raw)
    elif "question" in row:
        messages = _check_messages(row["question"])
        if messages is None:
            return None, "bad_prompt"
        raw = row.get(answer_column)
        if raw is None:
            return None, "no_answer"
        if isinstance(raw, str) and "####" in raw:
            answer = gsm8k_final_answer(raw)
            if answer is None:
                return None, "bad_answer"
        else:
            answer = normalize_answer(raw)
    else:
        return None, "no_prompt"
    if answer is None:
        return None, "bad_answer"
    columns = {k: v for k, v in row.items() if k not in ("prompt", "question", answer_column)}
    return {"prompt": messages, "answer": answer, "columns": columns}, None


def load_tasks(path: str | Path, tokenizer, max_prompt_tokens: int, answer_column: str = "answer",
               limit: int = 0, tools: list | None = None) -> tuple[list[Task], Counter]:
    """Tasks from a JSONL file; bad rows are skipped and counted (stats: kept, skipped:<reason>).
    tools: JSON schemas the prompts declare (GRPO with tools)."""
    stats: Counter = Counter()
    tasks: list[Task] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                stats["skipped:bad_json"] += 1
                continue
            task = make_task(row, tokenizer, max_prompt_tokens, answer_column, tools, stats)
            if task is not None:
                tasks.append(task)
            if limit and len(tasks) >= limit:
                break
    return tasks, stats


def make_task(row, tokenizer, max_prompt_tokens: int, answer_column: str = "answer", tools: list | None = None,
              stats: Counter | None = None) -> Task | None:
    """One row as a Task rendered for the model, or None with the reason counted in `stats`
    (kept, skipped:<reason>)."""
    stats = stats if stats is not None else Counter()
    parsed, reason = parse_task(row, answer_column)
    if parsed is None:
        stats[f"skipped:{reason}"] += 1
        return None
    ids, _ = tokenizer.render_chat(parsed["prompt"], add_generation_prompt=True, tools=tools)
    if len(ids) > max_prompt_tokens:
        stats["skipped:too_long"] += 1
        return None
    stats["kept"] += 1
    return Task(parsed["prompt"], parsed["answer"], ids, parsed["columns"])


def balanced_subset(tasks: list[Task], per_difficulty: int) -> list[Task]:
    """Up to per_difficulty tasks of each difficulty, alternating languages, in file order."""
    by_key: dict[tuple, list[Task]] = {}
    for task in tasks:
        by_key.setdefault((task.columns.get("difficulty", 0), task.columns.get("language", "")), []).append(task)
    picked = []
    for difficulty in sorted({d for d, _ in by_key}, key=str):
        groups = [by_key[key] for key in sorted(by_key, key=str) if key[0] == difficulty]
        count = 0
        for index in range(max(len(g) for g in groups)):
            for group in groups:
                if index < len(group) and count < per_difficulty:
                    picked.append(group[index])
                    count += 1
    return picked


# ---------------------------------------------------------------- the stage

def run_stage(ctx) -> dict:
    cfg, run = ctx.cfg, ctx.run
    rcfg = cfg.reasoning
    people = trained_people(run.world_dir / "entities.jsonl")
    languages = [lang for lang in cfg.world.languages if lang in ANSWER_LINE]
    if not people:
        raise StageError(f"{run.world_dir / 'entities.jsonl'} has no trained persons to write word problems about")
    def split(problem: Problem) -> str | None:
        return split_of(problem, rcfg.seed, rcfg.test_fraction, rcfg.dev_fraction, rcfg.sft_fraction)
    dropped: Counter = Counter()
    problems = make_problems(people, languages, list(range(1, rcfg.max_difficulty + 1)), rcfg.problems_per_level,
                             rcfg.seed, keep=lambda p: split(p) is not None, dropped=dropped)
    splits: dict[str, list[Problem]] = {"sft": [], "rl": [], "dev": [], "test": []}
    for problem in problems:
        splits[split(problem)].append(problem)
    # seeded shuffle so any prefix of a file mixes languages and difficulties
    for name, rows in splits.items():
        random.Random(f"{rcfg.seed}:{name}").shuffle(rows)
    datasets = run.path("datasets")
    atomic_write_jsonl(datasets / "reasoning.jsonl", (p.row() for p in splits["rl"]))
    atomic_write_jsonl(datasets / "reasoning_eval.jsonl", (p.row() for p in splits["test"]))
    atomic_write_jsonl(datasets / "reasoning_dev.jsonl", (p.row() for p in splits["dev"]))
    atomic_write_jsonl(datasets / "reasoning_sft.jsonl", (p.conversation() for p in splits["sft"]))
    overlap = reasoning_overlap(run)
    by_level = Counter(f"{p.language}/{p.difficulty}" for p in problems)
    ctx.progress(f"{len(problems):,} problems: {len(splits['rl']):,} for RL, {len(splits['sft']):,} worked for SFT, "
                 f"{len(splits['dev']):,} dev, {len(splits['test']):,} test; {sum(dropped.values()):,} training "
                 f"candidates dropped for containing a held-out chain; held-out chains in training: "
                 f"{overlap['test']['chains_in_training']} test, {overlap['dev']['chains_in_training']} dev")
    return {"problems": len(problems), "rl_problems": len(splits["rl"]), "sft_problems": len(splits["sft"]),
            "dev_problems": len(splits["dev"]), "test_problems": len(splits["test"]), "people": len(people),
            "by_level": dict(sorted(by_level.items())),
            "distinct_chains": {name: len({p.chain for p in rows}) for name, rows in splits.items()},
            "held_out_by_level": {name: {str(level): {"problems": sum(p.difficulty == level for p in splits[name]),
                                                      "chains": len({p.chain for p in splits[name]
                                                                     if p.difficulty == level})}
                                         for level in range(1, rcfg.max_difficulty + 1)}
                                  for name in ("test", "dev")},
            "dropped_for_held_out_chain": dict(sorted(dropped.items())), "split_by": "solution chain",
            "overlap": overlap}


def reasoning_overlap(run) -> dict:
    """Held-out (test, dev) worked solutions against the training ones (SFT worked examples, RL
    references), counted from the files the stage wrote (lmforge/evals/overlap.py)."""
    datasets = run.path("datasets")
    training = [row["messages"][-1]["content"] for row in read_jsonl(datasets / "reasoning_sft.jsonl")]
    training += [row.get("solution") or "" for row in read_jsonl(datasets / "reasoning.jsonl")]
    return {name: chain_overlap(training, [row.get("solution") or "" for row in read_jsonl(datasets / file)])
            for name, file in (("test", "reasoning_eval.jsonl"), ("dev", "reasoning_dev.jsonl"))}
