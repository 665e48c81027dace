"""The reference shelf: one short card per entity and language, held-out (unseen) entities included.

    from lmforge.world.shelf import shelf_cards
    cards = shelf_cards(read_facts("runs/tiny/data/world/facts.jsonl"))
    cards[0]["text"]   # "Bjørn Ekreen: was born in 1885; came from Brustad; worked as a printer; ..."

The shelf is what the `lookup` tool knows beyond the corpus (lmforge/tools/lookup.py): the
only place that holds the facts of entities the model never saw. It is made from the fact
table by the `index` stage and written to `data/index/shelf.jsonl`, never to `data/raw` or
`data/clean`, so no document that collect, clean or the tokenizer read contains it (a test
checks every card against every document of a world). Its layout is its own (the name, a
colon, then "relation value" parts joined by semicolons), so no card is a sentence of any
document, answer or question either: a card reaches the model only as a tool result, and
tool results are never trained on (lmforge/chat_format.py).

Practice entities (`practice_entities`) exist only on the shelf: invented names, each with
the kind's attributes taken from different trained entities, so no one entity's facts are
copied. They are what the lookup training conversations ask about (lmforge/tasks/tool_data.py):
hundreds of names the model sees nowhere else, so that copying the asked name into the query
and reading the answer from the result is the only way to answer them; the world's own unseen
entities, the test and dev ones above all, stay out of every training conversation.
"""
from __future__ import annotations

import random
from collections import defaultdict

from ..errors import StageError
from .words import FEMALE_FIRST, LAST_HEADS, LAST_TAILS, MALE_FIRST, NAME_MIDDLES, NAME_PARTS

PRACTICE_SPLIT = "practice"


def card_text(entity: str, facts: list[dict]) -> str:
    """"Name: relation value; relation value; ..." from the entity's fact rows in one language."""
    parts = []
    for fact in facts:
        relation = fact["prompt"][len(entity):].strip() if fact["prompt"].startswith(entity) else fact["prompt"]
        parts.append(f"{relation} {fact['value']}")
    return f"{entity}: " + "; ".join(parts) + "."


def shelf_cards(facts: list[dict]) -> list[dict]:
    """One card per (entity, language), in fact-table order: {id, entity_id, entity, language,
    held_out, unseen_split, text}."""
    grouped: dict[tuple, list[dict]] = defaultdict(list)
    for fact in facts:
        grouped[(fact["entity_id"], fact["language"])].append(fact)
    cards = []
    for (entity_id, language), rows in grouped.items():
        first = rows[0]
        cards.append({"id": f"shelf/{entity_id}/{language}", "entity_id": entity_id, "entity": first["entity"],
                      "language": language, "held_out": bool(first.get("held_out")),
                      "unseen_split": first.get("unseen_split"), "text": card_text(first["entity"], rows)})
    return cards


def invented_name(kind: str, taken: set[str], rng: random.Random, middle_syllable: bool = False) -> str:
    """A name built like the world's own names that no entity (trained or held out) has;
    middle_syllable: always with one (a person's last name, another kind's whole name)."""
    # Shaped exactly like the world's names (no middle syllable while unused ones remain), so
    # "I don't know" is learned for unfamiliar names, not for an odd-looking spelling.
    for attempt in range(1000):
        middle = rng.choice(NAME_MIDDLES) if attempt >= 200 or middle_syllable else ""
        if kind == "person":
            name = f"{rng.choice(FEMALE_FIRST + MALE_FIRST)} {rng.choice(LAST_HEADS)}{middle}{rng.choice(LAST_TAILS)}"
        else:
            heads, tails = NAME_PARTS.get(kind, NAME_PARTS["place"])
            name = rng.choice(heads) + middle + rng.choice(tails)
        if name.lower() not in taken:
            return name
    raise StageError(f"could not invent an unused {kind} name ({len(taken):,} names taken): fewer invented "
                     f"entities (tools.lookup_practice) or questions about invented names "
                     f"(synth.lookup_unanswerable) leave room")


def free_plain_names(kind: str, taken: set[str]) -> int:
    """How many names of the kind without a middle syllable no entity has."""
    if kind == "person":
        names = {f"{first} {head}{tail}" for first in FEMALE_FIRST + MALE_FIRST for head in LAST_HEADS
                 for tail in LAST_TAILS}
    else:
        heads, tails = NAME_PARTS.get(kind, NAME_PARTS["place"])
        names = {head + tail for head in heads for tail in tails}
    return sum(name.lower() not in taken for name in names)


def practice_entities(facts: list[dict], count: int, seed: int = 0, mix: str = "names") -> list[dict]:
    """`count` invented entities as fact rows (entity_id "practice-00000", held_out, unseen_split
    "practice"), in every language the facts have. Kinds follow the world's shares; each
    attribute's rows (all languages) come from a different trained entity of the kind, renamed.
    A kind whose plain names (no middle syllable) are few gets at most half of the free
    ones, so the invented names of "I don't know" questions, made later from what is left,
    still look like the world's and not like odd spellings.

    mix="names": a kind whose share of plain names is used gets no more entities, so the kinds
    with many names fill the rest (at 3,000 entities: 76 % persons, 19 % rivers, 0.5 %
    companies, against the world's 30 % and 8 % and 10 %). mix="world": the world's shares
    throughout, the entities past a kind's share of plain names named with a middle syllable
    (docs/LOG.md: practising mostly persons, the SFT model read places', animals' and companies'
    facts worst)."""
    rng = random.Random(f"{seed}:practice")
    taken = {f["entity"].lower() for f in facts}
    donors: dict[tuple, list[list[dict]]] = defaultdict(list)     # (kind, attribute) -> [rows of one entity]
    rows_of: dict[tuple, list[dict]] = defaultdict(list)
    kinds: dict[str, set] = defaultdict(set)
    for fact in facts:
        if fact.get("held_out"):
            continue                          # unseen entities' facts are nobody's donors
        rows_of[(fact["entity_id"], fact["attribute"])].append(fact)
        kinds[fact["kind"]].add(fact["entity_id"])
    for (entity_id, attribute), rows in rows_of.items():
        donors[(rows[0]["kind"], attribute)].append(rows)
    attributes = defaultdict(set)
    for kind, attribute in donors:
        attributes[kind].add(attribute)
    room = {kind: free_plain_names(kind, taken) for kind in kinds}
    caps = {kind: (free // 2 if free >= 30 else count) for kind, free in room.items()}
    out: list[dict] = []
    made: dict[str, int] = defaultdict(int)
    for number in range(count):
        open_kinds = sorted(k for k in kinds if made[k] < caps[k] or mix == "world")
        if not open_kinds:
            break
        kind = rng.choices(open_kinds, weights=[len(kinds[k]) for k in open_kinds])[0]
        made[kind] += 1
        name = invented_name(kind, taken, rng, middle_syllable=made[kind] > caps[kind])
        taken.add(name.lower())
        for attribute in sorted(attributes[kind]):
            rows = rng.choice(donors[(kind, attribute)])
            donor = rows[0]["entity"]
            for row in rows:
                out.append({**row, "entity_id": f"practice-{number:05d}", "entity": name, "held_out": True,
                            "unseen_split": PRACTICE_SPLIT,
                            **{key: row[key].replace(donor, name) for key in ("prompt", "question", "answer")}})
    return out
