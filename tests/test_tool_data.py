"""The tool-use data's choices (lmforge/tasks/tool_data.py) that need no run: which facts the lookup
conversations ask about."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from lmforge.tasks.tool_data import one_per_entity


def _facts(entities: int, per_entity: int) -> list[dict]:
    return [{"entity_id": f"e{e}", "attribute": f"a{a}"} for e in range(entities) for a in range(per_entity)]


def test_lookup_questions_take_every_entity_once_before_any_twice():
    facts = _facts(30, 4)
    chosen = one_per_entity(facts, 45, random.Random(1))
    assert len(chosen) == 45 and len({(f["entity_id"], f["attribute"]) for f in chosen}) == 45
    first = Counter(f["entity_id"] for f in chosen[:30])
    assert len(first) == 30                      # the first round names every entity once
    assert max(Counter(f["entity_id"] for f in chosen).values()) == 2
    assert one_per_entity(facts, 45, random.Random(1)) == chosen
    assert len(one_per_entity(facts, 1000, random.Random(1))) == 120     # no fact twice, however many asked
    assert one_per_entity([], 5, random.Random(1)) == []


def test_running_out_of_invented_names_is_one_line_naming_the_settings():
    from lmforge.errors import StageError
    from lmforge.world.shelf import NAME_MIDDLES, NAME_PARTS, invented_name
    heads, tails = NAME_PARTS["river"]
    taken = {(h + m + t).lower() for h in heads for m in [""] + list(NAME_MIDDLES) for t in tails}
    with pytest.raises(StageError) as err:
        invented_name("river", taken, random.Random(0))
    message = str(err.value)
    assert "\n" not in message and "tools.lookup_practice" in message and "synth.lookup_unanswerable" in message
