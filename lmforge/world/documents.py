"""The built-in world's documents: the World (entities and fact table) and its lazy document generator.

    from lmforge.world import build_world
    world = build_world(WorldConfig())
    for doc in world.documents(): ...        # generated lazily, same order every time

Articles (several reworded variants per entity and language), short stories, two-speaker
dialogues and arithmetic worksheets, in English and Norwegian Bokmål. Every fact they state
is true in the fact table, and each fact appears in one canonical sentence,
`<entity name> <relation phrase> <value>` (see lmforge/world/__init__.py for why).
"""
from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Iterator

from ..config import WorldConfig
from .words import (CATEGORICAL, FACT_HEADERS, FILLERS, ITEMS, KINDS, LANGUAGES, MAX_BACKLINKS_PER_ARTICLE,
                    MAX_SIBLINGS_PER_ARTICLE, QUESTION_HEADERS, RELATED_HEADERS, REWORDINGS, SIMILAR_HEADERS, SITE,
                    SPEAKERS, STORY_ENDINGS, STORY_OPENINGS)



def _contains_name(text: str, name: str) -> bool:
    """True if name occurs in text as whole words ("Ada Berg" is not in "Ada Bergsen")."""
    start = text.find(name)
    while start != -1:
        end = start + len(name)
        if (start == 0 or not text[start - 1].isalnum()) and (end == len(text) or not text[end].isalnum()):
            return True
        start = text.find(name, start + 1)
    return False


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
