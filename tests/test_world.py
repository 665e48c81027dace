"""Tests of the built-in world generator (lmforge/world/) on a small world.

    python -m pytest tests/test_world.py -q
"""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from lmforge.config import WorldConfig
from lmforge.world import build_world, read_facts, world_stats, write_world
from lmforge.world.words import FEMALE_FIRST, MALE_FIRST, RELATIONS

SMALL = dict(n_entities=40, article_variants=2, stories=20, dialogues=20, arithmetic=50, extra_held_out=30)


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig(**SMALL))


@pytest.fixture(scope="module")
def docs(world):
    return list(world.documents())


def _name_pattern(names) -> re.Pattern:
    # Whole-word match, longest names first, so "Ada Berg" is not found inside "Ada Bergsen".
    alternation = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)")


def test_build_is_deterministic(world, docs):
    again = build_world(WorldConfig(**SMALL))
    assert again.entities == world.entities
    assert again.facts == world.facts
    assert list(again.documents()) == docs
    other_seed = build_world(WorldConfig(**SMALL, seed=8))
    assert [e["name"] for e in other_seed.entities] != [e["name"] for e in world.entities]


def test_entities_kinds_names_and_links(world):
    names = [e["name"] for e in world.entities]
    assert len(names) == 40 + 30 and len(set(names)) == len(names)
    assert len({e["id"] for e in world.entities}) == 70
    # no name is a word of another name (a held-out "Torvik" can't hide in "Ada Torvik")
    words = Counter(w for name in names for w in name.split() if w not in FEMALE_FIRST + MALE_FIRST)
    assert max(words.values()) == 1
    kinds = Counter(e["kind"] for e in world.entities)
    assert set(kinds) == set(RELATIONS)
    for entity in world.entities:
        assert 4 <= len(entity["attributes"]) <= 7
        assert set(entity["attributes"]) == set(RELATIONS[entity["kind"]]) == set(entity["attributes_nb"])
    # Cross-links name real entities, and only trained ones.
    by_name = {e["name"]: e for e in world.entities}
    for entity in world.entities:
        attrs = entity["attributes"]
        linked = {"person": ["birthplace"], "place": ["river"], "invention": ["inventor", "origin"],
                  "company": ["founder", "headquarters"]}.get(entity["kind"], [])
        for attr in linked:
            assert attrs[attr] in by_name and not by_name[attrs[attr]]["held_out"]
        if entity["kind"] == "invention":
            inventor = by_name[attrs["inventor"]]["attributes"]
            assert int(inventor["born_year"]) < int(attrs["year"]) < int(inventor["died_year"])
        if entity["kind"] == "place":
            assert by_name[attrs["river"]]["attributes"]["country"] == attrs["country"]


def test_default_world_has_enough_entities():
    cfg = WorldConfig()
    world = build_world(cfg)
    first = world.entities[:cfg.n_entities]
    assert len(first) >= 300 and 0.05 < sum(e["held_out"] for e in first) / len(first) < 0.15
    assert len(world.entities) == cfg.n_entities + cfg.extra_held_out
    assert all(e["held_out"] for e in world.entities[cfg.n_entities:])
    assert len({e["name"] for e in world.entities}) == len(world.entities)
    # the unseen entities are partitioned explicitly, every kind in every split
    splits = Counter((e["unseen_split"], e["kind"]) for e in world.entities if e["held_out"])
    assert {s for s, _ in splits} == {"train", "dev", "test", "reserved"}
    assert all(splits[("test", kind)] > 0 for kind in RELATIONS)
    held = sum(splits.values())
    for name, share in (("train", cfg.unseen_train_share), ("dev", cfg.unseen_dev_share),
                        ("test", cfg.unseen_test_share)):
        assert abs(sum(v for (s, _), v in splits.items() if s == name) - share * held) <= len(RELATIONS)
    assert all(f["unseen_split"] == world.by_id[f["entity_id"]]["unseen_split"] for f in world.held_out_facts())
    assert not any("unseen_split" in f for f in world.trained_facts())


