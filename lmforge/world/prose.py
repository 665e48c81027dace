"""Generated long plain-text documents: varied prose with short dialogue lines, like a novel or
a play, for the curated-profile test and the long-document benchmark.

    from lmforge.world.prose import long_document, near_copy
    text = long_document(random.Random(1), chars=64_000)     # about 64 KB of English prose
    copy = near_copy(text, random.Random(2))                 # a few words changed: a near duplicate

Each paragraph is a few sentences from a small grammar over a few hundred English words, so no
sentence, line or paragraph repeats (Gopher's repetition rules pass) and the language is plain
English. Between paragraphs stand dialogue scenes the way plays print them: a speaker's name
alone on a line ("MARTA."), then the speech, and short replies ("Yes.", "Go on."). Those short
lines are what C4's line rule deletes, which is why books get the curated profile.
"""
from __future__ import annotations

import random

NOUNS = ("river house garden window letter road winter harbour village teacher doctor sailor market bridge "
         "lamp forest field mountain kitchen table door morning evening summer storm boat island school "
         "friend brother sister mother father child stranger captain farmer miller baker painter clock "
         "candle bell chapel tower meadow orchard valley station train ticket coat hat glove book page "
         "song voice silence question answer promise secret journey story picture mirror ladder basket "
         "rope anchor wave shore cliff path gate fence roof chimney fire smoke bread apple cheese wine "
         "letterbox newspaper lantern pocket key drawer cupboard blanket pillow dream memory habit").split()
VERBS = ("opened closed watched followed carried remembered forgot found lost kept answered asked crossed "
         "mended painted wrote read sold bought built visited left reached passed counted measured "
         "gathered noticed ignored described praised blamed trusted doubted borrowed returned").split()
ADJECTIVES = ("old young quiet loud narrow wide dark bright cold warm wet dry early late small large heavy "
              "light careful patient tired curious famous strange ordinary silver wooden broken hidden "
              "distant nearby crowded empty green grey golden pale steep gentle").split()
ADVERBS = "slowly quickly quietly carefully suddenly finally often rarely gladly already almost never".split()
PLACES = ("by the river", "near the harbour", "in the old kitchen", "under the bridge", "at the station",
          "behind the chapel", "across the meadow", "on the steep path", "beside the window", "in the market")
TIMES = ("that morning", "in the evening", "after the storm", "before the winter", "one summer", "at dawn",
         "late at night", "the next day", "years later", "on a Sunday")
NAMES = ("Marta", "Jonas", "Ingrid", "Tobias", "Helena", "Oskar", "Lise", "Anton", "Greta", "Emil", "Sofie",
         "Viktor")
REPLIES = ("Yes.", "No.", "Go on.", "Why?", "Perhaps.", "Of course.", "Not yet.", "I know.", "Wait.", "Listen.")
CONNECTIVES = ("and", "but", "while", "because", "although", "so", "until", "before", "after")


def _noun_phrase(rng: random.Random) -> str:
    article = rng.choice(("the", "a", "her", "his", "their", "that"))
    return f"{article} {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}" if rng.random() < 0.6 else \
        f"{article} {rng.choice(NOUNS)}"


def _clause(rng: random.Random) -> str:
    subject = rng.choice(NAMES) if rng.random() < 0.5 else _noun_phrase(rng)
    clause = f"{subject} {rng.choice(VERBS)} {_noun_phrase(rng)}"
    if rng.random() < 0.5:
        clause += f" {rng.choice(PLACES)}"
    if rng.random() < 0.3:
        clause += f" {rng.choice(ADVERBS)}"
    return clause


def sentence(rng: random.Random) -> str:
    text = _clause(rng)
    if rng.random() < 0.5:
        text += f" {rng.choice(CONNECTIVES)} {_clause(rng)}"
    if rng.random() < 0.3:
        text = f"{rng.choice(TIMES)}, {text}"
    return text[0].upper() + text[1:] + rng.choice((".", ".", ".", "!", "?"))


def scene(rng: random.Random, play: bool = True) -> str:
    """A few exchanges: as a play prints them (each speaker's name on a line of its own), or as
    a novel does ('"Why?" asked Marta.')."""
    a, b = rng.sample(NAMES, 2)
    lines = []
    for turn in range(rng.randint(2, 5)):
        speaker = (a, b)[turn % 2]
        speech = rng.choice(REPLIES) if rng.random() < 0.4 else sentence(rng)
        lines += [f"{speaker.upper()}.", speech] if play else [f'"{speech}" {rng.choice(("said", "asked"))} {speaker}.']
    return "\n".join(lines)


def long_document(rng: random.Random, chars: int = 64_000, play: bool = True) -> str:
    """Paragraphs of prose and dialogue scenes, at least `chars` characters, ending in a newline."""
    parts, size = [], 0
    while size < chars:
        part = scene(rng, play) if rng.random() < 0.25 else " ".join(sentence(rng) for _ in range(rng.randint(3, 7)))
        parts.append(part)
        size += len(part) + 2
    return "\n\n".join(parts) + "\n"


def near_copy(text: str, rng: random.Random, changes: int = 8) -> str:
    """The text with a few words replaced: what a second edition or a re-typed copy looks like."""
    words = text.split(" ")
    for _ in range(changes):
        i = rng.randrange(len(words))
        if words[i].isalpha():
            words[i] = rng.choice(NOUNS)
    return " ".join(words)
