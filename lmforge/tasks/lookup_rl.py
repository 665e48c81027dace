"""Lookup questions as GRPO tasks (`grpo.tasks=lookup`): RL where only a copied query and a value
read from the result earn the reward.

    from lmforge.tasks.lookup_rl import lookup_tasks
    split, stats, sources = lookup_tasks(run, tokenizer, max_prompt, schemas, seed, sft_path)
    split["train"], split["test"], split["dev"]          # lists of Task

    lmforge run --run-dir runs/tiny-tools --to sft synth.tool_use=calls sft.max_steps=1600 tools.lookup_practice=3000
    lmforge grpo --run-dir runs/tiny-tools grpo.tasks=lookup "grpo.tools=[lookup]" grpo.max_completion_tokens=160

Training tasks are questions about the reference shelf's practice entities (data/index/
practice.jsonl, invented names that exist only on the shelf) that no SFT conversation names
(so `tools.lookup_practice` must exceed what `synth.lookup_questions` covers, or
`synth.lookup_entities` must keep some from SFT) and, one task in
five, questions about names invented here that neither the world, the shelf nor the evaluation
uses, whose right answer is "I don't know". Test and dev are the SFT stage's lookup evaluation
questions (datasets/lookup_eval.jsonl): every fact of the unseen test (dev) entities, which
nothing trains on, in a fixed shuffled order (the evaluation takes the first ones, and the file
lists entities kind by kind), plus half of its unanswerable questions each (alternating in file
order).
Every task carries `judge: "fact"`, so the `correctness` reward and the evaluation score it
with the ground-truth judge (lmforge/evals/reasoning.py's is_right), and `difficulty` is
"unseen" or "unanswerable" (the report's per-level rows; training tasks say "practice").
"""
from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

from ..errors import StageError
from ..evals.judge import value_kind
from ..files import read_jsonl
from .reasoning import Task, make_task
from ..world.shelf import invented_name

UNANSWERABLE_EVERY = 5        # one training task in five is about an invented name
IDK = "I don't know"


def _columns(row: dict, known: bool, level: str, facts_path: str) -> dict:
    return {"question": row["question"], "answer": row.get("value") if known else IDK, "judge": "fact",
            "known": known, "value": row.get("value"), "entity": row["entity"], "attribute": row["attribute"],
            "language": row["language"], "kind": row.get("kind"), "facts": facts_path, "difficulty": level}


def _invented(fresh: list[dict], taken: set[str], rng: random.Random) -> list[dict]:
    """Questions about invented names, one name for every UNANSWERABLE_EVERY - 1 practice
    entities, each asked everything a practice entity of its kind is asked (so one task in
    UNANSWERABLE_EVERY is unanswerable). A kind whose names are all taken is skipped."""
    by_entity: dict[str, list[dict]] = {}
    for row in fresh:
        by_entity.setdefault(row["entity"], []).append(row)
    donors = list(by_entity.values())
    rng.shuffle(donors)
    out: list[dict] = []
    full: set[str] = set()
    for rows in donors[:len(donors) // (UNANSWERABLE_EVERY - 1)]:
        kind, donor = rows[0]["kind"], rows[0]["entity"]
        if kind in full:
            continue
        try:
            name = invented_name(kind, taken, rng)
        except StageError:
            full.add(kind)
            continue
        taken.add(name.lower())
        out += [{"question": r["question"].replace(donor, name), "entity": name, "kind": kind,
                 "attribute": r["attribute"], "language": r["language"]} for r in rows]
    return out


def asked_in(sft_path: Path, names: set[str]) -> set[str]:
    """The names among `names` that some conversation of the SFT data mentions."""
    if not names or not sft_path.exists():
        return set()
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
                         + r")(?!\w)")
    found: set[str] = set()
    with open(sft_path, encoding="utf-8") as handle:
        for line in handle:
            found.update(pattern.findall(line))
    return found