def test_extra_unseen_entities_change_no_document_and_no_trained_entity(docs):
    """The pretraining corpus does not depend on how many extra unseen entities there are."""
    fewer = build_world(WorldConfig(**{**SMALL, "extra_held_out": 0}))
    more = build_world(WorldConfig(**{**SMALL, "extra_held_out": 90}))
    assert list(fewer.documents()) == docs == list(more.documents())
    strip = lambda rows: [{k: v for k, v in r.items() if k != "unseen_split"} for r in rows]  # noqa: E731
    assert strip(more.entities[:40]) == strip(fewer.entities) and strip(more.facts[:len(fewer.facts)]) == strip(fewer.facts)
    for entity in more.entities[40:]:
        attrs = entity["attributes"]
        for attr in {"person": ["birthplace"], "place": ["river"], "invention": ["inventor", "origin"],
                     "company": ["founder", "headquarters"]}.get(entity["kind"], []):
            assert not more.by_name[attrs[attr]]["held_out"]      # links point at trained entities only


def test_held_out_entities_never_appear(world, docs):
    held = [e for e in world.entities if e["held_out"]]
    assert held, "the small world should still hold some entities out"
    held_ids = {e["id"] for e in held}
    pattern = _name_pattern(e["name"] for e in held)
    for doc in docs:
        assert not pattern.search(doc["text"]), (doc["id"], pattern.search(doc["text"]).group())
        assert not held_ids & set(doc["meta"]["entities"]), doc["id"]


def test_the_reference_shelf_is_in_no_document(world, docs):
    """The lookup tool's shelf (a card per entity and language, unseen ones included) must never be
    text that collect, clean or the tokenizer read: no card, and no card's "Name: relation" opening."""
    from lmforge.world.shelf import shelf_cards
    cards = shelf_cards(world.facts)
    assert len(cards) == len(world.entities) * len(world.languages)
    assert sum(c["held_out"] for c in cards) == 2 * sum(e["held_out"] for e in world.entities)
    card = next(c for c in cards if c["language"] == "en" and c["entity_id"].startswith("person"))
    facts = [f for f in world.facts if f["entity_id"] == card["entity_id"] and f["language"] == "en"]
    assert card["text"].startswith(card["entity"] + ": ") and all(f["value"] in card["text"] for f in facts)
    openings = [c["text"][:c["text"].index(";")] for c in cards]
    text = "\n".join(doc["text"] for doc in docs)
    assert not [c["id"] for c in cards if c["text"] in text]
    assert not [o for o in openings if o in text]


def test_documents_are_well_formed(world, docs):
    sources = Counter(d["source"] for d in docs)
    assert sources == {"article": 36 * 2 * 2, "story": 20, "dialogue": 20, "arithmetic": 50}
    assert {d["meta"]["language"] for d in docs} == {"en", "nb"}
    assert len({d["id"] for d in docs}) == len(docs)
    for doc in docs:
        assert set(doc) == {"id", "text", "source", "url", "meta"}
        assert doc["url"].startswith("https://world.lmforge.local/" + doc["meta"]["language"] + "/")
        assert doc["text"].strip()
    assert any(d["url"].endswith("/v1") and "/wiki/" in d["url"] for d in docs)
    nb_text = " ".join(d["text"] for d in docs if d["meta"]["language"] == "nb")
    assert " ble født i " in nb_text and re.search("[æøå]", nb_text)


def test_meta_lists_every_mentioned_entity(world, docs):
    trained = [e for e in world.entities if not e["held_out"]]
    id_of = {e["name"]: e["id"] for e in trained}
    pattern = _name_pattern(id_of)
    for doc in docs:
        found = {id_of[m.group()] for m in pattern.finditer(doc["text"])}
        assert found == set(doc["meta"]["entities"]), doc["id"]


