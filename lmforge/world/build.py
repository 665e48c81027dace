"""Building the built-in world from its config: entities, their attributes and links, the fact table,
the unseen-entity partition; and writing it out.

    from lmforge.world import build_world, write_world
    stats = write_world(build_world(WorldConfig()), Path("runs/x/data/world"))

"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

from ..config import WorldConfig
from ..files import atomic_write_jsonl, read_jsonl
from .documents import World
from .words import (COLOURS, COUNTRIES, DIETS, FACT_HEADERS, FEMALE_FIRST, FILLERS, HABITATS, ITEMS, KINDS,
                    KIND_SHARES, LANGUAGES, LAST_HEADS, LAST_TAILS, MALE_FIRST, NAME_MIDDLES, NAME_PARTS, OCCUPATIONS,
                    PRODUCTS, PURPOSES, QUESTION_HEADERS, RELATED_HEADERS, RELATIONS, REWORDINGS, RIVER_SOURCES, SEAS,
                    SIMILAR_HEADERS, SPEAKERS, STORY_ENDINGS, STORY_OPENINGS, WORKS)



# ---------------------------------------------------------------- naming

def _template_words() -> set[str]:
    """Every word the templates and value lists use, lower-cased: coined names must avoid them."""
    texts = [v for pair in (OCCUPATIONS + WORKS + SEAS + RIVER_SOURCES + PURPOSES + HABITATS + DIETS
                            + COLOURS + PRODUCTS + ITEMS) for v in pair]
    texts += COUNTRIES + FEMALE_FIRST + MALE_FIRST
    texts += [name for pairs in SPEAKERS.values() for pair in pairs for name in pair]
    for per_attr in RELATIONS.values():
        for per_lang in per_attr.values():
            for prompt, question in per_lang.values():
                texts += [prompt, question]
    for per_lang in REWORDINGS.values():
        for templates in per_lang.values():
            texts += templates
    for table in (FACT_HEADERS, QUESTION_HEADERS, RELATED_HEADERS, SIMILAR_HEADERS, FILLERS,
                  STORY_OPENINGS, STORY_ENDINGS):
        for lines in table.values():
            texts += lines
    words = set()
    for text in texts:
        for word in text.replace("{", " ").replace("}", " ").split():
            words.add(word.strip(".,?!()–").lower())
    return words


class _NameMaker:
    """Coins unique words from heads + tails; when those run out, adds middle syllables."""

    def __init__(self, rng: random.Random, taken: set[str]):
        self.rng = rng
        self.taken = taken          # lower-cased words no new name may equal (shared across kinds)
        self.middle_syllables = {}  # kind -> how many middles its names currently get

    def coin(self, heads: list[str], tails: list[str], key: str) -> str:
        failures = 0
        while True:
            n_middle = self.middle_syllables.get(key, 0)
            word = (self.rng.choice(heads) + "".join(self.rng.choice(NAME_MIDDLES) for _ in range(n_middle))
                    + self.rng.choice(tails))
            if word.lower() not in self.taken:
                self.taken.add(word.lower())
                return word
            failures += 1
            if failures >= 30:  # the short names are (nearly) used up; go one syllable longer for good
                self.middle_syllables[key] = n_middle + 1
                failures = 0


def _share_counts(total: int) -> dict[str, int]:
    """`total` split over the kinds by KIND_SHARES, exactly (largest remainder)."""
    exact = {kind: share * total for kind, share in KIND_SHARES.items()}
    counts = {kind: int(value) for kind, value in exact.items()}
    for kind in sorted(exact, key=lambda k: counts[k] - exact[k])[:total - sum(counts.values())]:
        counts[kind] += 1
    return counts


def _kind_counts(n_entities: int) -> dict[str, int]:
    counts = {kind: max(1, int(n_entities * share)) for kind, share in KIND_SHARES.items()}
    counts["person"] += n_entities - sum(counts.values())  # rounding remainder goes to people
    return counts


def _set_attr(entity: dict, attr: str, en_value, nb_value=None) -> None:
    entity["attributes"][attr] = str(en_value)
    entity["attributes_nb"][attr] = str(en_value if nb_value is None else nb_value)


# Attributes, one entity at a time. Each draws from the rng in a fixed order, so the world of
# a seed never changes; links point only at trained entities (`trained`, by kind), so no
# training text ever names a held-out entity.

def _river_attributes(river: dict, trained: dict, rng: random.Random) -> None:
    _set_attr(river, "country", rng.choice(COUNTRIES))
    length_km = rng.randrange(20, 900)
    _set_attr(river, "length_km", f"{length_km} km")
    _set_attr(river, "source", *rng.choice(RIVER_SOURCES))
    _set_attr(river, "mouth", *rng.choice(SEAS))


def _place_attributes(place: dict, trained: dict, rng: random.Random) -> None:
    river = rng.choice(trained["river"])
    _set_attr(place, "country", river["attributes"]["country"])  # a town lies in its river's country
    _set_attr(place, "river", river["name"])
    _set_attr(place, "population", rng.randrange(8, 2500) * 100)
    _set_attr(place, "founded_year", rng.randrange(800, 1650))


def _person_attributes(person: dict, trained: dict, rng: random.Random) -> None:
    born_year = rng.randrange(1700, 1921)   # after every town was founded
    _set_attr(person, "born_year", born_year)
    _set_attr(person, "birthplace", rng.choice(trained["place"])["name"])
    _set_attr(person, "occupation", *rng.choice(OCCUPATIONS))
    _set_attr(person, "known_for", "")         # filled in once inventions have inventors
    _set_attr(person, "died_year", born_year + rng.randrange(40, 96))


def _invention_attributes(invention: dict, inventor: dict, trained: dict, rng: random.Random) -> None:
    born_year, died_year = int(inventor["attributes"]["born_year"]), int(inventor["attributes"]["died_year"])
    _set_attr(invention, "inventor", inventor["name"])
    _set_attr(invention, "year", rng.randrange(born_year + 20, min(died_year, born_year + 70)))
    _set_attr(invention, "origin", rng.choice(trained["place"])["name"])
    _set_attr(invention, "purpose", *rng.choice(PURPOSES))


def _known_for(person: dict, first_invention: dict, rng: random.Random) -> None:
    # Known for the first trained invention they made, else for a kind of work.
    if person["name"] in first_invention:
        _set_attr(person, "known_for", first_invention[person["name"]])
    else:
        _set_attr(person, "known_for", *rng.choice(WORKS))


def _animal_attributes(animal: dict, trained: dict, rng: random.Random) -> None:
    _set_attr(animal, "habitat", *rng.choice(HABITATS))
    _set_attr(animal, "diet", *rng.choice(DIETS))
    _set_attr(animal, "colour", *rng.choice(COLOURS))
    lifespan = rng.randrange(3, 60)
    _set_attr(animal, "lifespan_years", f"{lifespan} years", f"{lifespan} år")
    _set_attr(animal, "found_in", rng.choice(COUNTRIES))


def _company_attributes(company: dict, trained: dict, rng: random.Random) -> None:
    founder = rng.choice(trained["person"])
    born_year, died_year = int(founder["attributes"]["born_year"]), int(founder["attributes"]["died_year"])
    _set_attr(company, "founder", founder["name"])
    _set_attr(company, "founded_year", rng.randrange(born_year + 20, died_year))
    _set_attr(company, "headquarters", rng.choice(trained["place"])["name"])
    _set_attr(company, "product", *rng.choice(PRODUCTS))


def _new_entity(kind: str, index: int, held_out: bool) -> dict:
    return {"id": f"{kind}-{index:05d}", "name": "", "kind": kind, "attributes": {}, "attributes_nb": {},
            "held_out": held_out}


def _person_name(namer: _NameMaker, entity: dict, rng: random.Random) -> None:
    # Last names are coined like the other names, so they are unique words and every full
    # name is unique too; first names repeat, as they do in real life.
    gender = rng.choice("fm")
    first_name = rng.choice(FEMALE_FIRST if gender == "f" else MALE_FIRST)
    entity["name"] = f"{first_name} {namer.coin(LAST_HEADS, LAST_TAILS, 'last')}"
    entity["gender"] = gender


def _extra_unseen(entities: list[dict], trained: dict, first_invention: dict, cfg: WorldConfig) -> list[dict]:
    """`cfg.extra_held_out` more held-out entities, from a random stream of their own.

    They come after every other entity and draw nothing from the world's main stream, so
    the trained entities and every document are the same whatever their number; names avoid
    every word of every existing name (and the templates' words), attributes link to trained
    entities only. Inventions made by a trained person stay out of that person's known_for."""
    if not cfg.extra_held_out:
        return []
    rng = random.Random(f"{cfg.seed}:extra-held-out")
    taken = _template_words() | {word.lower() for e in entities for word in e["name"].split()}
    namer = _NameMaker(rng, taken)
    next_index = {kind: sum(e["kind"] == kind for e in entities) for kind in KINDS}
    extra = []
    for kind, count in _share_counts(cfg.extra_held_out).items():
        for offset in range(count):
            entity = _new_entity(kind, next_index[kind] + offset, held_out=True)
            if kind == "person":
                _person_name(namer, entity, rng)
            else:
                entity["name"] = namer.coin(*NAME_PARTS[kind], kind)
            extra.append(entity)
    for entity in extra:
        kind = entity["kind"]
        if kind == "invention":
            _invention_attributes(entity, rng.choice(trained["person"]), trained, rng)
        elif kind == "person":
            _person_attributes(entity, trained, rng)
            _known_for(entity, first_invention, rng)
        else:
            {"river": _river_attributes, "place": _place_attributes, "animal": _animal_attributes,
             "company": _company_attributes}[kind](entity, trained, rng)
    return extra


UNSEEN_SPLITS = ("train", "dev", "test", "reserved")


def partition_unseen(entities: list[dict], cfg: WorldConfig) -> dict[str, str]:
    """entity id -> train | dev | test | reserved for the held-out (unseen) entities.

    train: preference labels and PPO prompts; dev: choosing checkpoints and settings; test:
    the headline figures, nothing else; reserved: the lookup tool's training entities
    (lmforge/tasks/tool_data.py).
    Within each kind the entities are ordered by a keyed hash of their id and cut by the
    shares (largest remainder), so every split gets its share of every kind and the
    partition does not depend on the order of the list."""
    shares = {"train": cfg.unseen_train_share, "dev": cfg.unseen_dev_share, "test": cfg.unseen_test_share}
    shares["reserved"] = max(0.0, 1.0 - sum(shares.values()))
    split = {}
    for kind in KINDS:
        members = sorted((e["id"] for e in entities if e["held_out"] and e["kind"] == kind),
                         key=lambda i: hashlib.sha256(f"{cfg.seed}:unseen:{i}".encode()).digest())
        exact = {name: share * len(members) for name, share in shares.items()}
        counts = {name: int(value) for name, value in exact.items()}
        for name in sorted(exact, key=lambda s: (counts[s] - exact[s], UNSEEN_SPLITS.index(s))):
            if sum(counts.values()) >= len(members):
                break
            counts[name] += 1
        position = 0
        for name in UNSEEN_SPLITS:
            for entity_id in members[position:position + counts[name]]:
                split[entity_id] = name
            position += counts[name]
    return split


def build_world(cfg: WorldConfig) -> World:
    """Entities, their attributes and the fact table, all from cfg.seed."""
    bad = [lang for lang in cfg.languages if lang not in LANGUAGES]
    if bad or not cfg.languages:
        raise ValueError(f"world.languages={cfg.languages!r}: allowed a non-empty subset of {list(LANGUAGES)}")
    rng = random.Random(cfg.seed)
    counts = _kind_counts(cfg.n_entities)

    # Names. Single-word names first; person names then avoid every word they use, so no
    # name is ever a word of another name (a held-out "Torvik" can't hide in "Ada Torvik").
    namer = _NameMaker(rng, _template_words())
    entities = []
    for kind in KINDS:
        for index in range(counts[kind]):
            entity = _new_entity(kind, index, held_out=False)
            if kind != "person":
                heads, tails = NAME_PARTS[kind]
                entity["name"] = namer.coin(heads, tails, kind)
            entities.append(entity)
    for entity in entities:
        if entity["kind"] == "person":
            _person_name(namer, entity, rng)

    # Held out: the same share of every kind, but each kind keeps a trained entity to link to.
    for kind in KINDS:
        members = [e for e in entities if e["kind"] == kind]
        n_held = min(round(cfg.held_out_fraction * len(members)), len(members) - 1)
        for entity in rng.sample(members, n_held):
            entity["held_out"] = True
    of_kind = {kind: [e for e in entities if e["kind"] == kind] for kind in KINDS}
    trained = {kind: [e for e in of_kind[kind] if not e["held_out"]] for kind in KINDS}

    # Attributes, in link order: rivers, places on them, people from places, then the rest.
    for river in of_kind["river"]:
        _river_attributes(river, trained, rng)
    for place in of_kind["place"]:
        _place_attributes(place, trained, rng)
    for person in of_kind["person"]:
        _person_attributes(person, trained, rng)
    inventors = list(trained["person"])
    rng.shuffle(inventors)
    for index, invention in enumerate(of_kind["invention"]):
        # distinct inventors while there are enough people
        _invention_attributes(invention, inventors[index % len(inventors)], trained, rng)
    first_invention = {}
    for invention in trained["invention"]:
        first_invention.setdefault(invention["attributes"]["inventor"], invention["name"])
    for person in of_kind["person"]:
        _known_for(person, first_invention, rng)
    for animal in of_kind["animal"]:
        _animal_attributes(animal, trained, rng)
    for company in of_kind["company"]:
        _company_attributes(company, trained, rng)

    entities += _extra_unseen(entities, trained, first_invention, cfg)
    splits = partition_unseen(entities, cfg)
    for entity in entities:
        if entity["held_out"]:
            entity["unseen_split"] = splits[entity["id"]]

    facts = []
    for entity in entities:
        for attr, per_lang in RELATIONS[entity["kind"]].items():
            for lang in LANGUAGES:
                if lang not in cfg.languages:
                    continue
                value = entity["attributes"][attr] if lang == "en" else entity["attributes_nb"][attr]
                prompt, question = (t.format(name=entity["name"]) for t in per_lang[lang])
                fact = {"entity_id": entity["id"], "entity": entity["name"], "kind": entity["kind"],
                        "attribute": attr, "value": value, "language": lang, "prompt": prompt,
                        "held_out": entity["held_out"], "question": question, "answer": f"{prompt} {value}."}
                if entity["held_out"]:
                    fact["unseen_split"] = entity["unseen_split"]
                facts.append(fact)
    return World(entities=entities, facts=facts, config=cfg)


# ---------------------------------------------------------------- files


# ---------------------------------------------------------------- files

def world_stats(world: World) -> dict:
    """Counts of entities, facts and documents, and characters, by source and language."""
    stats = {"entities": len(world.entities), "held_out_entities": sum(e["held_out"] for e in world.entities),
             "unseen_splits": {name: sum(e.get("unseen_split") == name for e in world.entities)
                               for name in UNSEEN_SPLITS},
             "facts": len(world.facts), "trained_facts": len(world.trained_facts()),
             "documents": 0, "characters": 0}
    for source in ("article", "story", "dialogue", "arithmetic"):
        stats[f"{source}_documents"] = 0
        stats[f"{source}_characters"] = 0
    for lang in world.languages:
        stats[f"{lang}_documents"] = 0
    for doc in world.documents():
        n_chars = len(doc["text"])
        stats["documents"] += 1
        stats["characters"] += n_chars
        stats[f"{doc['source']}_documents"] += 1
        stats[f"{doc['source']}_characters"] += n_chars
        stats[f"{doc['meta']['language']}_documents"] += 1
    return stats


def write_world(world: World, out_dir: Path) -> dict:
    """Write out_dir/entities.jsonl and out_dir/facts.jsonl; return the world's stats."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out_dir / "entities.jsonl", world.entities)
    atomic_write_jsonl(out_dir / "facts.jsonl", world.facts)
    return world_stats(world)


def read_facts(path) -> list[dict]:
    """The fact table a collect stage wrote (data/world/facts.jsonl)."""
    return read_jsonl(path)
