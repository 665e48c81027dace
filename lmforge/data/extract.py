"""Step 1 of cleaning: the main text of an HTML page (resiliparse or trafilatura), with encoding repairs.

    from lmforge.data.extract import ExtractText
    step = ExtractText()                          # extractor="resiliparse" (default) or "trafilatura"
    step.process({"id": "x", "text": "<html>...</html>", "meta": {"format": "html"}, ...})

HTML documents go through a main-content extractor, which drops navigation, cookie banners,
sidebars and footers and keeps the article body:

  resiliparse   (the default; DCLM's choice) lexbor's C parser and resiliparse's main-content
                rules, plus one rule of ours: a block whose text is nothing but links (a
                "share" or "related" bar) is dropped before extraction, as trafilatura's
                link-density test does. Blank lines become single line breaks, the shape
                trafilatura gives, so the kept text is the same on the built-in site.
  trafilatura   precision mode, without its fallback extractors (`clean.extract_fast`).

The figures (docs per CPU-second, boilerplate left and main text kept on the site's truth)
are in docs/ARCHITECTURE.md and `benchmarks/clean_throughput.py`. Plain-text and Markdown
documents pass through with their line endings unified (unless `normalize=False`, which the
`curated` profile uses to keep a book's text exactly as it is). Then, for every document:

  - double-encoded UTF-8 ("Ã¸" for "ø", "â€“" for "–") is repaired, as ftfy would, but only
    where a run of characters round-trips exactly through cp1252 -> UTF-8;
  - text already mangled to U+FFFD by an earlier decoder is removed when more than
    `max_replacement_ratio` of its characters are U+FFFD: what it said is lost.

A page nested deeper than `max_html_depth` elements is unreadable (libxml2 silently cuts
such trees at 256 levels, which would lose text without a trace).
"""
from __future__ import annotations

import re

from .steps import Drop, Step, Unreadable

# Elements that never nest (void) or whose end tag is optional (browsers close them
# implicitly), so they do not count towards the nesting depth.
NON_NESTING = frozenset("""area base br col embed hr img input link meta param source track wbr
p li dt dd tr td th option thead tbody tfoot colgroup rt rp""".split())
TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)[^>]*?(/?)>")
# A lead byte of a 2-4 byte UTF-8 sequence read as cp1252, then 1-3 continuation bytes read the same way.
_CONTINUATION = "\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014" \
                "\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
MOJIBAKE = re.compile(f"[\u00c2-\u00f4][{_CONTINUATION}]{{1,3}}")


def html_depth(html_text: str, limit: int) -> int:
    """Deepest element nesting, counting only elements that must be closed; stops past `limit`."""
    depth = deepest = 0
    for match in TAG.finditer(html_text):
        closing, name, self_closing = match.groups()
        name = name.lower()
        if name in NON_NESTING or self_closing:
            continue
        if closing:
            depth = max(0, depth - 1)
        else:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
    return deepest


def fix_mojibake(text: str) -> tuple[str, int]:
    """Repair UTF-8 that was decoded as cp1252; returns (text, number of repairs)."""
    repairs = 0

    def repair(match: re.Match) -> str:
        nonlocal repairs
        chunk = match.group()
        try:
            fixed = chunk.encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            try:
                fixed = chunk.encode("latin-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                return chunk
        repairs += 1
        return fixed

    if not MOJIBAKE.search(text):
        return text, 0
    return MOJIBAKE.sub(repair, text), repairs


def normalize_newlines(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# A block whose content is only links and separators: a "share", "related" or navigation bar.
# Matched on the HTML before parsing: walking resiliparse's DOM from Python is slow (docs/LOG.md).
LINK_BLOCK = re.compile(r"<(div|p|li|td|dd|span|section|nav)\b[^>]*>(?:\s|&#?\w+;|[^\w<])*"
                        r"(?:<a\b[^>]*>[^<]*</a>(?:\s|&#?\w+;|[^\w<])*)+</\1\s*>", re.IGNORECASE)


def resiliparse_text(html_text: str) -> str:
    from resiliparse.extract.html2text import extract_plain_text
    text = extract_plain_text(LINK_BLOCK.sub("", html_text), main_content=True, list_bullets=False,
                              alt_texts=False)
    return re.sub(r"[ \t]*\n\s*", "\n", text).strip()


def trafilatura_text(html_text: str, url: str | None, favor_precision: bool, fast: bool,
                     include_tables: bool) -> str:
    import trafilatura
    return trafilatura.extract(html_text, url=url, favor_precision=favor_precision, fast=fast,
                               include_comments=False, include_tables=include_tables, deduplicate=False) or ""


EXTRACTORS = ("resiliparse", "trafilatura")


class ExtractText(Step):
    name = "extract"

    def __init__(self, favor_precision: bool = True, fast: bool = True, include_tables: bool = True,
                 max_html_depth: int = 200, max_replacement_ratio: float = 0.001, repair_mojibake: bool = True,
                 extractor: str = "resiliparse", normalize: bool = True):
        if extractor not in EXTRACTORS:
            raise ValueError(f"extractor {extractor!r}: choose one of {', '.join(EXTRACTORS)}")
        self.favor_precision, self.fast, self.include_tables = favor_precision, fast, include_tables
        self.max_html_depth, self.max_replacement_ratio = max_html_depth, max_replacement_ratio
        self.repair_mojibake, self.extractor, self.normalize = repair_mojibake, extractor, normalize

    def main_text(self, html_text: str, url: str | None = None) -> str:
        if self.extractor == "resiliparse":
            return resiliparse_text(html_text)
        return trafilatura_text(html_text, url, self.favor_precision, self.fast, self.include_tables)

    def process(self, doc: dict) -> dict | Drop:
        meta = dict(doc.get("meta") or {})
        text = doc["text"]
        if meta.get("format") == "html":
            # fewer start tags than the limit cannot nest deeper than it: skip the tag walk
            if self.max_html_depth and text.count("<") - text.count("</") > self.max_html_depth \
                    and html_depth(text, self.max_html_depth) > self.max_html_depth:
                raise Unreadable("html_too_deep", f"elements nested deeper than {self.max_html_depth}")
            extracted = self.main_text(text, doc.get("url") or None)
            if not extracted.strip():
                return Drop("no_main_text")
            text = normalize_newlines(extracted)
            meta["format"] = "text"
            meta["html_chars"] = len(doc["text"])
        elif self.normalize:
            text = normalize_newlines(text)
        if not text.strip():
            return Drop("empty")
        if self.repair_mojibake:
            text, repairs = fix_mojibake(text)
            if repairs:
                meta["mojibake_repairs"] = repairs
        bad = text.count("\ufffd")
        if bad and bad / len(text) > self.max_replacement_ratio:
            return Drop("replacement_characters", f"{bad} U+FFFD in {len(text)} characters")
        return {**doc, "text": text, "meta": meta}
