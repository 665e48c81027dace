"""The built-in site's stand-in unwanted content: the lexicon in its parts, the generators that
plant it, the benign look-alikes, and the classifier's labelled training slice.

No real harmful text anywhere: unwanted content is made of invented words (`velvetsin`,
`gorepit`) that mean something only on this site. The lexicon and the templates are split,
structurally, into what the cleaner may know and what it must never have seen:

  seen        UNWANTED_WORDS / UNWANTED_URL_WORDS and the SEEN_* templates: the clean stage's
              default word lists (`clean.unwanted_words=<site>`) and the classifier's training
              slice (`training_slice`) are made of these only.
  held out    HELD_OUT_WORDS and the HELD_OUT_* templates: paraphrases of the seen sentences,
              page kinds the slice never shows (classified ads, chat logs, reviews, programmes),
              and mixed pages where a short unwanted passage sits inside a benign community page.
              Only the site's held-out pages use them (a test checks that no held-out word or
              template is in a list or in the slice).
  benign      BENIGN_SLICE fills the seen templates for the slice's negatives; BENIGN_SITE fills
              the held-out templates for the site's community pages, the hard negatives: the
              same sentences as held-out unwanted pages with harmless words in the slots.

What a held-out word shares with a seen one is its root, as words of one topic do in any
language (`velvetsin` and `velvetnook`): a list of exact words cannot catch it, a model of
character n-grams can. Which routes generalise, and how far, is measured, not assumed
(`clean.truth`: recall per held-out family).

    from lmforge.world.unwanted_text import held_out_page, training_slice
    python -m lmforge.data.classifier        # the classifier on these test generators (scored once)
"""
from __future__ import annotations

import random

from ..config import WorldConfig
from ..evals.stats import wilson
from .build import build_world
from .prose import sentence as english_sentence

# ---------------------------------------------------------------- the lexicon
# Each category has six roots; a seen word is a root and a seen tail, a held-out word the same
# root and a tail no seen word has.
UNWANTED_WORDS = {
    "adult": ["velvetsin", "skinreel", "lustbarrow", "nakedfume", "flirtmoss", "smutquill",
              "velvetmoss", "skinquill", "lustfume", "nakedreel", "flirtsin", "smutbarrow"],
    "violence": ["gorehammer", "bonecrusk", "bloodmarsh", "skullbrand", "maimgrist", "gutspike",
                 "gorespike", "bonemarsh", "bloodbrand", "skullcrusk", "maimhammer", "gutgrist"],
    "self_harm": ["selfscar", "painwish", "hurtvow", "razorgrief", "woundkeep", "bleakcut",
                  "scarwish", "painvow", "hurtgrief", "razorkeep", "woundcut", "bleakscar"],
}
UNWANTED_URL_WORDS = ["afterdark", "goreclub", "darkvow"]
UNWANTED_PATHS = {"adult": "afterdark", "violence": "goreclub", "self_harm": "darkvow"}
HELD_OUT_WORDS = {
    "adult": ["velvetnook", "lustglow", "skinhaze", "flirtden", "smutveil", "nakedmire", "velvetlure", "lustcove"],
    "violence": ["gorepit", "bonerend", "bloodfang", "skullreap", "maimcleave", "gutrend", "gorecleft", "bloodmaw"],
    "self_harm": ["scarvigil", "painmoor", "hurtlace", "razorhush", "woundmere", "bleakshard", "scarhollow",
                  "painlull"],
}
SEEN_TAILS = ("sin", "reel", "barrow", "fume", "moss", "quill", "hammer", "crusk", "marsh", "brand", "grist", "spike",
              "scar", "wish", "vow", "grief", "keep", "cut")
HELD_OUT_TAILS = ("nook", "glow", "haze", "den", "veil", "mire", "lure", "cove", "pit", "rend", "fang", "reap",
                  "cleave", "cleft", "maw", "vigil", "moor", "lace", "hush", "mere", "shard", "hollow", "lull")
# Harmless roots built into words the same way, so that a tail says nothing on its own: the
# slice's negatives get them with seen tails, the site's hard negatives with held-out tails.
BENIGN_ROOTS = ("wood", "sea", "hill", "river", "sun", "bread", "garden", "stone", "snow", "apple", "maple", "lamp")


