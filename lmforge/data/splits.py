"""Splits by what a model can memorise: keyed hashes of facts (with their reverses) and of solution chains.

    from lmforge.data.splits import keyed_fraction, fact_groups, pick
    groups = fact_groups(facts)                      # fact key -> group key (a fact and its reverse share one)
    pick(keyed_fraction(groups["invention-00003/inventor"], seed=23), [("test", 0.2), ("dev", 0.1)], "train")

A held-out set measures recall of training data wherever it shares something learnable
with training, whatever the surface text. So every split here is decided by the unit a
model can memorise, never by the wording:

  - a fact is (entity, attribute), in both languages at once, and a fact whose value is
    another entity that states this one back ("Lumograph was invented by Ada Berg" and
    "Ada Berg is known for Lumograph") is the same unit: `fact_groups`;
  - an unseen entity is the unit for "I don't know" (lmforge/world/ partitions them);
  - a word problem's unit is its solution chain, the sequence of operands and operators
    (lmforge/tasks/reasoning.py), whatever the names and item words around it.

The held-out sets' overlap with training is then counted by a different method, from the
written text (lmforge/evals/overlap.py), and recorded in each stage's manifest.
"""
from __future__ import annotations

import hashlib


def keyed_fraction(key: str, seed) -> float:
    """A stable number in [0, 1) from (seed, key): the same key always lands in the same split."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(u: float, shares: list[tuple[str, float]], rest: str) -> str:
    """The split whose cumulative share first exceeds u, else `rest`."""
    total = 0.0
    for name, share in shares:
        total += share
        if u < total:
            return name
    return rest


def fact_key(fact: dict) -> str:
    return f"{fact['entity_id']}/{fact['attribute']}"


def fact_groups(facts: list[dict]) -> dict[str, str]:
    """fact key -> group key. A fact is its own group unless its value names another entity
    one of whose facts has this fact's entity as its value (a reverse fact): the two then
    share the smaller key, so no split ever separates a fact from its reverse."""
    id_of = {f["entity"]: f["entity_id"] for f in facts}
    pointing: dict[tuple[str, str], list[str]] = {}     # (from entity id, to entity id) -> fact keys
    for fact in facts:
        target = id_of.get(fact["value"])
        if target is not None and target != fact["entity_id"]:
            pointing.setdefault((fact["entity_id"], target), []).append(fact_key(fact))
    groups = {fact_key(f): fact_key(f) for f in facts}
    for (source, target), keys in pointing.items():
        back = pointing.get((target, source))
        if back:
            shared = min(keys + back)
            for key in keys + back:
                groups[key] = shared
    return groups
