"""The one typed config tree of lmforge, its YAML presets and `section.key=value` overrides.

    from lmforge.config import load_config
    cfg = load_config("tiny", ["model.n_layer=6", "pretrain.lr=3e-3"])

Every field has a type and, where it matters, an allowed range or set of choices
(`field(..., lo=, hi=, choices=)`). A bad preset, section, field or value raises
ConfigError with one line that names it and says what is allowed; the CLI turns that
into exit code 2.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A config problem, phrased as one line for the user."""


def opt(default, lo=None, hi=None, choices=None, help=""):
    """A config field with its allowed range (inclusive) or allowed choices."""
    meta = {"lo": lo, "hi": hi, "choices": choices, "help": help}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


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
                         help="HTML main-text extractor: resiliparse (7x faster, the same text on the built-in site) "
                              "or trafilatura")
    extract_normalize: bool = opt(True, help="plain text and Markdown: unify line endings and blank lines (the "
                                  "curated profile keeps text exactly as it is)")
    extract_favor_precision: bool = opt(True, help="trafilatura: rather lose a line than keep boilerplate")
    extract_fast: bool = opt(True, help="trafilatura without its fallback extractors (4x faster)")
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
    workers: int = opt(0, lo=0, hi=1024, help="processes tokenizing document files into token shards in parallel; "
                       "0 = one per CPU core (clean.executor=ray runs them on Ray)")


@dataclass
class ModelConfig:
    vocab_size: int = opt(0, lo=0, help="0 = take it from the trained tokenizer")
    seq_len: int = opt(256, lo=8, hi=131_072, help="maximum context length")
    n_layer: int = opt(4, lo=1, hi=256)
    n_head: int = opt(4, lo=1, hi=256)
    n_kv_head: int = opt(0, lo=0, hi=256, help="grouped-query attention; 0 = n_head")
    d_model: int = opt(256, lo=8, hi=65_536)
    ffn_hidden: int = opt(0, lo=0, help="SwiGLU hidden size; 0 = about 8/3 d_model, rounded up to 64")
    rope_theta: float = opt(10_000.0, lo=1.0)
    qk_norm: bool = opt(False)
    tie_embeddings: bool = opt(True)
    norm_eps: float = opt(1e-5, lo=0.0, hi=0.1)
    init_std: float = opt(0.02, lo=0.0, hi=1.0)


@dataclass
class TrainConfig:
    """The shared training loop's settings; every gradient stage has its own copy."""
    batch_size: int = opt(16, lo=1, help="sequences per micro-batch per process")
    grad_accum: int = opt(1, lo=1)
    seq_len: int = opt(256, lo=8)
    optimizer: str = opt("muon", choices=["adamw", "muon"], help="muon = Muon for hidden matrices + AdamW for the rest")
    lr: float = opt(3e-3, lo=0.0, hi=10.0, help="AdamW learning rate")
    matrix_lr: float = opt(0.02, lo=0.0, hi=10.0, help="Muon learning rate for hidden matrices")
    weight_decay: float = opt(0.0, lo=0.0, hi=10.0)
    beta1: float = opt(0.9, lo=0.0, hi=0.99999)
    beta2: float = opt(0.95, lo=0.0, hi=0.99999)
    schedule: str = opt("wsd", choices=["cosine", "wsd", "constant"])
    warmup_steps: int = opt(20, lo=0)
    decay_fraction: float = opt(0.3, lo=0.0, hi=1.0, help="wsd: final fraction of steps spent decaying")
    min_lr_ratio: float = opt(0.0, lo=0.0, hi=1.0)
    max_steps: int = opt(1000, lo=1)
    tokens_per_param: float = opt(0.0, lo=0.0, hi=100_000.0, help="pretrain: plan ceil(ratio x parameters / tokens "
                                  "per step) steps instead of max_steps (Chinchilla's 20, nanochat's ratio); "
                                  "0 = max_steps")
    max_minutes: float = opt(0.0, lo=0.0, help="optional wall-time cap; the budget is max_steps, and a stage "
                             "the cap cuts short says so; 0 = no cap")
    clip_grad: float = opt(1.0, lo=0.0, help="0 = no clipping")
    dtype: str = opt("auto", choices=["auto", "fp32", "bf16"],
                     help="auto = bf16 on CUDA and on CPUs where bf16 is measured fast, else fp32 everywhere "
                          "(Muon's Newton-Schulz included); recorded in the manifest, not fingerprinted")
    compile: bool = opt(False)
    parallel: str = opt("ddp", choices=["ddp", "fsdp"],
                        help="under torchrun: ddp = a whole model per process; fsdp = FSDP2, parameters, gradients "
                             "and optimizer state sharded across processes, with sharded (DCP) checkpoints that "
                             "resume at any process count (pretrain only)")
    eval_every: int = opt(50, lo=1)
    eval_batches: int = opt(8, lo=1, help="validation size, in global batches")
    patience: int = opt(4, lo=0, help="evals without val improvement before stopping; 0 = never stop early")
    min_delta: float = opt(1e-3, lo=0.0, help="smallest val-loss drop that counts as improvement")
    checkpoint_every: int = opt(100, lo=1)
    log_every: int = opt(10, lo=1)


