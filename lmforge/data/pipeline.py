"""The per-document cleaning steps of one profile, built from `clean.*` (used by clean.py).

    from lmforge.data.pipeline import build_steps
    steps = build_steps(cfg.clean)                              # the web profile: every rule
    steps = build_steps(profile.clean, profile.rules)           # a profile's rules only

Extraction always comes first (and the math route when `clean.math_route` is set); then the
profile's rules in the pipeline's order (lmforge/config/profiles.py: RULES).
"""
from __future__ import annotations

from pathlib import Path

from ..config import CleanConfig, ConfigError
from ..config.profiles import RULES
from ..world.unwanted_text import UNWANTED_URL_WORDS, UNWANTED_WORDS
from .classifier import UnwantedClassifier, UnwantedModel, model_for
from .extract import ExtractText
from .language import LanguageFilter
from .pii import PiiReplacer
from .quality import C4Lines, FineWebQuality, GopherQuality, GopherRepetition, MathRoute
from .steps import Step
from .unwanted import UnwantedFilter, read_list_file

SITE_LEXICON = "<site>"


def _floats(values, count: int, field: str) -> list[float]:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"clean.{field}={values!r}: expected {count} numbers") from None
    if len(out) != count:
        raise ConfigError(f"clean.{field}={values!r}: expected {count} numbers, got {len(out)}")
    return out


def unwanted_lists(c: CleanConfig) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(domains, URL words, {category: words}) with `<site>` expanded and files read."""
    domains = list(c.url_blocklist) + (read_list_file(c.url_blocklist_file) if c.url_blocklist_file else [])
    url_words = []
    for word in c.unwanted_url_words:
        url_words += UNWANTED_URL_WORDS if word == SITE_LEXICON else [str(word)]
    words: dict[str, list[str]] = {}
    for word in c.unwanted_words:
        if word == SITE_LEXICON:
            for category, items in UNWANTED_WORDS.items():
                words.setdefault(category, []).extend(items)
        else:
            words.setdefault("listed", []).append(str(word))
    if c.unwanted_words_file:
        words.setdefault("listed", []).extend(read_list_file(c.unwanted_words_file))
    return domains, url_words, words


def build_steps(c: CleanConfig, rules=RULES, classifier_path: str = "") -> list[Step]:
    """The per-document steps, in order, configured from `clean.*`: extraction (and the math
    route), then the profile's `rules` (all of them by default: the web profile)."""
    top = _floats(c.gopher_top_ngram_chars, 3, "gopher_top_ngram_chars")
    dup = _floats(c.gopher_dup_ngram_chars, 6, "gopher_dup_ngram_chars")
    steps: list[Step] = [ExtractText(favor_precision=c.extract_favor_precision, fast=c.extract_fast,
                                     max_html_depth=c.max_html_depth, max_replacement_ratio=c.max_replacement_ratio,
                                     extractor=c.extractor, normalize=c.extract_normalize)]
    if c.math_route:     # before language identification, which then reads a worksheet's words only
        steps.append(MathRoute(c.math_min_equation_lines))
    for rule in RULES:
        if rule not in rules:
            continue
        if rule == "language":
            steps.append(LanguageFilter(c.languages, c.language_threshold, c.language_sample_chars))
        elif rule == "gopher_quality":
            steps.append(GopherQuality(
                min_doc_words=c.gopher_min_words, max_doc_words=c.gopher_max_words,
                min_avg_word_length=c.gopher_min_mean_word_length, max_avg_word_length=c.gopher_max_mean_word_length,
                max_symbol_word_ratio=c.gopher_max_symbol_ratio, max_bullet_lines_ratio=c.gopher_max_bullet_lines,
                max_ellipsis_lines_ratio=c.gopher_max_ellipsis_lines, min_alpha_words_ratio=c.gopher_min_alpha_words,
                min_stop_words=c.gopher_min_stop_words))
        elif rule == "gopher_repetition":
            steps.append(GopherRepetition(
                dup_line_frac=c.gopher_max_dup_lines, dup_para_frac=c.gopher_max_dup_paragraphs,
                dup_line_char_frac=c.gopher_max_dup_line_chars, dup_para_char_frac=c.gopher_max_dup_paragraph_chars,
                top_ngram_char_frac=top, dup_ngram_char_frac=dup))
        elif rule == "c4":
            steps.append(C4Lines(
                min_words_per_line=c.c4_min_words_per_line, max_word_length=c.c4_max_word_length,
                min_sentences=c.c4_min_sentences, terminal_punctuation=c.c4_terminal_punctuation,
                drop_lorem_ipsum=c.c4_lorem_ipsum, drop_curly_bracket=c.c4_curly_bracket,
                drop_javascript_lines=c.c4_javascript, drop_policy_lines=c.c4_policy, line_rules=c.c4_line_rules))
        elif rule == "fineweb":
            steps.append(FineWebQuality(
                min_line_punct_ratio=c.fineweb_min_line_punct, max_short_line_ratio=c.fineweb_max_short_lines,
                short_line_chars=c.fineweb_short_line_chars, max_dup_line_char_ratio=c.fineweb_max_dup_line_chars,
                max_newlines_per_word=c.fineweb_max_newlines_per_word))
        elif rule == "unwanted":
            domains, url_words, words = unwanted_lists(c)
            steps.append(UnwantedFilter(url_blocklist=domains, url_words=url_words, words=words,
                                        min_hits=c.unwanted_min_hits))
        elif rule == "classifier" and c.classifier:
            model = UnwantedModel.load(Path(classifier_path)) if classifier_path else \
                model_for(c.classifier_train, c.classifier_window, c.classifier_hash_bits)
            steps.append(UnwantedClassifier(model, c.classifier_threshold))
        elif rule == "pii":
            steps.append(PiiReplacer(email=c.pii_email, phone=c.pii_phone, ip=c.pii_ip))
    return steps
