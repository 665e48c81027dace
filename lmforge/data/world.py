"""The built-in world: a seeded, fully deterministic generator of a small fictional world.

The world has people, places, rivers, inventions, animals and companies with invented
names, a few attributes each, and links between them (a person came from a place, an
invention was invented by a person, a town lies on a river). From it come

  - the fact table: one row per (entity, attribute, language) with a cloze `prompt`
    whose greedy continuation is the `value`, plus a question and an answer sentence;
  - documents: encyclopedic articles (several reworded variants per entity and
    language), short stories, two-speaker dialogues and arithmetic worksheets, in
    English and Norwegian Bokmål. Every fact they state is true in the fact table.

A `held_out` share of the entities gets fact rows but never appears in any document,
so later stages can test "I don't know" on entities the model never saw.

The language is templated on purpose: a ~3M-parameter model trained for minutes on a
CPU should memorize the facts, so each fact appears in one canonical sentence,
`<entity name> <relation phrase> <value>`, many times (in every article variant, in the
fact box and the question section of the article, and in the articles of linked
entities), and no text ever puts a prompt in front of anything but its value.

    from lmforge.config import WorldConfig
    from lmforge.data.world import build_world, write_world
    world = build_world(WorldConfig())
    for doc in world.documents(): ...        # generated lazily, same order every time
    stats = write_world(world, Path("runs/x/data/world"))

    python -m lmforge.data.world             # stats and three sample documents (default config)
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lmforge.config import WorldConfig

LANGUAGES = ("en", "nb")
SITE = "https://world.lmforge.local"

# Entity kinds and their share of n_entities. People are the largest group because the
# other kinds link to them (inventors, founders).
KIND_SHARES = {"person": 0.30, "place": 0.20, "river": 0.08, "invention": 0.16, "animal": 0.16, "company": 0.10}
KINDS = tuple(KIND_SHARES)

# ---------------------------------------------------------------- value lists, (en, nb) pairs
# Small closed lists, so the model sees every value many times and can learn them.

OCCUPATIONS = [  # English ones all start with a consonant: the prompt ends in "worked as a"
    ("baker", "baker"), ("carpenter", "snekker"), ("painter", "maler"), ("sailor", "sjømann"),
    ("teacher", "lærer"), ("weaver", "vever"), ("doctor", "lege"), ("farmer", "bonde"),
    ("miller", "møller"), ("potter", "pottemaker"), ("merchant", "kjøpmann"), ("poet", "dikter"),
    ("singer", "sanger"), ("tailor", "skredder"), ("builder", "byggmester"), ("chemist", "kjemiker"),
    ("clockmaker", "urmaker"), ("fisher", "fisker"), ("printer", "boktrykker"), ("smith", "smed"),
    ("nurse", "sykepleier"), ("mapmaker", "kartmaker"),
]
WORKS = [  # what a person who invented nothing is known for
    ("folk songs", "folkeviser"), ("sea charts", "sjøkart"), ("stone bridges", "steinbroer"),
    ("poems", "dikt"), ("paintings", "malerier"), ("maps", "kart"), ("plays", "skuespill"),
    ("novels", "romaner"), ("hymns", "salmer"), ("letters", "brev"), ("gardens", "hager"),
    ("wood carvings", "treskjæringer"),
]
COUNTRIES = ["Norvania", "Estmark", "Valdoria", "Kaldland", "Brimor", "Solvia", "Tessmark", "Ulvania"]
SEAS = [
    ("Grey Sea", "Gråhavet"), ("Cold Sea", "Kaldhavet"), ("Silver Bay", "Sølvbukta"),
    ("Storm Sea", "Stormhavet"), ("Amber Sea", "Ravhavet"), ("Salt Lake", "Saltsjøen"),
]
RIVER_SOURCES = [
    ("mountains", "fjellene"), ("hills", "åsene"), ("marshes", "myrene"), ("glaciers", "breene"),
    ("forests", "skogene"), ("highlands", "høylandet"),
]
PURPOSES = [
    ("weaving", "veving"), ("fishing", "fiske"), ("printing", "trykking"), ("navigation", "navigasjon"),
    ("heating", "oppvarming"), ("cooling", "kjøling"), ("measuring", "måling"), ("lighting", "belysning"),
    ("writing", "skriving"), ("counting", "telling"), ("pumping", "pumping"), ("sewing", "søm"),
    ("baking", "baking"), ("washing", "vasking"), ("signalling", "signalering"), ("sawing", "saging"),
]
HABITATS = [
    ("forests", "skoger"), ("mountains", "fjell"), ("lakes", "innsjøer"), ("rivers", "elver"),
    ("deserts", "ørkener"), ("swamps", "myrer"), ("caves", "grotter"), ("meadows", "enger"),
]
DIETS = [
    ("fish", "fisk"), ("insects", "insekter"), ("berries", "bær"), ("grass", "gress"), ("seeds", "frø"),
    ("roots", "røtter"), ("mice", "mus"), ("leaves", "blader"), ("worms", "mark"), ("mushrooms", "sopp"),
]
COLOURS = [
    ("grey", "grå"), ("brown", "brun"), ("white", "hvit"), ("black", "svart"), ("red", "rød"),
    ("yellow", "gul"), ("green", "grønn"), ("blue", "blå"), ("spotted", "flekkete"), ("striped", "stripete"),
]
PRODUCTS = [
    ("ropes", "tau"), ("boats", "båter"), ("clocks", "klokker"), ("lamps", "lamper"), ("paper", "papir"),
    ("bread", "brød"), ("glass", "glass"), ("shoes", "sko"), ("bicycles", "sykler"), ("radios", "radioer"),
    ("soap", "såpe"), ("cheese", "ost"), ("nails", "spiker"), ("barrels", "tønner"),
]
ITEMS = [("apples", "epler"), ("pears", "pærer"), ("books", "bøker"), ("coins", "mynter"), ("stones", "steiner"),
         ("cups", "kopper"), ("eggs", "egg")]

# ---------------------------------------------------------------- name parts
FEMALE_FIRST = ["Ada", "Eli", "Ingrid", "Sigrid", "Liv", "Marit", "Tove", "Nora", "Hedda", "Astrid",
                "Solveig", "Ragna", "Frida", "Maja", "Thea", "Ylva", "Gunhild", "Vilde", "Embla", "Runa"]
MALE_FIRST = ["Arne", "Bjørn", "Einar", "Finn", "Geir", "Halvor", "Ivar", "Jon", "Knut", "Leif",
              "Magnus", "Nils", "Odd", "Rolf", "Sverre", "Tor", "Ulf", "Vidar", "Erling", "Trygve"]
LAST_HEADS = ["Berg", "Lund", "Dahl", "Holm", "Strand", "Nes", "Haug", "Moe", "Lie", "Bakke", "Fjell", "Skog",
              "Rud", "Aas", "Brekk", "Hage", "Myr", "Vold", "Stein", "Ekre", "Sand", "Borg", "Lien", "Foss"]
LAST_TAILS = ["", "e", "er", "en", "sen", "by", "stad", "heim", "li", "vik"]
NAME_MIDDLES = ["a", "e", "i", "o", "ar", "el", "in", "or", "un", "ve"]
PLACE_HEADS = ["Tor", "Vel", "Ask", "Brenn", "Dal", "Eid", "Fos", "Grim", "Hal", "Kvit", "Lin", "Mor",
               "Nor", "Ost", "Rav", "Sel", "Sto", "Tin", "Ul", "Ves", "Kol", "Frei", "Bru", "Sval"]
PLACE_TAILS = ["vik", "by", "heim", "stad", "dal", "nes", "fjord", "havn", "berg", "lund", "sund", "ås"]
RIVER_HEADS = ["Alv", "Eik", "Tan", "Orr", "Lag", "Sokn", "Vinn", "Ott", "Rauf", "Beis", "Iss", "Kvern"]
RIVER_TAILS = ["a", "ra", "na", "ma", "la", "elda"]
INVENTION_HEADS = ["Lumo", "Vendra", "Kali", "Orbo", "Teno", "Fero", "Sila", "Quor", "Bril", "Zefa",
                   "Mira", "Dyno", "Pelo", "Ruvo", "Helio", "Nexa"]
INVENTION_TAILS = ["graph", "scope", "meter", "phone", "tron", "lift", "wheel", "loom", "press", "stat"]
ANIMAL_HEADS = ["Glim", "Sno", "Mar", "Tus", "Vek", "Bro", "Hul", "Kne", "Pim", "Rask", "Flo", "Dum",
                "Skri", "Tro", "Vip", "Gru"]
ANIMAL_TAILS = ["ling", "rev", "mus", "orm", "and", "bjørn", "ugle", "gaupe", "hare", "sel"]
COMPANY_HEADS = ["Vel", "Brenn", "Nord", "Sol", "Kvik", "Fram", "Lys", "Aske", "Trygg", "Stor", "Bly", "Jarn"]
COMPANY_TAILS = ["kor", "tek", "verk", "lag", "hus", "form", "gard", "mek"]
NAME_PARTS = {  # kind -> (heads, tails) for single-word names
    "place": (PLACE_HEADS, PLACE_TAILS), "river": (RIVER_HEADS, RIVER_TAILS),
    "invention": (INVENTION_HEADS, INVENTION_TAILS), "animal": (ANIMAL_HEADS, ANIMAL_TAILS),
    "company": (COMPANY_HEADS, COMPANY_TAILS),
}
SPEAKERS = {"en": [("Sam", "Mia"), ("Tom", "Lucy"), ("Ben", "Anna")],
            "nb": [("Ola", "Kari"), ("Per", "Siri"), ("Pål", "Lise")]}

# ---------------------------------------------------------------- relations
# (kind, attribute) -> language -> (prompt, question). The prompt is the canonical sentence
# up to the value. Within one entity and language no prompt is a prefix of another, so the
# value is the only thing that ever follows it (e.g. born_year "was born in", birthplace
# "came from": never "was born in" followed by a place).
RELATIONS = {
    "person": {
        "born_year": {"en": ("{name} was born in", "When was {name} born?"),
                      "nb": ("{name} ble født i", "Når ble {name} født?")},
        "birthplace": {"en": ("{name} came from", "Where did {name} come from?"),
                       "nb": ("{name} kom fra", "Hvor kom {name} fra?")},
        "occupation": {"en": ("{name} worked as a", "What did {name} work as?"),
                       "nb": ("{name} arbeidet som", "Hva arbeidet {name} som?")},
        "known_for": {"en": ("{name} is known for", "What is {name} known for?"),
                      "nb": ("{name} er kjent for", "Hva er {name} kjent for?")},
        "died_year": {"en": ("{name} died in", "When did {name} die?"),
                      "nb": ("{name} døde i", "Når døde {name}?")},
    },
    "place": {
        "country": {"en": ("{name} lies in", "Which country does {name} lie in?"),
                    "nb": ("{name} ligger i", "Hvilket land ligger {name} i?")},
        "river": {"en": ("{name} lies on the river", "Which river does {name} lie on?"),
                  "nb": ("{name} ligger ved elva", "Hvilken elv ligger {name} ved?")},
        "population": {"en": ("{name} has a population of", "What is the population of {name}?"),
                       "nb": ("{name} har et folketall på", "Hvor stort folketall har {name}?")},
        "founded_year": {"en": ("{name} was founded in", "When was {name} founded?"),
                         "nb": ("{name} ble grunnlagt i", "Når ble {name} grunnlagt?")},
    },
    "river": {
        "country": {"en": ("{name} flows through", "Which country does {name} flow through?"),
                    "nb": ("{name} renner gjennom", "Hvilket land renner {name} gjennom?")},
        "length_km": {"en": ("{name} has a length of", "How long is {name}?"),
                      "nb": ("{name} har en lengde på", "Hvor lang er {name}?")},
        "source": {"en": ("{name} begins in the", "Where does {name} begin?"),
                   "nb": ("{name} har sitt utspring i", "Hvor har {name} sitt utspring?")},
        "mouth": {"en": ("{name} flows into the", "What does {name} flow into?"),
                  "nb": ("{name} renner ut i", "Hvor renner {name} ut?")},
    },
    "invention": {
        "inventor": {"en": ("{name} was invented by", "Who invented {name}?"),
                     "nb": ("{name} ble oppfunnet av", "Hvem oppfant {name}?")},
        "year": {"en": ("{name} was invented in", "When was {name} invented?"),
                 "nb": ("{name} ble oppfunnet i", "Når ble {name} oppfunnet?")},
        "origin": {"en": ("{name} was first made in", "Where was {name} first made?"),
                   "nb": ("{name} ble først laget i", "Hvor ble {name} først laget?")},
        "purpose": {"en": ("{name} is used for", "What is {name} used for?"),
                    "nb": ("{name} brukes til", "Hva brukes {name} til?")},
    },
    "animal": {
        "habitat": {"en": ("{name} lives in", "Where does {name} live?"),
                    "nb": ("{name} lever i", "Hvor lever {name}?")},
        "diet": {"en": ("{name} eats", "What does {name} eat?"),
                 "nb": ("{name} spiser", "Hva spiser {name}?")},
        "colour": {"en": ("{name} is mostly", "What colour is {name}?"),
                   "nb": ("{name} er for det meste", "Hvilken farge har {name}?")},
        "lifespan_years": {"en": ("{name} can live for", "How long can {name} live?"),
                           "nb": ("{name} kan leve i", "Hvor lenge kan {name} leve?")},
        "found_in": {"en": ("{name} is found in", "Where is {name} found?"),
                     "nb": ("{name} finnes i", "Hvor finnes {name}?")},
    },
    "company": {
        "founder": {"en": ("{name} was founded by", "Who founded {name}?"),
                    "nb": ("{name} ble grunnlagt av", "Hvem grunnla {name}?")},
        "founded_year": {"en": ("{name} was founded in", "When was {name} founded?"),
                         "nb": ("{name} ble grunnlagt i", "Når ble {name} grunnlagt?")},
        "headquarters": {"en": ("{name} has its headquarters in", "Where does {name} have its headquarters?"),
                         "nb": ("{name} har hovedkontor i", "Hvor har {name} hovedkontor?")},
        "product": {"en": ("{name} makes", "What does {name} make?"),
                    "nb": ("{name} lager", "Hva lager {name}?")},
    },
}

# Reworded sentences for the articles. They restate facts (or facts derived from them, like
# an age) in other words, and never contain a canonical prompt followed by something else.
REWORDINGS = {
    "person": {
        "en": ["{name} ({born_year}–{died_year}) was a {occupation} from {birthplace}.",
               "{name} lived from {born_year} to {died_year}.",
               "Born in {born_year}, {name} grew up in {birthplace}.",
               "The {occupation} {name} is remembered for {known_for}.",
               "{name} died at the age of {age}."],
        "nb": ["{name} ({born_year}–{died_year}) var en {occupation} fra {birthplace}.",
               "{name} levde fra {born_year} til {died_year}.",
               "{name} vokste opp i {birthplace} og ble {occupation}.",
               "{name} huskes for {known_for}.",
               "{name} ble {age} år gammel."],
    },
    "place": {
        "en": ["{name} is a {size} in {country} on the river {river}.",
               "The {size} of {name} dates back to {founded_year}.",
               "{population} people live in {name}.",
               "{name} is built along the banks of {river}."],
        "nb": ["{name} er en by i {country} ved elva {river}.",
               "Byen {name} har røtter tilbake til {founded_year}.",
               "{population} mennesker bor i {name}.",
               "{name} er bygget langs elva {river}."],
    },
    "river": {
        "en": ["The river {name} is {length_km} long.",
               "{name} is a river in {country}.",
               "The water of {name} ends in the {mouth}.",
               "{name} runs from the {source} to the {mouth}."],
        "nb": ["Elva {name} er {length_km} lang.",
               "{name} er en elv i {country}.",
               "Vannet i {name} ender i {mouth}.",
               "{name} går fra {source} til {mouth}."],
    },
    "invention": {
        "en": ["{inventor} invented {name} in {year}.",
               "{name} is a machine for {purpose}.",
               "The first {name} was made in {origin}.",
               "{inventor} was {inventor_age} years old when {name} was invented."],
        "nb": ["{inventor} oppfant {name} i {year}.",
               "{name} er en maskin for {purpose}.",
               "Den første {name} ble laget i {origin}.",
               "{inventor} var {inventor_age} år gammel da {name} ble oppfunnet."],
    },
    "animal": {
        "en": ["{name} is an animal that lives in {habitat} and eats {diet}.",
               "{name} can be seen in {found_in}.",
               "The colour of {name} is {colour}.",
               "{name} rarely lives longer than {lifespan_years}."],
        "nb": ["{name} er et dyr som lever i {habitat} og spiser {diet}.",
               "{name} kan ses i {found_in}.",
               "Fargen til {name} er {colour}.",
               "{name} blir sjelden eldre enn {lifespan_years}."],
    },
    "company": {
        "en": ["{founder} founded {name} in {founded_year}.",
               "{name} is a company in {headquarters} that makes {product}.",
               "The main office of {name} is in {headquarters}.",
               "Many people buy {product} from {name}."],
        "nb": ["{founder} grunnla {name} i {founded_year}.",
               "{name} er et firma i {headquarters} som lager {product}.",
               "Hovedkontoret til {name} ligger i {headquarters}.",
               "Mange kjøper {product} fra {name}."],
    },
}

# Article furniture: short, neutral, and the same few words over and over.
FACT_HEADERS = {"en": ["Facts", "Quick facts", "Key facts", "In short"],
                "nb": ["Fakta", "Kort fortalt", "Nøkkelfakta", "I korte trekk"]}
QUESTION_HEADERS = {"en": ["Questions and answers", "Common questions"],
                    "nb": ["Spørsmål og svar", "Vanlige spørsmål"]}
RELATED_HEADERS = {"en": ["See also", "Related", "Links"], "nb": ["Se også", "Relatert", "Lenker"]}
FILLERS = {"en": ["This article is part of the world encyclopedia.", "The text below gives the main facts.",
                  "More details may be added later."],
           "nb": ["Denne artikkelen er en del av verdensleksikonet.", "Teksten under gir de viktigste faktaene.",
                  "Flere detaljer kan bli lagt til senere."]}
STORY_OPENINGS = {"en": ["Long ago", "One winter", "One summer", "One spring morning", "Once"],
                  "nb": ["For lenge siden", "En vinter", "En sommer", "En vårmorgen", "En gang"]}
STORY_ENDINGS = {"en": ["The end.", "It was a good day.", "Everyone was happy.", "And so the day ended."],
                 "nb": ["Slutt.", "Det var en fin dag.", "Alle var glade.", "Og slik endte dagen."]}

MAX_BACKLINKS_PER_ARTICLE = 6   # keeps articles of popular places short at any world size
MAX_SIBLINGS_PER_ARTICLE = 5   # per shared attribute, two attributes per article
CATEGORICAL = {  # attributes whose values many entities share: the basis of "similar" sections
    "person": ("birthplace", "occupation"), "place": ("country", "river"), "river": ("country", "mouth"),
    "invention": ("purpose", "origin"), "animal": ("habitat", "diet", "found_in"),
    "company": ("product", "headquarters"),
}
SIMILAR_HEADERS = {"en": ["Similar", "Compare", "More like this"], "nb": ["Lignende", "Sammenlign", "Mer som dette"]}


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


def _contains_name(text: str, name: str) -> bool:
    """True if name occurs in text as whole words ("Ada Berg" is not in "Ada Bergsen")."""
    start = text.find(name)
    while start != -1:
        end = start + len(name)
        if (start == 0 or not text[start - 1].isalnum()) and (end == len(text) or not text[end].isalnum()):
            return True
        start = text.find(name, start + 1)
    return False


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


# ---------------------------------------------------------------- the world

@dataclass(repr=False)
class World:
    """Entities, the fact table and a lazy document generator. Build it with build_world()."""
    entities: list[dict]   # {"id","name","kind","attributes" (en),"attributes_nb","held_out"} (+ "gender")
    facts: list[dict]
    config: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self):
        self.by_id = {e["id"]: e for e in self.entities}
        self.by_name = {e["name"]: e for e in self.entities}
        self.trained = [e for e in self.entities if not e["held_out"]]
        self.trained_by_kind = {kind: [e for e in self.trained if e["kind"] == kind] for kind in KINDS}
        # Links point from an entity to the entities named in its attribute values. Only links
        # between trained entities are kept: held-out entities never appear in any text.
        self.links = {e["id"]: [] for e in self.entities}
        self.backlinks = {e["id"]: [] for e in self.entities}
        for entity in self.trained:
            for value in entity["attributes"].values():
                target = self.by_name.get(value)
                if target is not None and not target["held_out"] and target["id"] not in self.links[entity["id"]]:
                    self.links[entity["id"]].append(target["id"])
                    self.backlinks[target["id"]].append(entity["id"])
        # Siblings: trained entities of one kind that share a categorical value (the same
        # country, occupation, river...). Articles name a few, which puts facts of other
        # entities next to each other, each stated for the first time in that document.
        self.siblings = {}
        for entity in self.trained:
            for attr, value in entity["attributes"].items():
                if attr in CATEGORICAL.get(entity["kind"], ()):
                    self.siblings.setdefault((entity["kind"], attr, value), []).append(entity)
        self.facts_by_entity = {}
        for fact in self.facts:
            self.facts_by_entity.setdefault((fact["entity_id"], fact["language"]), []).append(fact)

    def __repr__(self) -> str:
        return (f"World({len(self.entities)} entities, {len(self.facts)} facts, seed={self.config.seed}, "
                f"languages={self.languages})")

    @property
    def languages(self) -> list[str]:
        return [lang for lang in LANGUAGES if lang in self.config.languages]

    def trained_facts(self, language: str | None = None) -> list[dict]:
        return [f for f in self.facts if not f["held_out"] and (language is None or f["language"] == language)]

    def held_out_facts(self, language: str | None = None) -> list[dict]:
        return [f for f in self.facts if f["held_out"] and (language is None or f["language"] == language)]

    # ------------------------------------------------------------ documents

    def documents(self) -> Iterator[dict]:
        """Every document, in a fixed order, generated one at a time.

        Each document draws from its own Random seeded by (world seed, document key), so the
        stream is reproducible and any one document can be made without the others. The
        sources are interleaved evenly, and articles run variant by variant, so that the
        variants of one article are never neighbours in the token stream (a training window
        spanning two of them could copy the facts instead of recalling them)."""
        seed, languages = self.config.seed, self.languages

        def articles():
            for variant in range(self.config.article_variants):
                for lang in languages:
                    for entity in self.trained:
                        rng = random.Random(f"{seed}:article:{entity['id']}:{lang}:{variant}")
                        yield self._article(entity, lang, variant, rng)

        def numbered(count, make, kind):
            for index in range(count):
                lang = languages[index % len(languages)]
                yield make(index, lang, random.Random(f"{seed}:{kind}:{index}"))

        streams = [
            (len(self.trained) * len(languages) * self.config.article_variants, articles()),
            (self.config.stories, numbered(self.config.stories, self._story, "story")),
            (self.config.dialogues, numbered(self.config.dialogues, self._dialogue, "dialogue")),
            (self.config.arithmetic, numbered(self.config.arithmetic, self._arithmetic, "arithmetic")),
        ]

        def positioned(stream_index, count, docs):
            # Document i of a stream of n sits at (i + 0.5) / n of the way through the corpus.
            for index, doc in enumerate(docs):
                yield (index + 0.5) / count, stream_index, doc

        merged = heapq.merge(*(positioned(i, count, docs) for i, (count, docs) in enumerate(streams) if count),
                             key=lambda item: item[:2])
        for _, _, doc in merged:
            yield doc

    def _canonical(self, entity: dict, lang: str) -> list[str]:
        """The canonical sentences of an entity, one per attribute: '<prompt> <value>.'"""
        return [f["answer"] for f in self.facts_by_entity[(entity["id"], lang)]]

    def _fields(self, entity: dict, lang: str) -> dict:
        """Values for the reworded templates: the attributes plus a few facts derived from them."""
        values = dict(entity["attributes"] if lang == "en" else entity["attributes_nb"])
        values["name"] = entity["name"]
        attrs = entity["attributes"]
        if entity["kind"] == "person":
            values["age"] = int(attrs["died_year"]) - int(attrs["born_year"])
        elif entity["kind"] == "place":
            values["size"] = "city" if int(attrs["population"]) >= 50_000 else "town"
        elif entity["kind"] == "invention":
            inventor = self.by_name[attrs["inventor"]]
            values["inventor_age"] = int(attrs["year"]) - int(inventor["attributes"]["born_year"])
        return values

    def _mentioned(self, text: str, candidates: list[dict]) -> list[str]:
        """Ids of the entities whose names occur in text, among the candidates and the entities
        they link to (a fact sentence of one entity can name another), in first-seen order."""
        ids = []
        for entity in candidates:
            for other in [entity] + [self.by_id[i] for i in self.links[entity["id"]]]:
                if other["id"] not in ids and _contains_name(text, other["name"]):
                    ids.append(other["id"])
        return ids

    def _doc(self, doc_id: str, source: str, lang: str, url: str, text: str, candidates: list[dict],
             **meta) -> dict:
        return {"id": doc_id, "text": text, "source": source, "url": url,
                "meta": {"language": lang, "entities": self._mentioned(text, candidates), **meta}}

    def _article(self, entity: dict, lang: str, variant: int, rng: random.Random) -> dict:
        canonical = self._canonical(entity, lang)
        rewordings = [t.format(**self._fields(entity, lang)) for t in REWORDINGS[entity["kind"]][lang]]
        rng.shuffle(rewordings)
        # A lead sentence, then every canonical sentence mixed with some rewordings, in a new
        # order each variant. This is where each fact of the entity appears first.
        lead, extra = rewordings[0], rewordings[1:1 + rng.randint(2, len(rewordings) - 1)]
        body = canonical + extra
        rng.shuffle(body)
        if rng.random() < 0.3:
            body.insert(rng.randint(0, len(body)), rng.choice(FILLERS[lang]))
        cut = len(body) // 2
        parts = [entity["name"], " ".join([lead] + body[:cut]), " ".join(body[cut:])]

        # Later repeats of a fact in the same document can be copied from the context, so they
        # teach the model little about the fact: the fact box comes in most variants, not all. The
        # questions (a few to all) teach the question-and-answer form that SFT builds on.
        if rng.random() < 0.7:
            parts.append(rng.choice(FACT_HEADERS[lang]) + "\n" + "\n".join(canonical))
        own_facts = self.facts_by_entity[(entity["id"], lang)]
        qa_facts = rng.sample(own_facts, rng.randint(3, len(own_facts)))
        parts.append(rng.choice(QUESTION_HEADERS[lang]) + "\n"
                     + "\n".join(f"{f['question']} {f['answer']}" for f in qa_facts))

        # Linked entities (named by this one) with all their facts, and a few entities that
        # name this one: each adds facts that are new to this document.
        related = [self.by_id[i] for i in self.links[entity["id"]]]
        back = [self.by_id[i] for i in self.backlinks[entity["id"]] if i not in self.links[entity["id"]]]
        related += rng.sample(back, min(len(back), MAX_BACKLINKS_PER_ARTICLE))
        if related:
            lines = []
            for other in related:
                facts = self._canonical(other, lang)
                rng.shuffle(facts)
                lines.append(" ".join(facts))
            parts.append(rng.choice(RELATED_HEADERS[lang]) + "\n" + "\n".join(lines))

        # Similar entities: the shared fact and two more, for a few entities like this one.
        attrs = [a for a in CATEGORICAL[entity["kind"]]
                 if len(self.siblings[(entity["kind"], a, entity["attributes"][a])]) > 1]
        similar, lines = [], []
        shown = {e["id"] for e in related} | {entity["id"]}
        for attr in rng.sample(attrs, min(2, len(attrs))):
            # Sample first, then drop the ones already shown: groups can be large in a big
            # world, and filtering a whole group per article would be slow.
            group = self.siblings[(entity["kind"], attr, entity["attributes"][attr])]
            picked = rng.sample(group, min(len(group), MAX_SIBLINGS_PER_ARTICLE + len(shown)))
            picked = [e for e in picked if e["id"] not in shown][:MAX_SIBLINGS_PER_ARTICLE]
            for other in picked:
                shown.add(other["id"])
                facts = {f["attribute"]: f["answer"] for f in self.facts_by_entity[(other["id"], lang)]}
                shared = facts.pop(attr)
                lines.append(" ".join([shared] + [facts[a] for a in rng.sample(sorted(facts), 2)]))
                similar.append(other)
        if lines:
            parts.append(rng.choice(SIMILAR_HEADERS[lang]) + "\n" + "\n".join(lines))

        text = "\n\n".join(parts) + "\n"
        url = f"{SITE}/{lang}/wiki/{entity['name'].replace(' ', '_')}/v{variant}"
        return self._doc(f"world-article-{lang}-{entity['id']}-v{variant}", "article", lang, url, text,
                         [entity] + related + similar, title=entity["name"], subject=entity["id"], variant=variant)

    def _story(self, index: int, lang: str, rng: random.Random) -> dict:
        """A short story around one trained entity and the entities it links to.

        The narration is made of neutral events (a walk, a boat trip); every claim about an
        entity is one of its canonical fact sentences."""
        en = lang == "en"
        kinds = [k for k in ("person", "animal", "river", "company") if self.trained_by_kind[k]]
        kind = kinds[index % len(kinds)]
        hero = rng.choice(self.trained_by_kind[kind])
        name = hero["name"]
        hero_facts = self._canonical(hero, lang)
        rng.shuffle(hero_facts)
        half = len(hero_facts) // 2

        def some_facts(entity, count):
            facts = self._canonical(entity, lang)
            return rng.sample(facts, min(count, len(facts)))

        opening = rng.choice(STORY_OPENINGS[lang])
        used = [hero]
        first, second = [], []
        if kind == "person":
            home = self.by_name[hero["attributes"]["birthplace"]]
            river = self.by_name.get(home["attributes"]["river"])
            used.append(home)
            first.append(f"This is a story about {name} from {home['name']}." if en else
                         f"Dette er en historie om {name} fra {home['name']}.")
            first += hero_facts[:half] + some_facts(home, 2)
            if river is not None and not river["held_out"]:
                used.append(river)
                first.append(f"Every morning, {name} walked along the river {river['name']}." if en else
                             f"Hver morgen gikk {name} langs elva {river['name']}.")
                first += some_facts(river, 2)
            work = self.by_name.get(hero["attributes"]["known_for"])
            if work is not None and not work["held_out"]:
                used.append(work)
                second.append(f"One day, {name} showed {work['name']} to the people of {home['name']}." if en else
                              f"En dag viste {name} fram {work['name']} til folket i {home['name']}.")
                second += some_facts(work, 3)
            else:
                # A friend whose life overlapped the hero's, so that they could have met.
                born, died = int(hero["attributes"]["born_year"]), int(hero["attributes"]["died_year"])
                people = self.trained_by_kind["person"]
                friends = [p for p in rng.sample(people, min(len(people), 40))
                           if p is not hero and int(p["attributes"]["born_year"]) < died - 10
                           and int(p["attributes"]["died_year"]) > born + 10]
                if friends:
                    friend = friends[0]
                    used.append(friend)
                    second.append(f"One day, {name} met {friend['name']} in {home['name']}." if en else
                                  f"En dag møtte {name} {friend['name']} i {home['name']}.")
                    second += some_facts(friend, 3)
            second += hero_facts[half:]
        elif kind == "animal":
            places = self.siblings.get(("place", "country", hero["attributes"]["found_in"]), [])
            place = rng.choice(places) if places else None
            if place is not None:
                used.append(place)
                first.append(f"{opening}, a child in {place['name']} saw {name}." if en else
                             f"{opening} så et barn i {place['name']} en {name}.")
                first += some_facts(place, 2)
            else:
                first.append(f"{opening}, a child saw {name}." if en else f"{opening} så et barn en {name}.")
            first += hero_facts[:half]
            second.append(f"The child ran home to tell everyone about {name}." if en else
                          f"Barnet løp hjem og fortalte alle om {name}.")
            second += hero_facts[half:]
            cousins = self.siblings[("animal", "found_in", hero["attributes"]["found_in"])]
            cousin = rng.choice(cousins)
            if cousin is not hero:
                used.append(cousin)
                second.append(f"The child had also seen {cousin['name']} once." if en else
                              f"Barnet hadde også sett en {cousin['name']} en gang.")
                second += some_facts(cousin, 3)
        elif kind == "river":
            towns = self.siblings.get(("place", "river", name), [])
            first.append(f"{opening}, a small boat went down the river {name}." if en else
                         f"{opening} seilte en liten båt nedover elva {name}.")
            first += hero_facts[:half]
            for town in rng.sample(towns, min(3, len(towns))):
                used.append(town)
                second.append(f"The boat passed {town['name']}." if en else f"Båten passerte {town['name']}.")
                second += some_facts(town, 3)
            second += hero_facts[half:]
            mouth = self._fields(hero, lang)["mouth"]
            second.append(f"At last the boat reached the {mouth}." if en else f"Til slutt kom båten fram til {mouth}.")
        else:  # company
            founder = self.by_name[hero["attributes"]["founder"]]
            town = self.by_name[hero["attributes"]["headquarters"]]
            used += [founder, town]
            first.append(f"{opening}, {founder['name']} opened a small workshop in {town['name']}." if en else
                         f"{opening} åpnet {founder['name']} et lite verksted i {town['name']}.")
            first += some_facts(founder, 3) + hero_facts[:half]
            product = self._fields(hero, lang)["product"]
            second.append(f"Soon people came from far away to buy {product}." if en else
                          f"Snart kom folk langveisfra for å kjøpe {product}.")
            second += some_facts(town, 3) + hero_facts[half:]
        # An epilogue about one more entity linked to the story's cast.
        cast_ids = {e["id"] for e in used}
        nearby = sorted({i for e in used for i in self.links[e["id"]] + self.backlinks[e["id"]]} - cast_ids)
        third = []
        if nearby:
            extra = self.by_id[rng.choice(nearby)]
            used.append(extra)
            third.append(f"Later, the story was told again in many homes, together with news of {extra['name']}."
                         if en else f"Senere ble historien fortalt i mange hjem, sammen med nytt om {extra['name']}.")
            third += some_facts(extra, 4)
        (third or second).append(rng.choice(STORY_ENDINGS[lang]))
        text = "\n\n".join(" ".join(p) for p in (first, second, third) if p) + "\n"
        return self._doc(f"world-story-{lang}-{index:05d}", "story", lang, f"{SITE}/{lang}/stories/{index}",
                         text, used)

    def _dialogue(self, index: int, lang: str, rng: random.Random) -> dict:
        """Two speakers: one asks about an entity and its neighbours, the other answers with facts."""
        asker, answerer = rng.choice(SPEAKERS[lang])
        topic = rng.choice(self.trained)
        neighbours = self.links[topic["id"]] + self.backlinks[topic["id"]]
        topics = [topic] + [self.by_id[i] for i in rng.sample(neighbours, min(3, len(neighbours)))]
        hello = {"en": ["Hi! Can I ask you something?", "Hello! I have a question.",
                        "Do you know a lot about history?"],
                 "nb": ["Hei! Kan jeg spørre deg om noe?", "Hallo! Jeg har et spørsmål.", "Kan du mye om historie?"]}
        reply = {"en": ["Of course.", "Sure, go ahead.", "I will try."],
                 "nb": ["Selvfølgelig.", "Ja, bare spør.", "Jeg skal prøve."]}
        more = {"en": ["Interesting.", "I see.", "And one more thing."],
                "nb": ["Spennende.", "Jeg skjønner.", "Og en ting til."]}
        thanks = {"en": ["Thanks!", "Thank you, that helps.", "Great, thanks."],
                  "nb": ["Takk!", "Tusen takk, det hjelper.", "Flott, takk."]}
        lines = [f"{asker}: {rng.choice(hello[lang])}", f"{answerer}: {rng.choice(reply[lang])}"]
        for number, entity in enumerate(topics):
            facts = self.facts_by_entity[(entity["id"], lang)]
            for count, fact in enumerate(rng.sample(facts, min(len(facts), rng.randint(2, 4)))):
                interjection = rng.choice(more[lang]) + " " if number and not count else ""
                lines.append(f"{asker}: {interjection}{fact['question']}")
                lines.append(f"{answerer}: {fact['answer']}")
        lines.append(f"{asker}: {rng.choice(thanks[lang])}")
        text = "\n".join(lines) + "\n"
        return self._doc(f"world-dialogue-{lang}-{index:05d}", "dialogue", lang,
                         f"{SITE}/{lang}/forum/thread-{index}", text, topics)

    def _arithmetic(self, index: int, lang: str, rng: random.Random) -> dict:
        """A small worksheet: a few bare sums, then a word problem about a trained person.
        meta["problems"] keeps every question with its integer answer."""
        en = lang == "en"
        lines = [rng.choice(["Practice sums", "Arithmetic", "Sums for today"] if en else
                            ["Regneøvelser", "Regning", "Dagens regnestykker"])]
        problems = []
        for _ in range(rng.randint(2, 5)):  # short: digits cost many tokens, and facts need them more
            op = rng.choice("+-×")
            if op == "+":
                a, b = rng.randint(0, 99), rng.randint(0, 99)
                answer = a + b
            elif op == "-":
                a, b = sorted((rng.randint(0, 99), rng.randint(0, 99)), reverse=True)
                answer = a - b
            else:
                a, b = rng.randint(2, 12), rng.randint(2, 12)
                answer = a * b
            lines.append(f"{a} {op} {b} = {answer}")
            problems.append({"question": f"What is {a} {op} {b}?" if en else f"Hva er {a} {op} {b}?",
                             "answer": answer})
        people = self.trained_by_kind["person"]
        used = rng.sample(people, min(len(people), 1))
        for person in used:
            name = person["name"]
            item = rng.choice(ITEMS)[0 if en else 1]
            story = rng.choice(["buy", "give", "boxes"])
            if story == "buy":
                a, b = rng.randint(2, 40), rng.randint(2, 40)
                answer = a + b
                setup = (f"{name} had {a} {item} and bought {b} more." if en else
                         f"{name} hadde {a} {item} og kjøpte {b} til.")
                result = f"Now {name} has {answer} {item}." if en else f"Nå har {name} {answer} {item}."
            elif story == "give":
                a = rng.randint(5, 60)
                b = rng.randint(2, a - 2)
                answer = a - b
                setup = (f"{name} had {a} {item} and gave away {b}." if en else
                         f"{name} hadde {a} {item} og ga bort {b}.")
                result = f"Now {name} has {answer} {item}." if en else f"Nå har {name} {answer} {item}."
            else:
                a, b = rng.randint(2, 9), rng.randint(2, 12)
                answer = a * b
                setup = (f"{name} has {a} boxes with {b} {item} in each box." if en else
                         f"{name} har {a} esker med {b} {item} i hver eske.")
                result = f"That is {answer} {item}." if en else f"Det blir {answer} {item}."
            lines.append(f"{setup} {result}")
            question = f"How many {item} does {name} have?" if en else f"Hvor mange {item} har {name}?"
            problems.append({"question": f"{setup} {question}", "answer": answer})
        text = "\n".join(lines) + "\n"
        return self._doc(f"world-arithmetic-{lang}-{index:05d}", "arithmetic", lang, f"{SITE}/{lang}/math/{index}",
                         text, used, problems=problems)


# ---------------------------------------------------------------- building

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
    (lmforge/data/tool_data.py).
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

def _write_jsonl_atomic(rows: list[dict], path: Path) -> None:
    """Write to a temporary name, fsync, then rename: a killed process leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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
    _write_jsonl_atomic(world.entities, out_dir / "entities.jsonl")
    _write_jsonl_atomic(world.facts, out_dir / "facts.jsonl")
    return world_stats(world)


def read_facts(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def main() -> None:
    started = time.perf_counter()
    world = build_world(WorldConfig())
    built_seconds = time.perf_counter() - started
    stats = world_stats(world)
    stats["build_seconds"] = round(built_seconds, 3)
    stats["total_seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(stats, indent=2))
    docs = list(world.documents())
    picks = [next((d for d in docs if d["source"] == "article"), None),
             next((d for d in docs if d["source"] == "story"), None),
             next((d for d in docs if d["source"] == "dialogue" and d["meta"]["language"] == "nb"), None)]
    for doc in filter(None, picks):
        print(f"\n---- {doc['id']}  {doc['url']}  {doc['meta']['entities']}\n{doc['text']}")


if __name__ == "__main__":
    sys.stdout.reconfigure(encoding="utf-8")
    main()