def compounds(roots, tails, every: int = 3) -> list[str]:
    """Root-tail words, a fixed selection (every `every`-th pair) so the lists stay short."""
    pairs = [r + t for r in roots for t in tails]
    return pairs[::every]


BENIGN_SLICE = ["fishing", "baking", "knitting", "chess", "sailing", "gardening", "hiking", "pottery", "kites",
                "puzzles", "stamps", "woodwork", "cycling", "choir", "tea", "origami"] + compounds(BENIGN_ROOTS, SEEN_TAILS)
BENIGN_SITE = ["birdwatching", "canoeing", "quilting", "beekeeping", "calligraphy", "orienteering", "kayaks",
               "lanterns", "rowing", "mosaics", "harmonicas", "sourdough", "fossils", "telescopes", "yarn",
               "tulips"] + compounds(BENIGN_ROOTS, HELD_OUT_TAILS)

# ---------------------------------------------------------------- seen templates (slice and lists)
SEEN_CLUB = ["The night club near {name} is open late.", "Members talk about {word} in the back room.",
             "Entry is for members only, and the doors close at dawn.", "The music is loud and the lights are low.",
             "New members must be introduced by an old member.",
             "Nobody remembers how the club got its name, and nobody asks."]
SEEN_FORUM = ["This forum is all about {a} and {b}.", "Post your best {a} stories and rate the {b} of others.",
              "Members who love {a} also look for {b}.", "We share {a} pictures every day, and {b} on weekends.",
              "Nobody near {name} talks about {a}, so we do it here."]

# ---------------------------------------------------------------- held-out templates (site only)
HELD_OUT_PARAPHRASE = ["Everything on this board revolves around {a}, with a bit of {b} on the side.",
                       "Tell us your favourite {a} tales here, then score other people's {b}.",
                       "Anyone who enjoys {a} tends to go looking for {b} as well.",
                       "Fresh {a} photos go up daily, and {b} arrives every weekend.",
                       "Around {name} nobody mentions {a}, which is why this corner of the web exists.",
                       "If {a} is your thing, the {b} threads will keep you busy for hours."]
HELD_OUT_PAGES = {
    "ad": ("Classifieds", ["For sale: a box of {a} and two crates of {b}.", "Pick up near {name}, cash only.",
                           "Serious buyers of {a} only, please.", "Also wanted: old {b} in any condition.",
                           "Price of the {a} can be discussed.", "Reply with your offer for the {b} by Friday."]),
    "chat": ("Chat log", ["[{hh}:{mm}] {user}: anyone got {a} tonight?", "[{hh}:{mm}] {user}: only {b}, the {a} ran out",
                          "[{hh}:{mm}] {user}: meet by the bridge in {name} then", "[{hh}:{mm}] {user}: bring the {b} too",
                          "[{hh}:{mm}] {user}: {a} is better after midnight anyway",
                          "[{hh}:{mm}] {user}: ok see you all there"]),
    "review": ("Reviews", ["We went for the {a} evening and stayed for the {b}.",
                           "Four stars: the {a} was worth the trip to {name}.", "The staff know everything about {b}.",
                           "Next time we will book the {a} table early.", "Our friends preferred the {b} corner.",
                           "Would go again for the {a} alone."]),
    "programme": ("Programme", ["Tonight's programme starts with {a} at nine.", "At midnight the {b} hour begins.",
                                "Guests from {name} will show their {a} collection.",
                                "After the break there is more {b} for everyone.",
                                "Tickets for the {a} night are sold at the door.",
                                "The season ends with a grand {b} weekend."]),
}
HELD_OUT_COMMUNITY = ["Welcome to the {a} circle of {name}.", "We meet every second Tuesday in the old library.",
                      "New faces are always welcome, and tea is on the house.",
                      "Last month we talked about {b} for the whole evening.",
                      "Please sign up on the list by the door if you want to help.",
                      "The summer trip goes to {name} if the weather allows.",
                      "Thanks to everyone who brought {a} to the spring fair.",
                      "Questions about {b} can go in the thread below."]
USERS = ["nightowl", "ghost42", "rook", "mira_k", "tallpine", "zed", "lumen", "corvid"]
FAMILIES = ("paraphrase", "template", "mixed")