def test_every_trained_fact_appears_after_its_prompt(world, docs):
    texts = {lang: "\n".join(d["text"] for d in docs if d["meta"]["language"] == lang) for lang in ("en", "nb")}
    for fact in world.trained_facts():
        text = texts[fact["language"]]
        assert text.count(fact["prompt"] + " " + fact["value"]) >= 2, fact
        assert fact["answer"] == f"{fact['prompt']} {fact['value']}."
        assert fact["question"].endswith("?")


def test_prompts_are_only_ever_followed_by_their_value(world, docs):
    # The greedy continuation of a prompt is well defined: the text never puts anything
    # else after it (not "Ada Berg was born in Torvik" next to "Ada Berg was born in 1843").
    facts_by_entity = {}
    for fact in world.facts:
        facts_by_entity.setdefault((fact["entity_id"], fact["language"]), []).append(fact)
    for doc in docs:
        for entity_id in doc["meta"]["entities"]:
            for fact in facts_by_entity[(entity_id, doc["meta"]["language"])]:
                for match in re.finditer(re.escape(fact["prompt"]), doc["text"]):
                    after = doc["text"][match.end():match.end() + len(fact["value"]) + 2]
                    assert re.match(re.escape(" " + fact["value"]) + r"(?!\w)", after), (doc["id"], fact, after)


def test_facts_are_consistent(world):
    seen = {}
    for fact in world.facts:
        key = (fact["entity_id"], fact["attribute"], fact["language"])
        assert key not in seen
        seen[key] = fact["value"]
        entity = world.by_id[fact["entity_id"]]
        values = entity["attributes"] if fact["language"] == "en" else entity["attributes_nb"]
        assert values[fact["attribute"]] == fact["value"]
        assert fact["held_out"] == entity["held_out"]
        assert fact["prompt"].startswith(entity["name"] + " ")
    # Two prompts of one entity never coincide, and neither is the start of the other.
    by_entity = {}
    for fact in world.facts:
        by_entity.setdefault((fact["entity_id"], fact["language"]), []).append(fact["prompt"] + " ")
    for prompts in by_entity.values():
        for a in prompts:
            assert sum(b.startswith(a) for b in prompts) == 1, prompts
    n_attrs = sum(len(RELATIONS[e["kind"]]) for e in world.entities)
    assert len(world.facts) == 2 * n_attrs
    assert len(world.trained_facts()) + len(world.held_out_facts()) == len(world.facts)
    assert all(f["language"] == "nb" for f in world.held_out_facts("nb"))


def test_word_problems_are_correct(docs):
    arithmetic = [d for d in docs if d["source"] == "arithmetic"]
    for doc in arithmetic:
        for a, op, b, result in re.findall(r"^(\d+) ([+\-×]) (\d+) = (\d+)$", doc["text"], re.M):
            a, b, result = int(a), int(b), int(result)
            assert result == {"+": a + b, "-": a - b, "×": a * b}[op]
        for problem in doc["meta"]["problems"]:
            assert isinstance(problem["answer"], int)
    assert any("Nå har" in d["text"] for d in arithmetic)


def test_one_language_world():
    world = build_world(WorldConfig(**SMALL, languages=["nb"]))
    assert {f["language"] for f in world.facts} == {"nb"}
    assert {d["meta"]["language"] for d in world.documents()} == {"nb"}
    with pytest.raises(ValueError):
        build_world(WorldConfig(**SMALL, languages=["de"]))


