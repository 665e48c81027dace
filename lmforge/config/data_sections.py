"""Config sections for the data stages: run, world, collect, clean, tokenizer.

    from lmforge.config import CleanConfig
"""
from __future__ import annotations

from dataclasses import dataclass

from .fields import opt


@dataclass
class RunConfig:
    name: str = opt("tiny", help="run name; the default run dir is runs/<name>")
    seed: int = opt(1337, lo=0)
    device: str = opt("auto", choices=["auto", "cpu", "cuda", "mps"])
    threads: int = opt(0, lo=0, help="torch CPU threads, set once per process; 0 = every usable core (shared "
                       "between torchrun's processes); more than the cores is clamped with a warning")
    estimate: bool = opt(True, help="before `lmforge run` starts, time a few real steps of each stage to run and "
                         "print the estimated time per stage and for the whole run")
    corrupt_shards: str = opt("stop", choices=["stop", "skip"], help="a token shard that does not match "
                              "meta.json: stop with its path, or skip it (named in a warning and the manifest)")
    reference_minutes: float = opt(0.0, lo=0.0, help="the whole run's time on the machine the preset was tuned "
                                   "on; `lmforge run` warns when its estimate is more than twice that (0 = never)")


@dataclass
class WorldConfig:
    """The built-in world: a seeded generator of entities, facts and documents."""
    seed: int = opt(7, lo=0)
    n_entities: int = opt(360, lo=20, hi=100_000)
    held_out_fraction: float = opt(0.1, lo=0.0, hi=0.5, help="entities kept out of all training text")
    extra_held_out: int = opt(264, lo=0, hi=1_000_000,
                              help="more held-out (unseen) entities, made after the others from a random stream of "
                                   "their own: no trained entity and no document changes with their number")
    unseen_train_share: float = opt(0.4, lo=0.0, hi=1.0, help="unseen entities for preference labels and PPO prompts")
    unseen_dev_share: float = opt(0.2, lo=0.0, hi=1.0, help="unseen entities for choosing checkpoints and settings")
    unseen_test_share: float = opt(0.2, lo=0.0, hi=1.0, help="unseen entities for headline figures only; the rest "
                                   "are reserved: the lookup tool's training entities")
    languages: list = opt(["en", "nb"], help="subset of en, nb")
    article_variants: int = opt(6, lo=1, hi=200, help="reworded articles per entity and language")
    stories: int = opt(600, lo=0)
    dialogues: int = opt(600, lo=0)
    arithmetic: int = opt(3000, lo=0)


@dataclass
class CollectConfig:
    """Where raw documents come from (lmforge/data/collect.py; source specs in lmforge/data/sources.py)."""
    sources: list = opt(["site"], help="[name=]kind[:location][#text_column][@weight] or a mapping; kinds: site, "
                        "site_warc, world, folder, warc, jsonl, parquet, hub, crawl")
    shard_docs: int = opt(1000, lo=1, help="documents per raw Parquet shard (the unit of parallel cleaning)")
    max_doc_bytes: int = opt(5_000_000, lo=1, help="larger files, lines, records and pages are unreadable")
    text_column: str = opt("text", help="JSONL/Parquet/hub field with the text, unless a source names one (#col)")
    site_dirt_fraction: float = opt(0.03, lo=0.0, hi=1.0, help="built-in site: pages per kind of dirt / clean pages")
    site_warc: bool = opt(True, help="also write the built-in site as data/world/site.warc.gz")
    crawl_max_pages: int = opt(200_000, lo=1, help="pages fetched per crawl source")
    crawl_delay_s: float = opt(1.0, lo=0.0, hi=600.0, help="between requests to one host unless robots.txt says")
    crawl_timeout_s: float = opt(10.0, lo=0.05, hi=600.0, help="per page, redirects included")
    crawl_workers: int = opt(4, lo=1, hi=64, help="parallel requests to a host that asks for no delay")
    crawl_max_redirects: int = opt(5, lo=0, hi=50)
    crawl_user_agent: str = opt("lmforge-crawler/0.1")


