"""The text of the built-in site's dirt: page furniture (cookie notices, footers, navigation),
other languages, lorem ipsum, keyword spam, near-duplicate edits and broken encodings (used by
lmforge/world/site.py).

    from lmforge.world.site_dirt import near_duplicate_text, jaccard, mojibake
    copy = near_duplicate_text(text, "en", random.Random(1))      # word 5-gram Jaccard >= 0.8
"""
from __future__ import annotations

import random
import re

# A few skins, so that copies of one text can differ in their furniture only. Every sentence
# here is in BOILERPLATE_SENTENCES, which the truth uses to measure boilerplate left in kept text.
COOKIE = {"en": ["We use cookies to give you the best experience on our website. By continuing to browse you "
                 "agree to our use of cookies.",
                 "This site uses cookies for statistics and personalised content. You can change your "
                 "choice at any time in the settings."],
          "nb": ["Vi bruker informasjonskapsler for å gi deg en best mulig opplevelse. Ved å fortsette "
                 "godtar du bruken av informasjonskapsler.",
                 "Dette nettstedet bruker informasjonskapsler til statistikk og tilpasset innhold."]}
FOOTER = {"en": ["© 2024 The World Encyclopedia. All rights reserved.",
                 "The World Encyclopedia is written by volunteers from every corner of the world.",
                 "Write to the editors at editors@world.lmforge.local for corrections."],
          "nb": ["© 2024 Verdensleksikonet. Alle rettigheter forbeholdt.",
                 "Verdensleksikonet skrives av frivillige fra hele verden.",
                 "Skriv til redaksjonen på redaksjon@world.lmforge.local for rettelser."]}
NAV = {"en": ["Home", "Encyclopedia", "Stories", "Forum", "Mathematics", "About us", "Contact"],
       "nb": ["Hjem", "Leksikon", "Fortellinger", "Forum", "Matematikk", "Om oss", "Kontakt"]}
SIDEBAR = {"en": "Popular pages", "nb": "Populære sider"}
PRINT_LINK = {"en": "Printable version", "nb": "Utskriftsvennlig versjon"}
BOILERPLATE_SENTENCES = [s for table in (COOKIE, FOOTER) for lines in table.values() for s in lines]

FOREIGN = {
    "de": ["{name} ist ein Thema, über das viele Menschen sprechen.",
           "Die Geschichte von {name} beginnt im Jahr {year}.",
           "Jedes Jahr kommen viele Besucher, um mehr über {name} zu erfahren.",
           "In diesem Artikel erzählen wir, was wir über {name} wissen.",
           "Es gibt noch viele offene Fragen, die wir gerne beantworten würden.",
           "Die Menschen in der Gegend sind sehr stolz auf ihre Geschichte.",
           "Wir danken allen Lesern für ihre Geduld und ihr Interesse.",
           "Weitere Informationen finden Sie bald auf dieser Seite."],
    "fr": ["{name} est un sujet dont beaucoup de gens parlent.",
           "L'histoire de {name} commence en {year}.",
           "Chaque année, de nombreux visiteurs viennent pour en savoir plus sur {name}.",
           "Dans cet article, nous racontons ce que nous savons de {name}.",
           "Il reste encore beaucoup de questions auxquelles nous aimerions répondre.",
           "Les habitants de la région sont très fiers de leur histoire.",
           "Nous remercions tous les lecteurs pour leur patience et leur intérêt.",
           "Vous trouverez bientôt plus d'informations sur cette page."],
    "es": ["{name} es un tema del que mucha gente habla.",
           "La historia de {name} comienza en el año {year}.",
           "Cada año llegan muchos visitantes para saber más sobre {name}.",
           "En este artículo contamos lo que sabemos de {name}.",
           "Todavía quedan muchas preguntas que nos gustaría responder.",
           "La gente de la zona está muy orgullosa de su historia.",
           "Agradecemos a todos los lectores su paciencia y su interés.",
           "Pronto encontrará más información en esta página."],
    "fi": ["{name} on aihe, josta moni ihminen puhuu.",
           "Tarina {name} alkaa vuodesta {year}.",
           "Joka vuosi monet vierailijat tulevat oppimaan lisää.",
           "Tässä artikkelissa kerromme, mitä tiedämme aiheesta.",
           "Vielä on paljon kysymyksiä, joihin haluaisimme vastata.",
           "Alueen ihmiset ovat hyvin ylpeitä historiastaan.",
           "Kiitämme kaikkia lukijoita kärsivällisyydestä ja kiinnostuksesta.",
           "Lisää tietoa löytyy pian tältä sivulta."],
    "nl": ["{name} is een onderwerp waar veel mensen over praten.",
           "De geschiedenis van {name} begint in het jaar {year}.",
           "Elk jaar komen veel bezoekers om meer te weten te komen over {name}.",
           "In dit artikel vertellen we wat we weten over {name}.",
           "Er zijn nog veel vragen die we graag zouden beantwoorden.",
           "De mensen in de streek zijn erg trots op hun geschiedenis.",
           "We danken alle lezers voor hun geduld en hun belangstelling.",
           "Binnenkort vindt u meer informatie op deze pagina."],
}
LOREM_WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
               "labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris "
               "nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse "
               "cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui "
               "officia deserunt mollit anim id est laborum").split()