@dataclass
class SynthConfig:
    """Instruction data made locally from the fact table (lmforge/data/synth.py)."""
    seed: int = opt(11, lo=0)
    held_out_fact_fraction: float = opt(0.15, lo=0.0, hi=0.9, help="trained facts SFT never mentions")
    held_out_dev_share: float = opt(0.3, lo=0.0, hi=1.0, help="of those, the dev part (choosing SFT settings); "
                                    "the rest is the test part behind the headline figure")
    repeats: int = opt(1, lo=1, hi=100, help="single-question conversations per usable fact")
    multi_turn_fraction: float = opt(0.6, lo=0.0, hi=1.0, help="entities that also get a multi-turn chat")
    summary_fraction: float = opt(0.6, lo=0.0, hi=1.0, help="entities that also get a summary request")
    system_prompt_fraction: float = opt(0.3, lo=0.0, hi=1.0)
    style_noise: float = opt(0.4, lo=0.0, hi=1.0, help="single answers that ramble or are curt, as in real data")
    unknown_fraction: float = opt(0.02, lo=0.0, hi=0.5,
                                  help="extra conversations about invented names, answered \"I don't know\"")
    self_instruct: int = opt(0, lo=0, help="answers the base model writes itself (verified); 0 = off")
    reasoning_problems: int = opt(1500, lo=0, help="worked word problems from datasets/reasoning_sft.jsonl "
                                  "(the reasoning stage) added to the SFT data; 0 = none")
    tool_use: str = opt("calls", choices=["calls", "plain", "off"],
                        help="tool-use conversations: with tool calls and results (calls), the same conversations "
                             "with the calls written out as plain arithmetic or recalled text (plain: the no-tools "
                             "baseline), or none (off)")
    tool_problems: int = opt(1500, lo=0, help="worked word problems whose arithmetic goes through the calculator "
                             "(more problems of reasoning_sft.jsonl, after the plain ones)")
    lookup_questions: int = opt(600, lo=0, help="questions about unseen entities of the reserved partition, "
                                "answered from lookup results")
    lookup_unanswerable: int = opt(200, lo=0, help="questions about invented names: lookup finds nothing relevant "
                                   "and the answer is \"I don't know\"")
    no_tool_questions: int = opt(150, lo=0, help="conversations with tools offered that need none")


@dataclass
class ToolsConfig:
    """Tool use (lmforge/tools/): limits of the shared tool loop, the lookup index, tools of your own."""
    extra: list = opt([], help="your own tools as module:function: a callable that takes the call's JSON arguments "
                      "as keywords and returns text (optional attributes: parameters, description)")
    timeout_s: float = opt(5.0, lo=0.001, hi=600.0, help="a tool still running after this gives an error result")
    max_calls: int = opt(6, lo=1, hi=64, help="tool calls per answer; further calls get an error result")
    max_result_chars: int = opt(600, lo=16, hi=100_000, help="a longer tool result is cut")
    wait_ms: float = opt(20.0, lo=0.0, hi=10_000.0, help="how long a decoding step waits for a running tool before "
                         "that row steps out of the batch (the others decode on; it rejoins with its result)")
    workers: int = opt(4, lo=1, hi=256, help="threads that run tools")
    lookup_k: int = opt(2, lo=1, hi=20, help="passages a lookup returns")
    lookup_chars: int = opt(160, lo=16, hi=4000, help="each passage is cut to this many characters")
    lookup_corpus: bool = opt(True, help="index the run's cleaned corpus beside the reference shelf")
    lookup_sources: list = opt([], help="your own documents for the lookup index: folder:PATH, jsonl:PATH[#column] "
                               "or parquet:PATH[#column]")


@dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning: the shared loop's settings plus how conversations become batches."""
    data_path: str = opt("", help="your own JSONL/Parquet (messages or prompt/completion); empty = datasets/sft.jsonl")
    packing: bool = opt(True, help="pack conversations into full rows (attention kept inside each); false = pad")
    pretrain_mix: float = opt(0.0, lo=0.0, hi=0.9, help="fraction of rows that are pretraining text")
    val_fraction: float = opt(0.05, lo=0.0, hi=0.5, help="conversations held out for validation loss")
    eval_limit: int = opt(400, lo=1, help="questions asked per evaluation split")


@dataclass
class LabelConfig:
    """Preference labels (lmforge/data/preferences.py, `lmforge label`): prompts, candidates, annotator."""
    seed: int = opt(23, lo=0)
    annotator: str = opt("auto", choices=["auto", "human"],
                         help="auto = judge candidates by the world's ground truth; human = use only labels "
                              "people gave with `lmforge label`")
    prompts: int = opt(800, lo=1, help="training prompts sampled for labeling (reward/DPO train pairs, PPO prompts)")
    dev_prompts: int = opt(100, lo=1, help="dev prompts labeled too: reward and DPO checkpoint selection")
    test_prompts: int = opt(200, lo=1, help="test prompts labeled too: the reward model's headline accuracy")
    candidates: int = opt(6, lo=2, hi=16, help="answers sampled per prompt (N)")
    held_out_entity_share: float = opt(0.35, lo=0.0, hi=1.0,
                                       help="share of prompts asking about entities the model never saw")
    eval_entity_fraction: float = opt(0.5, lo=0.0, hi=0.9,
                                      help="unused since unseen entities are partitioned by world.unseen_*_share "
                                           "(kept so older run folders load)")
    dev_fact_share: float = opt(0.15, lo=0.0, hi=0.45, help="known-entity facts (with their reverses) asked only "
                                "by dev prompts")
    test_fact_share: float = opt(0.25, lo=0.0, hi=0.45, help="known-entity facts asked only by test prompts")
    eval_prompts: int = opt(200, lo=10, help="test prompts in datasets/preferences_eval.jsonl: PPO/DPO headline")
    eval_dev_prompts: int = opt(100, lo=1, help="dev prompts there: for tuning PPO/DPO settings")
    noise: float = opt(0.1, lo=0.0, hi=0.5, help="automatic annotator: share of pairs it gets wrong")
    noise_model: str = opt("flip", choices=["flip", "gap"],
                           help="flip = every pair equally likely wrong; gap = Bradley-Terry, close calls "
                                "wrong more often (mean rate still `noise`)")
    temperature: float = opt(1.0, lo=0.0, hi=10.0, help="sampling temperature of the candidates")
    max_new_tokens: int = opt(48, lo=4, hi=4096)
    host: str = opt("127.0.0.1", help="`lmforge label` web page address")
    port: int = opt(8100, lo=0, hi=65535)


@dataclass
class RewardConfig(TrainConfig):
    """Reward model (lmforge/train/reward.py): the shared loop's settings plus the Bradley-Terry loss's."""
    data_path: str = opt("", help="preference JSONL (prompt/chosen/rejected); empty = datasets/preferences.jsonl")
    val_fraction: float = opt(0.1, lo=0.01, hi=0.5, help="your own pairs (no split given): the dev share, by prompt; "
                              "the world's pairs carry their split (by fact) from the preferences stage")
    test_fraction: float = opt(0.1, lo=0.01, hi=0.5, help="your own pairs (no split given): the test share, by prompt")
    margin: float = opt(0.0, lo=0.0, hi=100.0, help="required reward gap: -log sigmoid(r_c - r_r - margin)")
    center_coef: float = opt(0.01, lo=0.0, hi=10.0, help="reward centering: coef * (r_c + r_r)^2 keeps rewards near 0")
    likelihood: bool = opt(True, help="add the answer's mean and min log-probability under the backbone's own LM "
                                      "(learned weights) to the head's score")


