"""Heuristic quality rules for web text: Gopher quality and repetition, C4 line rules, FineWeb rules.

Every threshold is an argument (the clean stage passes `cfg.clean.*`); the defaults are the
values the FineWeb paper used (Penedo et al., 2024), which in turn took Gopher's from Rae et al.,
2021 and C4's from Raffel et al., 2020:

  Gopher quality     50..100,000 words, mean word length 3..10 characters, "#" and "..." at most
                     10 % of words, at most 90 % bullet lines and 30 % lines ending in "...", at
                     least 80 % of words with a letter, at least 2 stop words
  Gopher repetition  duplicate lines / paragraphs at most 30 % (by count) and 20 % (by characters),
                     the most common 2/3/4-gram covers at most 20/18/16 % of characters, repeated
                     5..10-grams at most 15..10 %
  C4                 drop lines with fewer than 3 words, with "javascript", or with cookie/policy
                     notices, strip citation marks; drop pages with "lorem ipsum" or "{", or fewer
                     than 5 sentences afterwards. (FineWeb leaves out the terminal-punctuation rule.)
  FineWeb            at least 12 % of lines end in punctuation, at most 67 % of lines are 30
                     characters or shorter, at most 1 % of characters sit in duplicated lines,
                     at most 0.3 newlines per word

    python -m lmforge.data.quality < page.txt      # which rule, if any, removes this text
"""
from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter

from .ngrams import NGrams
from .steps import Drop, Filter, Step

# Gopher's English stop words; a Bokmål list of the same kind (short, very frequent words).
STOP_WORDS = {
    "en": frozenset({"the", "be", "to", "of", "and", "that", "have", "with"}),
    "nb": frozenset({"og", "i", "er", "det", "som", "på", "til", "av", "med", "en"}),
}
ALL_STOP_WORDS = frozenset().union(*STOP_WORDS.values())

PUNCTUATION = frozenset(string.punctuation) | frozenset("–—‘’“”«»…•·")
TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", "”", "’", "»", ":")
BULLETS = ("•", "-", "*", "‣", "◦", "·")
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
                  "use cookies", "accept all cookies")
CITATION = re.compile(r"\[\d+\]|\[edit\]|\[citation needed\]", re.IGNORECASE)
SENTENCE_END = re.compile(r"[.!?…]+(?=\s|$)")
PARAGRAPH_BREAK = re.compile(r"\n{2,}")
LINE_BREAK = re.compile(r"\n+")


EQUATION = re.compile(r"^-?\d+(?:[.,]\d+)?\s*[-+×x*/÷:]\s*-?\d+(?:[.,]\d+)?\s*=\s*-?\d+(?:[.,]\d+)?[.!]?$")


def is_math(doc: dict) -> bool:
    return (doc.get("meta") or {}).get("domain") == "math"


class MathRoute(Step):
    """Marks worksheets (documents of mostly 'a + b = c' lines) so that the prose rules below let
    them pass: Gopher's "80 % of words have a letter" and C4's "5 sentences" are right for web
    prose and wrong for arithmetic, which they would remove wholesale (the reason Llama 3 and
    FineMath give math pages a pipeline of their own). Off unless `clean.math_route` is set."""
    name = "math_route"

    def __init__(self, min_equation_lines: float = 0.3, min_equations: int = 2):
        self.min_equation_lines, self.min_equations = min_equation_lines, min_equations

    def process(self, doc: dict) -> dict:
        lines = [line.strip() for line in doc["text"].split("\n") if line.strip()]
        equations = sum(bool(EQUATION.match(line)) for line in lines)
        if equations >= self.min_equations and equations / max(1, len(lines)) >= self.min_equation_lines:
            return {**doc, "meta": {**doc.get("meta", {}), "domain": "math"}}
        return doc


def words_of(text: str) -> list[str]:
    return text.split()


def is_symbol(word: str) -> bool:
    return all(ch in PUNCTUATION for ch in word)


# ---------------------------------------------------------------- Gopher quality