SPAM_PHRASES = ["buy {k} now", "cheap {k}", "best {k} online", "{k} discount", "{k} sale", "free {k}",
                "{k} deal of the day", "order {k} today", "top {k} prices", "{k} {k} {k}"]
NEAR_DUP_EXTRA = {"en": ["This page was first published in the World Weekly.", "Thanks for reading our blog.",
                         "We post new pages every week."],
                  "nb": ["Denne siden ble først publisert i Verdensukebladet.", "Takk for at du leser bloggen vår.",
                         "Vi legger ut nye sider hver uke."]}
WORD_SWAPS = {"en": [("The ", "This "), (" and ", " & "), (" is ", " is truly "), ("Many ", "Lots of ")],
              "nb": [(" og ", " & "), ("Mange ", "Svært mange "), (" er ", " er faktisk "), ("Den ", "Denne ")]}

def shingles(text: str, n: int = 5) -> set[str]:
    """Word n-grams of lower-cased, punctuation-free text (the same normalisation as dedup)."""
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / max(1, len(sa | sb))


def near_duplicate_text(text: str, lang: str, rng: random.Random, min_jaccard: float = 0.8) -> str:
    """A copy that a scraper or a blog would make: re-ordered, trimmed, padded, lightly reworded.

    Edits are drawn until the copy keeps a word 5-gram Jaccard similarity of at least
    `min_jaccard` with the original (what "near duplicate" conventionally means); a short text
    that cannot take the edits gets its paragraphs re-ordered only."""
    best, best_j = None, -1.0
    for _ in range(8):
        candidate = _edited(text, lang, rng)
        similarity = jaccard(text, candidate)
        if similarity >= min_jaccard:
            return candidate
        if similarity > best_j:
            best, best_j = candidate, similarity
    parts = text.strip().split("\n\n")
    reordered = parts[:1] + parts[:0:-1]
    return "\n\n".join(reordered) + "\n" if jaccard(text, "\n\n".join(reordered)) > best_j else best


def _edited(text: str, lang: str, rng: random.Random) -> str:
    parts = text.strip().split("\n\n")
    head, rest = parts[:1], parts[1:]
    edits = rng.sample(["reorder", "drop", "add", "swap"], rng.randint(1, 3))
    if "reorder" in edits and len(rest) > 1:
        rng.shuffle(rest)
    if "drop" in edits:
        # Drop one sentence from the longest paragraph (never a whole section).
        longest = max(range(len(rest)), key=lambda i: len(rest[i])) if rest else None
        if longest is not None:
            sentences = re.split(r"(?<=[.!?]) ", rest[longest])
            if len(sentences) > 2:
                sentences.pop(rng.randrange(1, len(sentences)))
                rest[longest] = " ".join(sentences)
    if "add" in edits:
        rest.append(rng.choice(NEAR_DUP_EXTRA[lang]))
    new = "\n\n".join(head + rest)
    if "swap" in edits:
        for old, replacement in rng.sample(WORD_SWAPS[lang], 2):
            new = new.replace(old, replacement, 1)
    return new + "\n"


def mojibake(text: str) -> str:
    """UTF-8 bytes read back as cp1252 (the classic double encoding)."""
    out = []
    for ch in text:
        if ord(ch) < 128:
            out.append(ch)
            continue
        for byte in ch.encode("utf-8"):
            try:
                out.append(bytes([byte]).decode("cp1252"))
            except UnicodeDecodeError:
                out.append(chr(byte))     # the five bytes cp1252 leaves undefined pass through as latin-1
    return "".join(out)


def lossy(text: str) -> str:
    """Text that a careless decoder already mangled: every non-ASCII letter became U+FFFD."""
    return "".join(ch if ord(ch) < 128 else "\ufffd" for ch in text)