@dataclass
class PPOConfig(TrainConfig):
    """RLHF with PPO (lmforge/train/ppo.py). batch_size = rollouts per loss micro-batch;
    max_steps counts rollout batches."""
    data_path: str = opt("", help="prompt JSONL ({\"prompt\": messages or text}); empty = datasets/label_items.jsonl")
    prompts_per_step: int = opt(32, lo=1, help="prompts (one rollout each) per PPO step")
    max_completion_tokens: int = opt(48, lo=1)
    temperature: float = opt(1.0, lo=0.01, hi=10.0)
    top_p: float = opt(1.0, lo=0.01, hi=1.0)
    kl_coef: float = opt(0.05, lo=0.0, hi=100.0, help="per-token KL penalty to the reference (SFT) model")
    kl_estimator: str = opt("k1", choices=["k1", "k3"])
    gamma: float = opt(1.0, lo=0.0, hi=1.0)
    lam: float = opt(0.95, lo=0.0, hi=1.0, help="GAE lambda")
    cliprange: float = opt(0.2, lo=0.0, hi=10.0, help="policy ratio clip")
    cliprange_value: float = opt(0.2, lo=0.0, hi=100.0, help="value prediction clip")
    vf_coef: float = opt(0.5, lo=0.0, hi=100.0)
    value_lr: float = opt(1e-4, lo=0.0, hi=10.0, help="AdamW learning rate of the value model")
    iterations: int = opt(2, lo=1, hi=64, help="PPO epochs over each rollout batch")
    whiten_advantages: bool = opt(True)
    missing_end_penalty: float = opt(1.0, lo=0.0, hi=100.0, help="subtracted from the reward of answers that never end")
    freeze_embeddings: bool = opt(False, help="keep the policy's token embeddings (and a tied LM head) fixed")
    reward_norm_samples: int = opt(256, lo=0, help="SFT answers scored once to shift and scale the reward model "
                                   "to mean 0, std 1 on them; 0 = raw scores")
    eval_prompts: int = opt(200, lo=1, help="held-out prompts in the before/after evaluation")


@dataclass
class DPOConfig(TrainConfig):
    """Direct preference optimization (lmforge/train/dpo.py)."""
    data_path: str = opt("", help="preference JSONL; empty = datasets/preferences.jsonl")
    loss_type: str = opt("sigmoid", choices=["sigmoid", "ipo"])
    beta: float = opt(0.1, lo=0.0, hi=100.0)
    label_smoothing: float = opt(0.0, lo=0.0, hi=0.5, help="conservative DPO: assumed label-flip rate")
    rpo_alpha: float = opt(0.0, lo=0.0, hi=100.0,
                           help="add alpha x the chosen answer's per-token NLL (RPO), so chosen answers gain "
                                "likelihood instead of only losing less than rejected ones")
    val_fraction: float = opt(0.1, lo=0.01, hi=0.5, help="your own pairs (no split given): the dev share, by prompt")
    test_fraction: float = opt(0.1, lo=0.01, hi=0.5, help="your own pairs (no split given): the test share, by prompt")
    eval_prompts: int = opt(200, lo=1, help="test prompts in the before/after evaluation")


@dataclass
class ReasoningConfig:
    """Built-in verifiable word problems (lmforge/data/reasoning.py): how many, how hard, how split."""
    seed: int = opt(17, lo=0)
    problems_per_level: int = opt(2000, lo=1, hi=1_000_000, help="distinct problems per language and difficulty")
    max_difficulty: int = opt(3, lo=1, hi=8, help="difficulty = arithmetic steps; levels 1..max_difficulty")
    test_fraction: float = opt(0.05, lo=0.0, hi=0.5, help="solution chains held out for the headline evaluation only")
    dev_fraction: float = opt(0.05, lo=0.0, hi=0.5, help="solution chains held out for choosing settings (dev)")
    sft_fraction: float = opt(0.25, lo=0.0, hi=0.9, help="problems whose worked solutions synth may use")


