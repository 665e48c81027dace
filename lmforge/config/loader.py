"""The config tree (`Config`), reading presets, saved configs and `section.key=value` overrides, and
the checks that span several fields.

    from lmforge.config import load_config
    cfg = load_config("tiny", ["model.n_layer=6", "pretrain.lr=3e-3"])
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError
from .data_sections import CleanConfig, CollectConfig, RunConfig, TokenizerConfig, WorldConfig
from .fields import set_field
from .train_sections import (DPOConfig, GRPOConfig, ModelConfig, PPOConfig, PreferencesConfig, ReasoningConfig,
                             RewardConfig, SFTConfig, SynthConfig, TRACK_LOGGERS, TrackConfig, TrainConfig)
from .use_sections import (BUILTIN_TOOLS, EvalConfig, GenerateConfig, ReportConfig, ServeConfig, ToolsConfig)

PRESET_DIR = Path(__file__).parent.parent / "presets"
# Old section name -> new. The old name is still read, with a one-line note on stderr.
RENAMED = {"label": "preferences"}
# Fingerprints hash a section under the name it had when the fingerprint was defined, so that a
# rename does not make every run's stages out of date.
HASHED_AS = {"preferences": "label"}
# Fields added after runs existed, with the value that means "as before": a field at that value
# is left out of the hash, so a new option does not make every existing run's stages out of date;
# set to anything else it counts like any other field. A run's saved config.yaml without the field
# loads with that value, also where the field's default for new runs is another one.
ADDED_LATER = {"tokenizer": {"train_chars": 0},
               "grpo": {"tasks": "reasoning", "lookup_values": "all", "seed": 0},
               "synth": {"lookup_entities": 0},
               "tools": {"lookup_practice_mix": "names"}}


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
    preferences: PreferencesConfig = dataclasses.field(default_factory=PreferencesConfig)
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
            if key and ADDED_LATER.get(head, {}).get(key, object()) == data[head][key]:
                continue          # a field added later, at the value that means "as before"
            value = data[head][key] if key else data[head]
            if not key and head in ADDED_LATER:
                value = {k: v for k, v in value.items()
                         if not (k in ADDED_LATER[head] and v == ADDED_LATER[head][k])}
            picked[HASHED_AS.get(name, name)] = value
        blob = json.dumps(picked, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def apply_dict(cfg: Config, data: dict, origin: str, saved: bool = False) -> None:
    """Set the sections of `data` (from YAML or an override) on cfg; `saved`: a run folder's own config.yaml."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(data).__name__}")
    sections = {f.name for f in dataclasses.fields(Config)}
    for section, values in data.items():
        if section in RENAMED:
            if not saved:   # a run folder's own config.yaml from before the rename loads quietly
                print(f"lmforge: {origin}: the {section!r} section is now called {RENAMED[section]!r}; "
                      f"{section!r} still works for now", file=sys.stderr)
            section = RENAMED[section]
        if section not in sections:
            raise ConfigError(f"{origin}: unknown section {section!r}; sections: {', '.join(sorted(sections))}")
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section {section!r} must be a mapping")
        for key, value in values.items():
            set_field(getattr(cfg, section), key, value, f"{section}.{key}")


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
        saved = _read_yaml(path)
        apply_dict(cfg, saved, str(path), saved=True)
        # a run saved before a field existed keeps the behaviour it was made with, even where
        # the field's default has changed since (tools.lookup_practice_mix)
        present = {RENAMED.get(name, name): set(values) for name, values in saved.items() if isinstance(values, dict)}
        for head, fields in ADDED_LATER.items():
            for key, value in fields.items():
                if key not in present.get(head, set()):
                    setattr(getattr(cfg, head), key, value)
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
    # Imported here, not at the top: a config is checked by every command but `lmforge --help`,
    # which then starts without them.
    from .profiles import source_profiles
    from .sources import parse_sources
    # a bad source entry, or a cleaning profile naming a rule or threshold that does not exist, stops here
    source_profiles(parse_sources(cfg.collect.sources, cfg.collect.text_column), cfg.clean)
    train = cfg.clean.classifier_train
    if cfg.clean.classifier and train != "<site>" and not Path(train).expanduser().is_file():
        raise ConfigError(f"clean.classifier_train={train!r}: no such file (a JSONL of {{text, label}} rows, or <site>)")
    if cfg.tools.lookup_sources:
        for spec in parse_sources(cfg.tools.lookup_sources, field="tools.lookup_sources"):
            if spec.kind not in ("folder", "jsonl", "parquet"):
                raise ConfigError(f"tools.lookup_sources: {spec.kind!r} sources are not read here; use folder:, "
                                  "jsonl: or parquet:")
    for name in cfg.track.loggers:    # whether each is installed is checked when a stage starts
        if name not in TRACK_LOGGERS:
            raise ConfigError(f"track.loggers: unknown logger {name!r}; choose from {list(TRACK_LOGGERS)}")
    for field_name, specs in (("grpo.tools", cfg.grpo.tools), ("serve.builtin_tools", cfg.serve.builtin_tools),
                              ("tools.extra", cfg.tools.extra)):
        for spec in specs:     # module:function is imported only when the tool is used
            if not isinstance(spec, str) or (spec not in BUILTIN_TOOLS and ":" not in spec):
                raise ConfigError(f"{field_name}: unknown tool {spec!r}; built in: {', '.join(BUILTIN_TOOLS)}, "
                                  "or give module:function")
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