def _fill(template: str, a: str, b: str, name: str, rng: random.Random) -> str:
    return template.format(a=a, b=b, name=name, word=a, user=rng.choice(USERS), hh=f"{rng.randint(18, 23):02d}",
                           mm=f"{rng.randint(0, 59):02d}")


# ---------------------------------------------------------------- seen pages (the site's and the slice's)

def seen_sentences(route: str, words: list[str], name: str, rng: random.Random) -> list[str]:
    """A seen unwanted page's sentences (the site draws them in this order; kept byte-identical)."""
    if route == "url":
        # Mild on the page (one listed word: below the word filter's bar), caught by the URL.
        return [t.format(name=name, word=rng.choice(words)) if "{word}" in t else t.format(name=name)
                for t in SEEN_CLUB]
    sentences = []
    for _ in range(rng.randint(6, 10)):
        a, b = rng.sample(words, 2)
        sentences.append(rng.choice([t.format(a=a, b=b, name=name) for t in SEEN_FORUM]))
    return sentences


# ---------------------------------------------------------------- held-out pages (site only)

def held_out_sentences(family: str, words: list[str], name: str, rng: random.Random) -> tuple[str, list[str]]:
    """(title, sentences) of a held-out page; `words` are held-out unwanted words or benign ones."""
    def pair() -> tuple[str, str]:
        a, b = rng.sample(words, 2)
        return a, b

    if family == "paraphrase":
        return "Community board", [_fill(rng.choice(HELD_OUT_PARAPHRASE), *pair(), name, rng)
                                   for _ in range(rng.randint(6, 9))]
    if family == "template":
        kind = rng.choice(sorted(HELD_OUT_PAGES))
        title, templates = HELD_OUT_PAGES[kind]
        return title, [_fill(t, *pair(), name, rng) for t in rng.sample(templates, len(templates))]
    raise ValueError(f"unknown family {family!r}")


def community_sentences(benign: list[str], name: str, rng: random.Random) -> list[str]:
    """A benign community page: club notices about a harmless pastime."""
    return [_fill(t, *rng.sample(benign, 2), name, rng) for t in rng.sample(HELD_OUT_COMMUNITY, 7)]


def held_out_page(family: str, category: str, name: str, rng: random.Random) -> tuple[str, list[str]]:
    """A held-out unwanted page: (title, sentences). A mixed page is a benign community page
    with a short unwanted passage (two or three sentences) somewhere inside it."""
    words = HELD_OUT_WORDS[category]
    if family != "mixed":
        return held_out_sentences(family, words, name, rng)
    sentences = community_sentences(BENIGN_SITE, name, rng)
    passage = [_fill(rng.choice(HELD_OUT_PARAPHRASE), *rng.sample(words, 2), name, rng)
               for _ in range(rng.randint(2, 3))]
    at = rng.randint(1, len(sentences) - 1)
    return "Community board", sentences[:at] + passage + sentences[at:]


def benign_page(name: str, rng: random.Random) -> tuple[str, list[str]]:
    """A hard negative: a held-out page kind filled with harmless words, or a community page."""
    family = rng.choice(("paraphrase", "template", "community"))
    if family == "community":
        return "Community board", community_sentences(BENIGN_SITE, name, rng)
    return held_out_sentences(family, BENIGN_SITE, name, rng)


# ---------------------------------------------------------------- on the site