def lookup_tasks(run, tokenizer, max_prompt: int, tools: list | None, seed: int,
                 sft_path: Path | None = None, values: str = "all") -> tuple[dict, dict, dict]:
    """({"train", "test", "dev"} -> [Task]), the load counts of each, and where each came from.
    Practice entities that a conversation of the SFT data (`sft_path`) asks about are left out
    of training: the SFT model has seen their names, and GRPO is to learn what the test needs,
    reading a name it has never seen into the query and the answer out of the result.
    values = "number" or "word" trains only on the practice questions whose answer is of that
    kind (evals/judge.value_kind; the invented names are asked the same questions), aiming RL at
    what the SFT model misses; test and dev keep every kind."""
    practice_path = run.path("data", "index", "practice.jsonl")
    eval_path = run.path("datasets", "lookup_eval.jsonl")
    for path, stage in ((practice_path, "index"), (eval_path, "synth")):
        if not path.exists():
            raise StageError(f"grpo.tasks=lookup needs {path} (`lmforge {stage}` with tools.lookup_practice > 0 "
                             f"and synth.tool_use=calls)")
    facts_path = str(run.world_dir / "facts.jsonl")
    practice = read_jsonl(practice_path)
    evaluation = read_jsonl(eval_path)
    if not practice:
        raise StageError(f"{practice_path} has no practice entities (tools.lookup_practice is 0)")
    seen = asked_in(sft_path, {r["entity"] for r in practice}) if sft_path is not None else set()
    fresh = [r for r in practice if r["entity"] not in seen]
    if not fresh:
        raise StageError(f"every practice entity in {practice_path} is asked about in the SFT data {sft_path}: "
                         f"raise tools.lookup_practice above the entities synth.lookup_questions covers, or "
                         f"keep some from SFT with synth.lookup_entities")
    if values != "all":
        fresh = [r for r in fresh if value_kind(r["value"]) == values]
        if not fresh:
            raise StageError(f"grpo.lookup_values={values}: no practice question in {practice_path} has such an answer")
    taken = {r["entity"].lower() for r in practice + evaluation}
    taken |= {r["entity"].lower() for r in read_jsonl(facts_path)}
    rng = random.Random(f"{seed}:lookup-rl")
    invented = _invented(fresh, taken, rng)
    rows = {"train": [_columns(r, True, "practice", facts_path) for r in fresh]
            + [_columns(r, False, "unanswerable", facts_path) for r in invented]}
    rng.shuffle(rows["train"])
    unanswerable = [r for r in evaluation if r["split"] == "unanswerable"]
    for name in ("test", "dev"):
        unseen = [r for r in evaluation if r["split"] == f"unseen_{name}"]
        # The file lists entities kind by kind (persons first), and the evaluation takes the first
        # eval_per_difficulty of each level: a fixed shuffle, the same for every run seed, makes
        # that prefix a sample of all kinds, not mostly persons (whose years and trades are easier).
        random.Random(f"lookup-{name}-order").shuffle(unseen)
        rows[name] = [_columns(r, True, "unseen", facts_path) for r in unseen]
        rows[name] += [_columns(r, False, "unanswerable", facts_path)
                       for r in unanswerable[(name == "dev")::2]]
    tasks: dict[str, list[Task]] = {}
    stats: dict[str, Counter] = {}
    for name, items in rows.items():
        stats[name] = Counter()
        made = (make_task(row, tokenizer, max_prompt, "answer", tools, stats[name]) for row in items)
        tasks[name] = [task for task in made if task is not None]
    entities = len({r["entity"] for r in fresh})
    chosen = "" if values == "all" else f", their questions with a {values} for answer"
    sources = {"train": f"{practice_path} ({entities} practice entities no SFT conversation names, "
                        f"{len(seen)} left out{chosen}; + {len({r['entity'] for r in invented})} invented names)",
               "test": f"{eval_path} (unseen_test + half the unanswerable)",
               "dev": f"{eval_path} (unseen_dev + half the unanswerable)"}
    return tasks, stats, sources