@dataclass
class CleanConfig:
    """Cleaning steps and their thresholds (lmforge/data/clean.py). Defaults are the FineWeb paper's."""
    workers: int = opt(0, lo=0, hi=1024, help="shards cleaned in parallel; 0 = one worker per CPU core")
    executor: str = opt("local", choices=["local", "ray"], help="ray needs `pip install lmforge[ray]`")
    ray_address: str = opt("", help="Ray cluster address; empty = start a local Ray")
    # extraction
    extractor: str = opt("resiliparse", choices=["resiliparse", "trafilatura"],
                         help="HTML main-text extractor: resiliparse (faster, the same text on the built-in site; "
                              "docs/LOG.md) or trafilatura")
    extract_normalize: bool = opt(True, help="plain text and Markdown: unify line endings and blank lines (the "
                                  "curated profile keeps text exactly as it is)")
    extract_favor_precision: bool = opt(True, help="trafilatura: rather lose a line than keep boilerplate")
    extract_fast: bool = opt(True, help="trafilatura without its fallback extractors (faster)")
    max_html_depth: int = opt(200, lo=10, hi=100_000, help="deeper nested pages are unreadable")
    max_replacement_ratio: float = opt(0.001, lo=0.0, hi=1.0, help="share of U+FFFD above which text is broken")
    # language
    languages: list = opt(["en", "nb"], help="languages to keep (ISO 639-1)")
    language_threshold: float = opt(0.65, lo=0.0, hi=1.0)
    language_sample_chars: int = opt(10_000, lo=100, hi=100_000_000, help="longer documents are identified from "
                                     "this many characters, taken from their start, middle and end")
    # a math route past the prose rules (like Llama 3's domain pipelines)
    math_route: bool = opt(False, help="worksheets of 'a + b = c' lines skip the prose-quality rules")
    math_min_equation_lines: float = opt(0.3, lo=0.0, hi=1.0, help="share of equation lines that makes a worksheet")
    # Gopher quality
    gopher_min_words: int = opt(50, lo=0)
    gopher_max_words: int = opt(100_000, lo=1)
    gopher_min_mean_word_length: float = opt(3.0, lo=0.0)
    gopher_max_mean_word_length: float = opt(10.0, lo=0.0)
    gopher_max_symbol_ratio: float = opt(0.1, lo=0.0, help="'#' and '...' per word")
    gopher_max_bullet_lines: float = opt(0.9, lo=0.0, hi=1.0)
    gopher_max_ellipsis_lines: float = opt(0.3, lo=0.0, hi=1.0)
    gopher_min_alpha_words: float = opt(0.8, lo=0.0, hi=1.0, help="share of words with a letter")
    gopher_min_stop_words: int = opt(2, lo=0)
    # Gopher repetition
    gopher_max_dup_lines: float = opt(0.3, lo=0.0, hi=1.0)
    gopher_max_dup_paragraphs: float = opt(0.3, lo=0.0, hi=1.0)
    gopher_max_dup_line_chars: float = opt(0.2, lo=0.0, hi=1.0)
    gopher_max_dup_paragraph_chars: float = opt(0.2, lo=0.0, hi=1.0)
    gopher_top_ngram_chars: list = opt([0.20, 0.18, 0.16], help="most common 2-, 3-, 4-gram: share of characters")
    gopher_dup_ngram_chars: list = opt([0.15, 0.14, 0.13, 0.12, 0.11, 0.10], help="repeated 5..10-grams")
    # C4
    c4_min_words_per_line: int = opt(3, lo=0)
    c4_max_word_length: int = opt(1000, lo=1)
    c4_min_sentences: int = opt(5, lo=0)
    c4_terminal_punctuation: bool = opt(False, help="drop lines without end punctuation (FineWeb leaves it off)")
    c4_line_rules: bool = opt(True, help="C4's per-line rules: drop short, javascript and policy lines, strip "
                              "citation marks (the code-docs profile turns them off)")
    c4_lorem_ipsum: bool = opt(True)
    c4_curly_bracket: bool = opt(True)
    c4_javascript: bool = opt(True)
    c4_policy: bool = opt(True, help="drop cookie and policy notice lines")
    # FineWeb
    fineweb_min_line_punct: float = opt(0.12, lo=0.0, hi=1.0, help="share of lines ending in punctuation")
    fineweb_max_short_lines: float = opt(0.67, lo=0.0, hi=1.0)
    fineweb_short_line_chars: int = opt(30, lo=1)
    fineweb_max_dup_line_chars: float = opt(0.01, lo=0.0, hi=1.0)
    fineweb_max_newlines_per_word: float = opt(0.3, lo=0.0)
    # unwanted content
    url_blocklist: list = opt([], help="domains whose pages are removed (subdomains too)")
    url_blocklist_file: str = opt("", help="more domains, one per line")
    unwanted_url_words: list = opt(["<site>"], help="URL words that remove a page; <site> = the built-in lexicon")
    unwanted_words: list = opt(["<site>"], help="words counted in the text; <site> = the built-in stand-in lexicon")
    unwanted_words_file: str = opt("", help="more words, one per line")
    unwanted_min_hits: int = opt(2, lo=1, help="listed words a page needs to be removed")
    classifier: bool = opt(True, help="a learned unwanted-content classifier after the word lists "
                           "(lmforge/data/classifier.py); its score is kept in meta.unwanted_score")
    classifier_threshold: float = opt(0.5, lo=0.0, hi=1.0, help="a page goes when one of its passages scores this")
    classifier_train: str = opt("<site>", help="labelled slice to train on: <site> = the built-in stand-in "
                                "generators' slice, or a JSONL file of {text, label} rows (label 1 = unwanted)")
    classifier_window: int = opt(48, lo=4, hi=100_000, help="words per scored passage, one every eighth of a "
                                 "window; a page scores as its highest passage")
    classifier_hash_bits: int = opt(18, lo=10, hi=24, help="2^bits hashed features (character 4- and 5-grams)")
    # personal data
    pii_email: bool = opt(True)
    pii_phone: bool = opt(True)
    pii_ip: bool = opt(True)
    # deduplication
    exact_dedup: bool = opt(True)
    near_dedup: bool = opt(True)
    minhash_ngram: int = opt(5, lo=1, hi=64)
    minhash_bands: int = opt(14, lo=1, hi=1024)
    minhash_rows: int = opt(8, lo=1, hi=1024)
    minhash_seed: int = opt(1, lo=0)
    # mixture and report
    mixture_max_repeats: float = opt(4.0, lo=1.0, hi=1000.0, help="most epochs of a small source in the mixture")
    examples_per_reason: int = opt(3, lo=0, hi=100, help="removed documents shown per reason in the report")


@dataclass
class TokenizerConfig:
    vocab_size: int = opt(4096, lo=300, hi=262_144)
    val_fraction: float = opt(0.02, lo=0.001, hi=0.5, help="documents held out for validation")
    min_frequency: int = opt(2, lo=1)
    train_chars: int = opt(0, lo=0, help="characters of text the BPE trainer reads, spread over the document files "
                           "(its memory grows with the distinct words it sees); 0 = every document")
    workers: int = opt(0, lo=0, hi=1024, help="processes tokenizing document files into token shards in parallel; "
                       "0 = one per CPU core (clean.executor=ray runs them on Ray)")