def test_write_world_round_trip(world, tmp_path):
    stats = write_world(world, tmp_path / "world")
    assert stats == world_stats(world)
    assert stats["entities"] == 70 and stats["held_out_entities"] == 34 and stats["documents"] == 36 * 4 + 90
    assert stats["article_documents"] == 144 and stats["characters"] > 0
    assert read_facts(tmp_path / "world" / "facts.jsonl") == world.facts
    lines = (tmp_path / "world" / "entities.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == world.entities
    assert not list((tmp_path / "world").glob("*.tmp"))


def test_practice_entities_exist_only_on_the_shelf(world, docs):
    """The shelf's practice entities (the lookup training conversations' subjects) have new names that
    no world entity and no document has, every attribute of their kind, facts renamed from trained
    entities only (no unseen entity's fact is reused), and the same rows on every build."""
    from lmforge.world.shelf import PRACTICE_SPLIT, practice_entities, shelf_cards
    rows = practice_entities(world.facts, 40)
    assert rows == practice_entities(world.facts, 40)
    names = {r["entity"] for r in rows}
    ids = {r["entity_id"] for r in rows}
    assert len(names) == len(ids) == 40
    assert not names & {e["name"] for e in world.entities}
    assert not _name_pattern(names).search("\n".join(doc["text"] for doc in docs))
    attributes = {(f["kind"], f["attribute"]) for f in world.facts}
    for entity_id in ids:
        mine = [r for r in rows if r["entity_id"] == entity_id]
        kind = mine[0]["kind"]
        assert {r["attribute"] for r in mine} == {a for k, a in attributes if k == kind}
        assert len(mine) == len(world.languages) * len({r["attribute"] for r in mine})
    held = {(f["attribute"], f["value"], f["language"]) for f in world.facts if not f["held_out"]}
    for row in rows:
        assert row["held_out"] and row["unseen_split"] == PRACTICE_SPLIT
        assert row["question"].count(row["entity"]) == 1 and row["answer"].startswith(row["entity"])
        assert row["answer"].endswith(row["value"] + ".") and (row["attribute"], row["value"], row["language"]) in held
    cards = shelf_cards(rows)
    assert len(cards) == 40 * len(world.languages) and all(c["unseen_split"] == PRACTICE_SPLIT for c in cards)


def test_practice_entities_can_follow_the_world_kinds_past_the_plain_names(world):
    """mix="world": every kind keeps the world's share however many entities are asked for, the
    ones past a kind's share of plain names get a middle syllable (so plain names stay for the
    "I don't know" questions), and no name repeats or belongs to the world. The default ("names")
    stops a kind at its plain names, so the kinds with many names fill the rest."""
    from lmforge.world.shelf import free_plain_names, practice_entities
    from lmforge.world.words import NAME_MIDDLES, NAME_PARTS
    count = 1500
    by_kind, names = {}, {}
    for mix in ("names", "world"):
        rows = practice_entities(world.facts, count, mix=mix)
        entities = {r["entity_id"]: (r["kind"], r["entity"]) for r in rows}
        assert len(entities) == count == len({name for _, name in entities.values()})
        assert not {name.lower() for _, name in entities.values()} & {e["name"].lower() for e in world.entities}
        by_kind[mix] = Counter(kind for kind, _ in entities.values())
        names[mix] = list(entities.values())
    world_kinds = Counter(e["kind"] for e in world.entities)
    taken = {e["name"].lower() for e in world.entities}
    capped = [k for k in world_kinds if 30 <= free_plain_names(k, taken)
              and free_plain_names(k, taken) // 2 < 0.6 * count * world_kinds[k] / sum(world_kinds.values())]
    assert capped                                   # this world has kinds whose plain names run short at 1,500
    for kind in capped:
        share = world_kinds[kind] / sum(world_kinds.values())
        assert by_kind["names"][kind] < 0.9 * share * count <= by_kind["world"][kind] * 1.25, kind
        assert by_kind["world"][kind] > free_plain_names(kind, taken) // 2
        # past the plain-name share: names with a middle syllable (head + middle + tail, not head + tail)
        heads, tails = NAME_PARTS.get(kind, NAME_PARTS["place"])
        plain = {(h + t).lower() for h in heads for t in tails}
        with_middle = {(h + m + t).lower() for h in heads for m in NAME_MIDDLES for t in tails}
        mine = [name.lower() for k, name in names["world"] if k == kind]
        assert len([n for n in mine if n not in plain and n in with_middle]) == \
            by_kind["world"][kind] - free_plain_names(kind, taken) // 2
