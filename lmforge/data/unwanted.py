"""Step 6 of cleaning: remove unwanted content by URL (domain blocklist, banned URL words) and
by word lists.

    from lmforge.data.unwanted import UnwantedFilter
    step = UnwantedFilter(url_blocklist=["bad.example"], url_words=["casino"], words={"adult": [...]})

The URL rules come first and are cheap (FineWeb's URL filter works the same way); the word
rule removes a page with at least `min_hits` occurrences of listed words (one stray word is
common in innocent text, a page about the subject uses several). The default lists are the
built-in site's invented stand-in lexicon (lmforge/world/site.py), so the filter can be measured
without shipping any real harmful word list; point `clean.unwanted_words_file` and
`clean.url_blocklist_file` at real lists (one entry per line, `#` comments) for real data.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from .steps import Drop, Filter

WORD = re.compile(r"\w+")
URL_TOKEN = re.compile(r"[^a-z0-9]+")


def read_list_file(path: str) -> list[str]:
    """One entry per line; blank lines and `#` comments ignored."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip().lower()
        if line:
            out.append(line)
    return out


class UnwantedFilter(Filter):
    name = "unwanted"

    def __init__(self, url_blocklist=(), url_words=(), words: dict | list = (), min_hits: int = 2):
        self.domains = {d.lower().strip(".") for d in url_blocklist if d}
        self.url_words = {w.lower() for w in url_words if w}
        # word -> category ("adult", "violence", ...), so removals say what they were about
        if isinstance(words, dict):
            self.words = {w.lower(): category for category, items in words.items() for w in items}
        else:
            self.words = {w.lower(): "listed" for w in words}
        self.min_hits = max(1, min_hits)

    def check(self, doc: dict) -> Drop | None:
        url = (doc.get("url") or "").lower()
        if url:
            host = urlsplit(url).hostname or ""
            for domain in self.domains:
                if host == domain or host.endswith("." + domain):
                    return Drop("blocked_domain", domain)
            if self.url_words:
                for token in URL_TOKEN.split(url):
                    if token in self.url_words:
                        return Drop("url_word", token)
        if self.words:
            hits, categories = 0, {}
            for match in WORD.finditer(doc["text"].lower()):
                category = self.words.get(match.group())
                if category:
                    hits += 1
                    categories[category] = categories.get(category, 0) + 1
            if hits >= self.min_hits:
                top = max(categories, key=categories.get)
                return Drop("word_list", f"{hits} listed words, mostly {top}")
        return None