class GopherQuality(Filter):
    name = "gopher_quality"

    def __init__(self, min_doc_words=50, max_doc_words=100_000, min_avg_word_length=3.0, max_avg_word_length=10.0,
                 max_symbol_word_ratio=0.1, max_bullet_lines_ratio=0.9, max_ellipsis_lines_ratio=0.3,
                 min_alpha_words_ratio=0.8, min_stop_words=2):
        self.min_doc_words, self.max_doc_words = min_doc_words, max_doc_words
        self.min_avg_word_length, self.max_avg_word_length = min_avg_word_length, max_avg_word_length
        self.max_symbol_word_ratio = max_symbol_word_ratio
        self.max_bullet_lines_ratio, self.max_ellipsis_lines_ratio = max_bullet_lines_ratio, max_ellipsis_lines_ratio
        self.min_alpha_words_ratio, self.min_stop_words = min_alpha_words_ratio, min_stop_words

    def check(self, doc: dict) -> Drop | None:
        if is_math(doc):
            return None
        text = doc["text"]
        words = words_of(text)
        if not words:
            return Drop("no_words")
        # Every per-word test below runs once per distinct word, weighted by its count: the
        # same sums as a pass over all words, a few times faster on long documents.
        counts = Counter(words)
        # Counts and lengths ignore pure punctuation tokens ("-", "=", "..."), as Gopher does.
        n_real = real_chars = 0
        for w, k in counts.items():
            if not is_symbol(w):
                n_real += k
                real_chars += len(w) * k
        if n_real < self.min_doc_words:
            return Drop("too_few_words", f"{n_real} words")
        if n_real > self.max_doc_words:
            return Drop("too_many_words", f"{n_real} words")
        mean_length = real_chars / n_real
        if mean_length < self.min_avg_word_length:
            return Drop("short_words", f"mean word length {mean_length:.2f}")
        if mean_length > self.max_avg_word_length:
            return Drop("long_words", f"mean word length {mean_length:.2f}")
        n_words = len(words)
        if text.count("#") / n_words > self.max_symbol_word_ratio:
            return Drop("hash_symbols")
        if (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio:
            return Drop("ellipsis_symbols")
        lines = [line for line in text.splitlines() if line.strip()] or [""]
        if sum(line.lstrip().startswith(BULLETS) for line in lines) / len(lines) > self.max_bullet_lines_ratio:
            return Drop("bullet_lines")
        if sum(line.rstrip().endswith(("...", "…")) for line in lines) / len(lines) > self.max_ellipsis_lines_ratio:
            return Drop("ellipsis_lines")
        alpha = sum(k for w, k in counts.items() if any(ch.isalpha() for ch in w))
        if alpha / n_words < self.min_alpha_words_ratio:
            return Drop("few_alphabetic_words", f"{alpha / n_words:.2f}")
        if self.min_stop_words:
            stop_words = STOP_WORDS.get(doc.get("meta", {}).get("language", ""), ALL_STOP_WORDS)
            found = sum(k for w, k in counts.items() if w.strip(string.punctuation).lower() in stop_words)
            if found < self.min_stop_words:
                return Drop("few_stop_words")
        return None


# ---------------------------------------------------------------- Gopher repetition

def _duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items seen before, characters in them)."""
    seen, count, chars = set(), 0, 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


class GopherRepetition(Filter):
    name = "gopher_repetition"

    def __init__(self, dup_line_frac=0.3, dup_para_frac=0.3, dup_line_char_frac=0.2, dup_para_char_frac=0.2,
                 top_ngram_char_frac=(0.20, 0.18, 0.16), dup_ngram_char_frac=(0.15, 0.14, 0.13, 0.12, 0.11, 0.10)):
        self.dup_line_frac, self.dup_para_frac = dup_line_frac, dup_para_frac
        self.dup_line_char_frac, self.dup_para_char_frac = dup_line_char_frac, dup_para_char_frac
        self.top_ngrams = list(zip((2, 3, 4), top_ngram_char_frac))
        self.dup_ngrams = list(zip((5, 6, 7, 8, 9, 10), dup_ngram_char_frac))

    def check(self, doc: dict) -> Drop | None:
        if is_math(doc):
            return None
        text = doc["text"].strip()
        if not text:
            return Drop("empty")
        n_chars = len(text)
        paragraphs = PARAGRAPH_BREAK.split(text)
        count, chars = _duplicates(paragraphs)
        if count / len(paragraphs) > self.dup_para_frac:
            return Drop("duplicate_paragraphs")
        if chars / n_chars > self.dup_para_char_frac:
            return Drop("duplicate_paragraph_chars")
        lines = LINE_BREAK.split(text)
        count, chars = _duplicates(lines)
        if count / len(lines) > self.dup_line_frac:
            return Drop("duplicate_lines")
        if chars / n_chars > self.dup_line_char_frac:
            return Drop("duplicate_line_chars")
        grams = NGrams(words_of(text.lower()))
        for n, limit in self.top_ngrams:
            if grams.top_chars(n) / n_chars > limit:
                return Drop(f"top_{n}gram")
        for n, limit in self.dup_ngrams:
            if grams.repeated_chars(n) / n_chars > limit:
                return Drop(f"repeated_{n}grams")
        return None


# ---------------------------------------------------------------- C4

class C4Lines(Filter):
    """C4's rules: mostly line edits (the document is changed), a few whole-page drops."""
    name = "c4"

    def __init__(self, min_words_per_line=3, max_word_length=1000, min_sentences=5, terminal_punctuation=False,
                 drop_lorem_ipsum=True, drop_curly_bracket=True, drop_javascript_lines=True, drop_policy_lines=True,
                 remove_citations=True, line_rules=True):
        self.min_words_per_line, self.max_word_length = min_words_per_line, max_word_length
        self.min_sentences, self.terminal_punctuation = min_sentences, terminal_punctuation
        self.drop_lorem_ipsum, self.drop_curly_bracket = drop_lorem_ipsum, drop_curly_bracket
        self.drop_javascript_lines, self.drop_policy_lines = drop_javascript_lines, drop_policy_lines
        self.remove_citations, self.line_rules = remove_citations, line_rules

    def process(self, doc: dict) -> dict | Drop:
        if is_math(doc):
            return doc
        text = doc["text"]
        lowered = text.lower()
        if self.drop_lorem_ipsum and "lorem ipsum" in lowered:
            return Drop("lorem_ipsum")
        if self.drop_curly_bracket and "{" in text:
            return Drop("curly_bracket")
        if not self.line_rules:
            # Page rules only (the code-docs profile): every line stays as it is.
            if self.min_sentences and len(SENTENCE_END.findall(text)) < self.min_sentences:
                return Drop("too_few_sentences")
            return doc
        kept_lines = []
        for line in text.split("\n"):
            line = line.strip()
            if not line:
                # Keep paragraph breaks (one blank line), so later rules still see paragraphs.
                if kept_lines and kept_lines[-1] != "":
                    kept_lines.append("")
                continue
            if self.remove_citations:
                line = CITATION.sub("", line)
            words = line.split()
            if len(words) < self.min_words_per_line:
                continue
            if self.max_word_length and max(len(w) for w in words) > self.max_word_length:
                continue
            if self.terminal_punctuation and not line.endswith(TERMINAL_PUNCTUATION):
                continue
            low = line.lower()
            if self.drop_javascript_lines and "javascript" in low:
                continue
            if self.drop_policy_lines and any(phrase in low for phrase in POLICY_PHRASES):
                continue
            kept_lines.append(line)
        new_text = "\n".join(kept_lines).strip()
        if not new_text:
            return Drop("no_lines_left")
        if self.min_sentences and len(SENTENCE_END.findall(new_text)) < self.min_sentences:
            return Drop("too_few_sentences")
        if new_text == text:
            return doc
        return {**doc, "text": new_text}