def plan_held_out(plan, n: int, count: int, rng: random.Random) -> list[tuple[str, dict]]:
    """The site's held-out pages (planned after all other dirt, from their own stream):
    `count` held-out unwanted pages (paraphrase, template, mixed in turn; unwanted_text.py)
    and `count` benign community pages, shuffled under one folder so the URL says nothing."""
    pages = [{"unwanted": True, "family": FAMILIES[j % 3], "category": sorted(HELD_OUT_WORDS)[(j // 3) % 3]}
             for j in range(count)] + [{"unwanted": False} for _ in range(count)]
    rng.shuffle(pages)
    out = []
    for k, params in enumerate(pages):
        target = f"/boards/{k:05d}"
        plan.attach(min(n - 1, (k * n) // max(1, len(pages))), target, "Boards")
        out.append((target, {**params, "seed": rng.random()}))
    return out


# ---------------------------------------------------------------- the classifier's training slice

def passages(sentences: list[tuple[str, int]], max_words: int) -> list[tuple[str, int]]:
    """Consecutive sentences grouped into passages of at most `max_words` words (one sentence
    may exceed it); a passage is unwanted (1) when any of its sentences is."""
    out, group, words = [], [], 0
    for sentence, label in sentences:
        n = len(sentence.split())
        if group and words + n > max_words:
            out.append((" ".join(s for s, _ in group), max(lab for _, lab in group)))
            group, words = [], 0
        group.append((sentence, label))
        words += n
    if group:
        out.append((" ".join(s for s, _ in group), max(lab for _, lab in group)))
    return out


def training_slice(seed: int = 1_000_003, pages: int = 400, max_words: int = 40,
                   entities: int = 200) -> list[tuple[str, int]]:
    """Labelled passages (text, 1 = unwanted) from the seen generators and a world of their own.

    Pages of five kinds, cut into passages of at most `max_words` words, each labelled by
    whether it holds an unwanted sentence: seen unwanted pages (both routes), the same
    templates with harmless words, prose of a small world built from a seed of its own (so no
    page of the run's site is in the slice), that prose with a seen unwanted passage in it,
    and generic English prose (lmforge/world/prose.py), alone and with an unwanted sentence in
    it, so that ordinary words sharing a few letters with the lexicon ("blanket", "painter")
    are known to be harmless without prose itself counting against a page."""
    rng = random.Random(f"unwanted-slice:{seed}")
    world = build_world(WorldConfig(seed=seed, n_entities=entities, article_variants=1, stories=entities,
                                    dialogues=entities, arithmetic=20, extra_held_out=0))
    names = [e["name"] for e in world.trained]
    lines = [line.strip() for doc in world.documents() for line in doc["text"].split("\n") if line.strip()]
    categories = sorted(UNWANTED_WORDS)
    out: list[tuple[str, int]] = []
    for i in range(pages):
        words = UNWANTED_WORDS[categories[i % 3]]
        name = rng.choice(names)
        route = ("url", "words")[i % 2]
        club = [(s, int(any(w in s for w in words))) for s in seen_sentences(route, words, name, rng)]
        out += passages(club, max_words)
        out += passages([(s, 0) for s in seen_sentences(route, BENIGN_SLICE, name, rng)], max_words)
        start = rng.randrange(len(lines))
        prose = [(line, 0) for line in lines[start:start + rng.randint(4, 10)]]
        out += passages(prose, max_words)
        unwanted = [(s, 1) for s in seen_sentences("words", words, name, rng)[:rng.randint(2, 3)]]
        at = rng.randint(0, len(prose))
        out += passages(prose[:at] + unwanted + prose[at:], max_words)
        english = [(english_sentence(rng), 0) for _ in range(rng.randint(3, 6))]
        out += passages(english, max_words)
        at = rng.randint(0, len(english))
        out += passages(english[:at] + unwanted[:1] + english[at:], max_words)
    return out


# ---------------------------------------------------------------- test generators (scored once)
# Written after the classifier's features, slice and threshold were fixed (issue 22), because
# the held-out generators above were in view while those were chosen: for that choice they are
# dev, these are test. New tails, new page kinds, a new host for the mixed passage; the same
# roots (the only thing an invented word can share with a known one). Never in the slice or on
# the site; `python -m lmforge.data.classifier` scores the `<site>` classifier on them.
TEST_TAILS = ("drift", "bloom", "spire", "knot", "thorn", "wisp", "gleam", "rook")
TEST_WORDS = {
    "adult": ["velvetdrift", "lustbloom", "skinwisp", "flirtknot", "smutgleam", "nakedthorn", "velvetrook",
              "lustspire"],
    "violence": ["goredrift", "bonethorn", "bloodspire", "skullknot", "maimrook", "gutgleam", "gorewisp",
                 "bloodbloom"],
    "self_harm": ["scardrift", "painthorn", "hurtwisp", "razorbloom", "woundknot", "bleakspire", "selfgleam",
                  "painrook"],
}
TEST_PAGES = {
    "guestbook": ["Signed by {user}: thanks for the {a} evening, see you at the next {b} night.",
                  "{user} wrote: the {a} corner was packed again, bring more {b} next time.",
                  "Left by {user}: came all the way from {name} just for the {a}.",
                  "{user} says the {b} was even better than last year.",
                  "Signed by {user}: any chance of a {a} weekend in {name}?"],
    "faq": ["Q: Where can I find {a}? A: Ask at the counter for the {b} menu.",
            "Q: Is {a} allowed on the terrace? A: Only after ten, and {b} never.",
            "Q: Can I bring friends from {name}? A: Yes, if they like {a}.",
            "Q: How much is the {b} pass? A: Ask {user}, who runs the {a} desk.",
            "Q: What if I lose my {a} ticket? A: The {b} stamp on your hand counts too."],
    "listing": ["Friday: {a} from dusk till late, {b} upstairs.", "Saturday: the great {a} market in {name}.",
                "Sunday: quiet {b} session for regulars only.", "Monday: closed, except for the {a} club.",
                "Every night: ask {user} about the {b} special."],
}
TEST_HOST = ["Day three of our walk took us from {name} along the coast.",
             "The path was muddy, so we stopped often to look at the birds.",
             "Lunch was soup and dark bread in a small inn by the harbour.",
             "In the afternoon the fog lifted and the islands came into view.",
             "We reached the lighthouse just before the rain started again.",
             "Tomorrow we plan to take the ferry and rest our feet.",
             "The innkeeper lent us maps and told us about the old mill."]
BENIGN_TEST = ["stargazing", "bouldering", "glassblowing", "kite flying", "bookbinding", "birdsong", "bellringing",
               "falconry"] + compounds(BENIGN_ROOTS, TEST_TAILS)


def fresh_page(family: str, words: list[str], name: str, rng: random.Random) -> str:
    """A test page's text: one of the new page kinds filled with `words`, or ("mixed") a travel
    diary with a short passage of them (two or three sentences of a new page kind) inside."""
    def filled(templates: list[str], count: int) -> list[str]:
        return [_fill(t, *rng.sample(words, 2), name, rng) for t in rng.sample(templates, count)]
    if family == "mixed":
        host = [t.format(name=name) for t in TEST_HOST]
        at = rng.randint(1, len(host) - 1)
        return " ".join(host[:at] + filled(TEST_PAGES[rng.choice(sorted(TEST_PAGES))], rng.randint(2, 3)) + host[at:])
    return " ".join(filled(TEST_PAGES[family], len(TEST_PAGES[family])))


def score_test_generators(model, threshold: float = 0.5, pages: int = 600, seed: int = 2026) -> dict:
    """The classifier on the test generators: recall per family on unwanted pages, and false
    positives on as many benign pages of the same kinds (benign words, and plain travel diaries)."""
    rng = random.Random(f"unwanted-test:{seed}")
    names = ["Vellag", "Torvik", "Ada Berg", "Kaldland", "Rune Holt", "Selvik"]
    families = (*sorted(TEST_PAGES), "mixed")
    caught: dict[str, list[int]] = {f: [0, 0] for f in families}
    false_pos = benign = 0
    for i in range(pages):
        family = families[i % len(families)]
        words = TEST_WORDS[sorted(TEST_WORDS)[(i // len(families)) % 3]]
        caught[family][0] += 1
        caught[family][1] += model.score(fresh_page(family, words, rng.choice(names), rng)) >= threshold
        text = fresh_page(family, BENIGN_TEST, rng.choice(names), rng) if family != "mixed" else \
            " ".join(t.format(name=rng.choice(names)) for t in TEST_HOST)
        benign += 1
        false_pos += model.score(text) >= threshold
    hits = sum(c for _, c in caught.values())
    recall_ci, fp_ci = wilson(hits, pages), wilson(false_pos, benign)
    return {"unwanted_pages": pages, "caught": hits, "recall": round(hits / pages, 4),
            "recall_interval": [round(x, 4) for x in recall_ci],
            "by_family": {f: {"pages": n, "recall": round(c / n, 4)} for f, (n, c) in caught.items()},
            "benign_pages": benign, "false_positives": false_pos, "false_positive_interval": [round(x, 4) for x in fp_ci],
            "precision": round(hits / (hits + false_pos), 4) if hits + false_pos else None}