@dataclass
class GRPOConfig(TrainConfig):
    """Reasoning RL with verifiable rewards (lmforge/train/grpo.py): the shared loop's settings plus GRPO's.
    batch_size is the number of completions per loss micro-batch; max_steps counts rollout batches."""
    data_path: str = opt("", help="GSM8K-style or prompt-only JSONL; empty = datasets/reasoning.jsonl")
    eval_path: str = opt("", help="test problems (the headline), same formats; empty = datasets/reasoning_eval.jsonl, "
                         "or with your own data_path a held-out slice of it")
    dev_path: str = opt("", help="dev problems (for tuning); empty = datasets/reasoning_dev.jsonl, or with your own "
                        "data_path a held-out slice of it")
    holdout_fraction: float = opt(0.1, lo=0.01, hi=0.4, help="your own data_path without eval_path / dev_path: the "
                                  "share of its problems held out as each missing split (by a hash of the prompt)")
    skip_flat_groups: bool = opt(True, help="leave groups whose rewards are all equal out of the update (no forward "
                                 "or backward); false computes them (they carry zero advantage)")
    answer_column: str = opt("answer")
    rewards: list = opt(["correctness"], help="built-in names (correctness, format, steps, tool_format) or "
                        "module:function")
    tools: list = opt([], help="tools offered in rollouts and the tool evaluation: calculator, lookup, or "
                      "module:function; empty = none")
    reward_weights: list = opt([], help="one weight per reward; empty = all 1.0")
    prompts_per_step: int = opt(16, lo=1, help="prompts sampled per GRPO step")
    group_size: int = opt(8, lo=2, hi=1024, help="G: completions per prompt")
    max_completion_tokens: int = opt(64, lo=1)
    temperature: float = opt(1.0, lo=0.01, hi=10.0, help="rollout sampling temperature")
    top_p: float = opt(1.0, lo=0.01, hi=1.0)
    top_k: int = opt(0, lo=0)
    epsilon: float = opt(0.2, lo=0.0, hi=10.0, help="lower clip of the importance ratio: 1 - epsilon")
    epsilon_high: float = opt(0.28, lo=0.0, hi=10.0, help="upper clip: 1 + epsilon_high (DAPO clip-higher)")
    beta: float = opt(0.0, lo=0.0, hi=100.0, help="KL penalty to the reference (SFT) model, k3 estimator; 0 = off")
    scale_rewards: str = opt("group", choices=["group", "batch", "none"], help="divide advantages by this std")
    loss_type: str = opt("token_mean", choices=["grpo", "dr_grpo", "token_mean"])
    iterations: int = opt(1, lo=1, hi=64, help="mu: optimizer steps on each rollout batch")
    freeze_embeddings: bool = opt(False, help="keep the token embeddings (and a tied LM head) fixed")
    eval_per_difficulty: int = opt(60, lo=1, help="test problems evaluated (greedy pass@1) per difficulty level")
    dev_per_difficulty: int = opt(60, lo=0, help="dev problems evaluated (greedy pass@1 only) per difficulty level; "
                                  "0 = no dev evaluation")
    eval_k: int = opt(8, lo=1, hi=256, help="pass@k: samples per held-out problem")
    eval_k_per_difficulty: int = opt(0, lo=0, help="pass@k on only the first this many of each level; 0 = all")
    eval_temperature: float = opt(1.0, lo=0.01, hi=10.0)
    eval_examples: int = opt(4, lo=0, hi=50, help="worked examples shown in the report")


@dataclass
class GenerateConfig:
    temperature: float = opt(0.8, lo=0.0, hi=100.0)
    top_k: int = opt(0, lo=0, help="0 = off")
    top_p: float = opt(1.0, lo=0.0, hi=1.0)
    max_new_tokens: int = opt(64, lo=1)


@dataclass
class ReportConfig:
    fact_eval_limit: int = opt(600, lo=1, help="facts checked per evaluation")
    samples: int = opt(6, lo=0, help="sample completions shown")


