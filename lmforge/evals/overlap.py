"""Overlap between held-out sets and training text, counted from the written text by a different
method from the one that split them.

    from lmforge.evals.overlap import chain_overlap, prompt_overlap, statement_overlap, FactFinder
    chain_overlap(training_solutions, test_solutions)      # word problems: equation chains, verbatim text
    prompt_overlap(train_texts, held_prompts, FactFinder(facts))   # questions: facts, reverses, unseen names
    statement_overlap(conversations, held_facts, facts)    # SFT: held-out facts stated in training answers

The splits themselves are keyed hashes of structured keys (lmforge/data/splits.py): a
fact's (entity, attribute) group, an unseen entity's id, a word problem's chain of operands
and operators. These counts never look at those keys. They read the texts the stages wrote
and find in them, with the world's own strings,

  - equations ("7 + 5 = 12") by a regular expression, and each held-out solution's chain of
    them as a contiguous run of some training solution, and its equation text verbatim;
  - which fact a prompt asks, by the fact table's question strings (both languages);
  - entity names, as whole words;
  - (entity, value) statements: an entity's name and a value of its held-out fact in one
    unit of training text (a user turn with one sentence of its answer), which also finds
    the reverse fact ("Lumograph was invented by Ada Berg" states Ada Berg's known_for).

Every count named *_in_training must be 0; stages record them in their manifests under
`overlap`, and a micro run's tests assert them. Counts marked informational (the entity
of a known fact named elsewhere, single equations of a longer chain) are what a fact or
chain split allows by design, and are there so nobody has to guess.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from .judge import states_value, word_pattern

SENTENCE = re.compile(r"(?<=[.!?])\s+")
ANSWER_LINE = re.compile(r"\s*(?:The answer is|Svaret er)\b.*$", re.DOTALL)


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE.split(text.strip()) if s]


def conversation_texts(messages: list[dict]) -> list[str]:
    """Units of a conversation: each user turn joined with one sentence of the answer after it
    (a curt "1820." states a fact only together with its question)."""
    units, question = [], ""
    for message in messages:
        if message["role"] == "user":
            question = message["content"]
        elif message["role"] == "assistant":
            units += [f"{question} {sentence}" for sentence in sentences(message["content"])] or [question]
    return units


class FactFinder:
    """The fact table, read for what a text names: entities (whole words) and the facts it asks
    (a fact's question string, in either language, inside the text)."""

    def __init__(self, facts: list[dict]):
        self.facts = facts
        self.kind_of = {f["entity"]: f["kind"] for f in facts}
        self.unseen = {f["entity"] for f in facts if f["held_out"]}
        self.questions: dict[str, list[tuple[str, tuple[str, str]]]] = {}
        self.value_of: dict[tuple[str, str], set[str]] = {}
        self.facts_of: dict[str, list[dict]] = {}
        for fact in facts:
            key = (fact["entity"], fact["attribute"])
            self.questions.setdefault(fact["entity"], []).append((fact["question"], key))
            self.value_of.setdefault(key, set()).add(fact["value"])
            self.facts_of.setdefault(fact["entity"], []).append(fact)
        self._names = word_pattern(self.kind_of)

    def names(self, text: str) -> set[str]:
        return set(self._names.findall(text)) if self._names is not None else set()

    def asked(self, text: str) -> set[tuple[str, str]]:
        """(entity, attribute) of every fact whose question string occurs in text."""
        return {key for name in self.names(text) for question, key in self.questions[name] if question in text}

    def reverses(self, key: tuple[str, str]) -> set[tuple[str, str]]:
        """Facts that state `key` back: a fact of the value's entity whose value is this entity."""
        entity = key[0]
        return {(f["entity"], f["attribute"]) for value in self.value_of.get(key, ()) if value in self.kind_of
                for f in self.facts_of[value] if f["value"] == entity}


def prompt_overlap(train_texts: Iterable[str], held_prompts: list[str], finder: FactFinder) -> dict:
    """How many held-out prompts ask a fact (or the reverse of one) that a training text asks,
    or name an unseen entity that a training text names. train_texts: every training prompt,
    and the answers trained on where there are any."""
    asked, named, seen = set(), set(), set()
    for text in train_texts:
        asked |= finder.asked(text)
        named |= finder.names(text)
        seen.add(" ".join(text.split()))
    same = facts = reverse = unseen = known_named = 0
    for prompt in held_prompts:
        same += " ".join(prompt.split()) in seen
        keys = finder.asked(prompt)
        facts += bool(keys & asked)
        reverse += any(finder.reverses(key) & asked for key in keys)
        entities = {entity for entity, _ in keys} or finder.names(prompt)
        unseen += bool({e for e in entities if e in finder.unseen} & named)
        known_named += bool({e for e in entities if e not in finder.unseen} & named)
    return {"held_out_prompts": len(held_prompts), "same_prompt_in_training": same, "facts_asked_in_training": facts,
            "reverse_facts_asked_in_training": reverse, "unseen_entities_named_in_training": unseen,
            "known_entities_named_in_training (informational)": known_named}


def statement_overlap(conversations: Iterable[list[dict]], held_facts: list[dict], facts: list[dict]) -> dict:
    """How many held-out facts (rows of the fact table) some training conversation states:
    the entity's name and the fact's value in one unit (conversation_texts), and how many of
    those are reverse facts (the value is another entity's name)."""
    finder = FactFinder(facts)
    by_entity: dict[str, list[int]] = {}
    for i, fact in enumerate(held_facts):
        by_entity.setdefault(fact["entity"], []).append(i)
    names = word_pattern(by_entity)
    stated: set[int] = set()
    if names is not None:
        for messages in conversations:
            for unit in conversation_texts(messages):
                for name in set(names.findall(unit)):
                    stated |= {i for i in by_entity[name] if states_value(unit, held_facts[i]["value"])}
    reverse = sum(held_facts[i]["value"] in finder.kind_of for i in stated)
    return {"held_out_facts": len(held_facts), "stated_in_training": len(stated),
            "reverse_facts_stated_in_training": reverse}


def names_in(texts: Iterable[str], names: Iterable[str]) -> set[str]:
    """Which of `names` occur (as whole words) in any of the texts."""
    pattern = word_pattern(names)
    found: set[str] = set()
    if pattern is not None:
        for text in texts:
            found |= set(pattern.findall(text))
    return found


_EQUATION = re.compile(r"(-?\d+)\s*([+\-×x*])\s*(-?\d+)\s*=\s*(-?\d+)")


def equations(text: str) -> list[tuple[str, str, str, str]]:
    """The "a op b = c" lines of a worked solution, in order ("x" and "*" read as "×")."""
    if not isinstance(text, str):
        return []
    return [(a, "×" if op in "x*" else op, b, c) for a, op, b, c in _EQUATION.findall(text)]


def chain_overlap(train_solutions: Iterable[str], held_solutions: list[str]) -> dict:
    """Held-out worked solutions against training ones, from their text: a held-out chain (its
    equations in order) that occurs as a contiguous run of a training solution's equations, or
    its equation text verbatim anywhere in the training solutions, is in training.
    `equations_seen` (informational) counts single held-out equations that some training
    solution also uses: what one step of a longer held-out chain may share by design."""
    runs: set[tuple] = set()
    singles: set[tuple] = set()
    texts = []
    for text in train_solutions:
        chain = equations(text)
        singles |= set(chain)
        runs |= {tuple(chain[i:j]) for i in range(len(chain)) for j in range(i + 1, len(chain) + 1)}
        texts.append(text)
    joined = "\n".join(texts)
    in_runs = verbatim = seen = total = 0
    for solution in held_solutions:
        chain = equations(solution)
        in_runs += bool(chain) and tuple(chain) in runs
        worked = ANSWER_LINE.sub("", solution).strip()
        verbatim += bool(worked) and re.search(r"(?<![\d.])" + re.escape(worked), joined) is not None
        seen += sum(eq in singles for eq in chain)
        total += len(chain)
    return {"held_out_problems": len(held_solutions), "chains_in_training": in_runs,
            "solutions_verbatim_in_training": verbatim,
            "equations_seen_in_training (informational)": f"{seen} of {total}"}
