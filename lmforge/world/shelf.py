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
"""
from __future__ import annotations

from collections import defaultdict


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