@dataclass
class EvalConfig:
    """`lmforge eval`: standard benchmarks (lmforge/evals/standard.py)."""
    tasks: list = opt(["bpb", "hellaswag", "arc_easy", "arc_challenge", "mmlu", "gsm8k"],
                      help="bpb (validation bits per byte), hellaswag, arc_easy, arc_challenge, mmlu, gsm8k; "
                           "name=PATH reads that file or folder instead of looking in data_dir")
    data_dir: str = opt("", help="folder with the official files (hellaswag_val.jsonl, ARC-Easy-Test.jsonl, "
                        "ARC-Challenge-Test.jsonl, mmlu/*_test.csv, gsm8k test.jsonl); empty = <run>/eval_data")
    hub: bool = opt(False, help="a task with no local file is read from the Hugging Face hub (needs `datasets` "
                    "and a network)")
    limit: int = opt(0, lo=0, help="items per task (evenly spread); 0 = all")
    batch_size: int = opt(32, lo=1, help="continuations scored per forward")
    bpb_windows: int = opt(64, lo=1, help="validation windows of seq_len tokens for bits per byte")
    gsm8k_max_new_tokens: int = opt(192, lo=1, help="answer budget per GSM8K problem (greedy)")
    gsm8k_shots: int = opt(0, lo=0, hi=16, help="worked examples from the file's first rows put before each "
                           "question (those rows are then not scored)")


@dataclass
class ServeConfig:
    """`lmforge serve`: where it listens and the limits that keep one request from hurting others."""
    host: str = opt("127.0.0.1", help="bind address; 127.0.0.1 = this machine only")
    port: int = opt(8000, lo=0, hi=65_535)
    api_key: str = opt("", help="bearer key clients must send; empty = api_key_file, else $LMFORGE_API_KEY, "
                                "else none (a key on the command line shows in `ps`: prefer the file or variable)")
    api_key_file: str = opt("", help="file whose first line is the API key")
    max_batch: int = opt(32, lo=1, hi=1024, help="sequences decoded together")
    max_waiting: int = opt(512, lo=1, help="queued sequences before new requests get 503")
    max_messages: int = opt(64, lo=1, hi=1024, help="messages per chat request")
    max_prompt_tokens: int = opt(0, lo=0, help="0 = the model's seq_len - 1")
    max_tokens: int = opt(512, lo=1, help="largest max_tokens a request may ask for")
    default_max_tokens: int = opt(128, lo=1)
    max_n: int = opt(8, lo=1, help="largest n (choices per request)")
    max_stop: int = opt(4, lo=0, help="stop strings per request")
    max_request_bytes: int = opt(1 << 20, lo=1024, help="largest request body; larger is 413, checked while reading")
    max_prompt_chars: int = opt(100_000, lo=1, help="characters of message content (or prompt text) per request, "
                                                    "checked before tokenizing")
    max_concurrent_per_key: int = opt(256, lo=1, help="requests in flight per API key (one bucket without a key); "
                                                      "more get 429 with Retry-After")
    read_timeout_s: float = opt(30.0, lo=0.1, hi=3600.0, help="a client must send its request headers, and then "
                                                              "its body, within this many seconds each (slowloris)")
    builtin_tools: list = opt([], help="tools the server runs itself (calculator, lookup, module:function), offered "
                              "in every chat request beside the client's own")


@dataclass
class TrackConfig:
    """Experiment trackers beside the JSONL logs (lmforge/train/trackers.py). In no stage's fingerprint:
    they record a run, they do not change it."""
    loggers: list = opt([], help="tensorboard and/or wandb (`pip install 'lmforge[track]'`); [] = the JSONL logs only")
    tensorboard_dir: str = opt("", help="event files, one folder per stage: <run>/tensorboard/<stage>, or with a "
                               "folder of your own <folder>/<run name>/<stage>")
    wandb_project: str = opt("lmforge")
    wandb_entity: str = opt("", help="W&B team or user; empty = your default")
    wandb_mode: str = opt("", choices=["", "online", "offline", "disabled"],
                          help="empty = W&B's own ($WANDB_MODE, else online); offline writes <run>/wandb for "
                               "`wandb sync`")


