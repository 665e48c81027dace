"""Step 1 of cleaning: the main text of an HTML page (trafilatura), with encoding repairs.

    from lmforge.data.extract import ExtractText
    step = ExtractText()
    step.process({"id": "x", "text": "<html>...</html>", "meta": {"format": "html"}, ...})

HTML documents go through trafilatura, which drops navigation, cookie banners, sidebars and
footers and keeps the article body. Plain-text and Markdown documents pass through with their
line endings unified. Then, for every document:

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


class ExtractText(Step):
    name = "extract"

    def __init__(self, favor_precision: bool = True, fast: bool = True, include_tables: bool = True,
                 max_html_depth: int = 200, max_replacement_ratio: float = 0.001, repair_mojibake: bool = True):
        self.favor_precision, self.fast, self.include_tables = favor_precision, fast, include_tables
        self.max_html_depth, self.max_replacement_ratio = max_html_depth, max_replacement_ratio
        self.repair_mojibake = repair_mojibake

    def process(self, doc: dict) -> dict | Drop:
        meta = dict(doc.get("meta") or {})
        text = doc["text"]
        if meta.get("format") == "html":
            if self.max_html_depth and html_depth(text, self.max_html_depth) > self.max_html_depth:
                raise Unreadable("html_too_deep", f"elements nested deeper than {self.max_html_depth}")
            import trafilatura
            extracted = trafilatura.extract(text, url=doc.get("url") or None, favor_precision=self.favor_precision,
                                            fast=self.fast, include_comments=False,
                                            include_tables=self.include_tables, deduplicate=False)
            if not extracted or not extracted.strip():
                return Drop("no_main_text")
            text = extracted
            meta["format"] = "text"
            meta["html_chars"] = len(doc["text"])
        text = normalize_newlines(text)
        if not text:
            return Drop("empty")
        if self.repair_mojibake:
            text, repairs = fix_mojibake(text)
            if repairs:
                meta["mojibake_repairs"] = repairs
        bad = text.count("\ufffd")
        if bad and bad / len(text) > self.max_replacement_ratio:
            return Drop("replacement_characters", f"{bad} U+FFFD in {len(text)} characters")
        return {**doc, "text": text, "meta": meta}