# ---------------------------------------------------------------- FineWeb

class FineWebQuality(Filter):
    name = "fineweb"

    def __init__(self, min_line_punct_ratio=0.12, max_short_line_ratio=0.67, short_line_chars=30,
                 max_dup_line_char_ratio=0.01, max_newlines_per_word=0.3):
        self.min_line_punct_ratio, self.max_short_line_ratio = min_line_punct_ratio, max_short_line_ratio
        self.short_line_chars, self.max_dup_line_char_ratio = short_line_chars, max_dup_line_char_ratio
        self.max_newlines_per_word = max_newlines_per_word

    def check(self, doc: dict) -> Drop | None:
        if is_math(doc):
            return None
        text = doc["text"]
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        if not lines:
            return Drop("empty")
        if sum(line.endswith(TERMINAL_PUNCTUATION) for line in lines) / len(lines) < self.min_line_punct_ratio:
            return Drop("few_lines_end_in_punctuation")
        if sum(len(line) <= self.short_line_chars for line in lines) / len(lines) > self.max_short_line_ratio:
            return Drop("short_lines")
        _, dup_chars = _duplicates(lines)
        if dup_chars / max(1, sum(len(line) for line in lines)) > self.max_dup_line_char_ratio:
            return Drop("duplicate_line_chars")
        n_words = len(words_of(text))
        if text.count("\n") / max(1, n_words) > self.max_newlines_per_word:
            return Drop("list_like")
        return None


def main() -> None:
    text = unicodedata.normalize("NFC", sys.stdin.read())
    doc = {"id": "stdin", "text": text, "meta": {}}
    for step in (GopherQuality(), GopherRepetition(), C4Lines(), FineWebQuality()):
        out = step.process(doc)
        if isinstance(out, Drop):
            print(f"removed by {step.name}: {out.reason} {out.detail}".rstrip())
            return
        doc = out
    print("kept")


if __name__ == "__main__":
    main()