@dataclass
class Config:
    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    world: WorldConfig = dataclasses.field(default_factory=WorldConfig)
    collect: CollectConfig = dataclasses.field(default_factory=CollectConfig)
    clean: CleanConfig = dataclasses.field(default_factory=CleanConfig)
    tokenizer: TokenizerConfig = dataclasses.field(default_factory=TokenizerConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    pretrain: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    synth: SynthConfig = dataclasses.field(default_factory=SynthConfig)
    sft: SFTConfig = dataclasses.field(default_factory=lambda: SFTConfig(
        lr=1e-3, matrix_lr=0.01, schedule="cosine", warmup_steps=10, max_steps=400, eval_every=50, patience=3,
        batch_size=16))
    reasoning: ReasoningConfig = dataclasses.field(default_factory=ReasoningConfig)
    label: LabelConfig = dataclasses.field(default_factory=LabelConfig)
    reward: RewardConfig = dataclasses.field(default_factory=lambda: RewardConfig(
        optimizer="adamw", lr=1e-4, schedule="cosine", warmup_steps=10, max_steps=400, batch_size=16,
        eval_every=50, patience=3, log_every=10))
    ppo: PPOConfig = dataclasses.field(default_factory=lambda: PPOConfig(
        optimizer="adamw", lr=1e-5, schedule="constant", warmup_steps=0, max_steps=100, batch_size=32,
        clip_grad=1.0, checkpoint_every=20, log_every=1, patience=0))
    dpo: DPOConfig = dataclasses.field(default_factory=lambda: DPOConfig(
        optimizer="adamw", lr=5e-6, schedule="cosine", warmup_steps=10, max_steps=300, batch_size=16,
        eval_every=50, patience=3, log_every=10))
    grpo: GRPOConfig = dataclasses.field(default_factory=lambda: GRPOConfig(
        optimizer="adamw", lr=5e-5, schedule="constant", warmup_steps=0, max_steps=150, batch_size=32,
        clip_grad=1.0, checkpoint_every=20, log_every=1, patience=0))
    tools: ToolsConfig = dataclasses.field(default_factory=ToolsConfig)
    generate: GenerateConfig = dataclasses.field(default_factory=GenerateConfig)
    report: ReportConfig = dataclasses.field(default_factory=ReportConfig)
    serve: ServeConfig = dataclasses.field(default_factory=ServeConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    track: TrackConfig = dataclasses.field(default_factory=TrackConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def section_hash(self, *sections: str) -> str:
        """A short stable hash of the named sections (or `section.key` fields)."""
        data = self.to_dict()
        picked = {}
        for name in sections:
            head, _, key = name.partition(".")
            picked[name] = data[head][key] if key else data[head]
        blob = json.dumps(picked, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------- parsing and checks

def _coerce(value, typ, where: str):
    """Turn a YAML/CLI value into the field's type, or raise a one-line ConfigError."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            try:
                as_float = float(str(value))
            except ValueError:
                as_float = None
            if as_float is not None and as_float.is_integer():
                return int(as_float)
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if typ is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list (a,b,c), got {value!r}")
        return value
    return value


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: (hints[f.name], f) for f in dataclasses.fields(cls)}


def _set_field(section_obj, key: str, value, where: str):
    types_ = _field_types(type(section_obj))
    if key not in types_:
        allowed = ", ".join(sorted(types_))
        raise ConfigError(f"unknown field {where!r}; fields of this section: {allowed}")
    typ, fld = types_[key]
    value = _coerce(value, typ, where)
    meta = fld.metadata
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{where}={value!r} is not allowed; choose one of {meta['choices']}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and value < lo or hi is not None and value > hi:
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"{where}={value!r} is out of range; allowed {rng}")
    setattr(section_obj, key, value)


def apply_dict(cfg: Config, data: dict, origin: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(data).__name__}")
    sections = {f.name for f in dataclasses.fields(Config)}
    for section, values in data.items():
        if section not in sections:
            raise ConfigError(f"{origin}: unknown section {section!r}; sections: {', '.join(sorted(sections))}")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section {section!r} must be a mapping")
        for key, value in values.items():
            _set_field(getattr(cfg, section), key, value, f"{section}.{key}")


def parse_override(text: str) -> tuple[str, str, object]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    path, raw = text.split("=", 1)
    section, dot, key = path.strip().partition(".")
    if not dot or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    value = yaml.safe_load(raw) if raw.strip() else ""
    return section, key, value


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(preset: str | None = "tiny", overrides: list[str] | None = None,
                base: str | os.PathLike | None = None) -> Config:
    """Defaults, then a saved config (`base`, e.g. a run's config.yaml) or the preset's YAML
    (a name or a path), then key=value overrides."""
    cfg = Config()
    if base is not None:
        path = Path(base)
        apply_dict(cfg, _read_yaml(path), str(path))
    elif preset:
        path = Path(preset)
        if not path.suffix:
            path = PRESET_DIR / f"{preset}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(list_presets())}")
        data = _read_yaml(path)
        apply_dict(cfg, data, f"preset {path.name}")
        if not (data.get("run") or {}).get("name"):
            cfg.run.name = path.stem
    for text in overrides or []:
        section, key, value = parse_override(text)
        apply_dict(cfg, {section: {key: value}}, "override")
    validate(cfg)
    return cfg


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None


def validate(cfg: Config) -> None:
    """Checks that span several fields."""
    from .data.profiles import source_profiles
    from .data.sources import parse_sources   # a bad source entry stops here, named, before any stage runs
    # ... and so does a cleaning profile that names a rule or threshold that does not exist
    source_profiles(parse_sources(cfg.collect.sources, cfg.collect.text_column), cfg.clean)
    train = cfg.clean.classifier_train
    if cfg.clean.classifier and train != "<site>" and not Path(train).expanduser().is_file():
        raise ConfigError(f"clean.classifier_train={train!r}: no such file (a JSONL of {{text, label}} rows, or <site>)")
    if cfg.tools.lookup_sources:
        for spec in parse_sources(cfg.tools.lookup_sources, field="tools.lookup_sources"):
            if spec.kind not in ("folder", "jsonl", "parquet"):
                raise ConfigError(f"tools.lookup_sources: {spec.kind!r} sources are not read here; use folder:, "
                                  "jsonl: or parquet:")
    from .train.trackers import check as check_trackers   # unknown logger names stop here
    check_trackers(cfg.track.loggers, installed=False)
    from .tools.registry import check_specs   # unknown tool names stop here, with the names allowed
    for field_name, specs in (("grpo.tools", cfg.grpo.tools), ("serve.builtin_tools", cfg.serve.builtin_tools),
                              ("tools.extra", cfg.tools.extra)):
        check_specs(specs, field_name)
    m = cfg.model
    kv = m.n_kv_head or m.n_head
    if m.d_model % m.n_head:
        raise ConfigError(f"model.d_model={m.d_model} must be divisible by model.n_head={m.n_head}")
    if (m.d_model // m.n_head) % 2:
        raise ConfigError("model.d_model / model.n_head must be even (RoPE rotates pairs)")
    if m.n_head % kv:
        raise ConfigError(f"model.n_head={m.n_head} must be divisible by model.n_kv_head={kv}")
    w = cfg.world
    if w.unseen_train_share + w.unseen_dev_share + w.unseen_test_share > 1.0 + 1e-9:
        raise ConfigError(f"world.unseen_train_share + unseen_dev_share + unseen_test_share = "
                          f"{w.unseen_train_share + w.unseen_dev_share + w.unseen_test_share:g} exceeds 1")
    bad = [lang for lang in cfg.world.languages if lang not in ("en", "nb")]
    if bad or not cfg.world.languages:
        raise ConfigError(f"world.languages={cfg.world.languages!r}: allowed a non-empty subset of ['en', 'nb']")
    for name in ("pretrain", "sft"):
        t = getattr(cfg, name)
        if t.seq_len > m.seq_len:
            raise ConfigError(f"{name}.seq_len={t.seq_len} exceeds model.seq_len={m.seq_len}")
    for name in ("sft", "reward", "ppo", "dpo", "grpo"):
        if getattr(cfg, name).parallel != "ddp":
            raise ConfigError(f"{name}.parallel={getattr(cfg, name).parallel!r}: only pretrain can run sharded "
                              f"(fsdp); the later stages fit one process's memory and use ddp")
    g = cfg.grpo
    if g.reward_weights and len(g.reward_weights) != len(g.rewards):
        raise ConfigError(f"grpo.reward_weights has {len(g.reward_weights)} entries for {len(g.rewards)} "
                          f"grpo.rewards; give one weight per reward or none")
    for weight in g.reward_weights:
        try:
            float(weight)
        except (TypeError, ValueError):
            raise ConfigError(f"grpo.reward_weights: {weight!r} is not a number") from None
    if g.max_completion_tokens >= m.seq_len:
        raise ConfigError(f"grpo.max_completion_tokens={g.max_completion_tokens} must be below "
                          f"model.seq_len={m.seq_len} (the prompt needs room too)")


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)

