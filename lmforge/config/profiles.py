"""Cleaning profiles: which rules a source's documents go through, and with which thresholds.

    from lmforge.config.profiles import resolve_profile
    profile = resolve_profile("curated", cfg.clean)          # or "web", "code-docs", "my-profile.yaml"
    profile.rules                                            # ("language", "pii")
    profile.clean                                            # CleanConfig with the profile's thresholds

Web rules are right for web pages and wrong for a book: C4's line filter drops every line of
fewer than three words (every speaker's name in a play), Gopher's duplicate-line rule removes
a poem with a refrain. GPT-3 filtered its web share and not its books. So each source in
`collect.sources` can name a profile (`books=folder:/data/books~curated`, or `profile:` in a
mapping), and every kind of source has a default:

  web         the heuristic rules (Gopher quality and repetition, C4, FineWeb), the unwanted-
              content word lists and classifier, personal data; thresholds are the `clean.*`
              fields, so a preset's relaxed ones apply. Default for site, site_warc, crawl,
              warc, and for jsonl, parquet and hub (usually web text; say `~curated` if not).
  curated     language identification and personal data only; text kept exactly as it is
              (no newline clean-up). Default for folder and world.
  code-docs   the web rules without C4's curly-bracket rule and its per-line rules.

Extraction (HTML to text) runs for every profile, and the math route too when
`clean.math_route` is set. Exact and near dedup are not rules of a profile: they run once over
all sources together, so a book and a web copy of it are still duplicates.

A user profile is a YAML file (any path ending in .yaml or .yml):

    base: web                       # optional: start from a built-in profile's rules and thresholds
    rules: [language, gopher_quality, pii]     # optional with a base: replaces its rules
    thresholds:                     # clean.* fields for this profile's documents only
      gopher_min_words: 10

A rule or a threshold that does not exist, or a threshold out of range, stops the run before
any work with one line that names it (`lmforge.config.validate` resolves every profile).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError
from .data_sections import CleanConfig
from .fields import set_field

# The per-document rules, in the order they run (extraction and the math route come first).
RULES = ("language", "gopher_quality", "gopher_repetition", "c4", "fineweb", "unwanted", "classifier", "pii")
WEB_RULES = RULES
BUILT_IN = {
    "web": {"rules": WEB_RULES, "thresholds": {}},
    "curated": {"rules": ("language", "pii"), "thresholds": {"extract_normalize": False}},
    "code-docs": {"rules": WEB_RULES, "thresholds": {"c4_curly_bracket": False, "c4_line_rules": False}},
}
DEFAULT_BY_KIND = {"site": "web", "site_warc": "web", "crawl": "web", "warc": "web", "jsonl": "web",
                   "parquet": "web", "hub": "web", "folder": "curated", "world": "curated"}
# clean.* fields that belong to the whole run (workers, dedup, mixture, the classifier's
# training), not to one source's documents.
RUN_FIELDS = frozenset({"workers", "executor", "ray_address", "exact_dedup", "near_dedup", "minhash_ngram",
                        "minhash_bands", "minhash_rows", "minhash_seed", "mixture_max_repeats",
                        "examples_per_reason", "classifier_train", "classifier_window", "classifier_hash_bits"})
PROFILE_KEYS = ("base", "rules", "thresholds")


@dataclass(frozen=True)
class Profile:
    name: str
    rules: tuple[str, ...]
    thresholds: dict
    clean: CleanConfig

    def to_dict(self) -> dict:
        return {"name": self.name, "rules": list(self.rules), "thresholds": dict(self.thresholds)}


def profile_names() -> str:
    return ", ".join(BUILT_IN) + " or a path to a .yaml file"


def _read_file(name: str) -> dict:
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"cleaning profile {name}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"cleaning profile {name}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"cleaning profile {name}: expected a mapping with {', '.join(PROFILE_KEYS)}")
    return data


def _definition(name: str) -> dict:
    if name in BUILT_IN:
        return BUILT_IN[name]
    if not name.endswith((".yaml", ".yml")):
        raise ConfigError(f"unknown cleaning profile {name!r}; profiles: {profile_names()}")
    data = _read_file(name)
    unknown = [key for key in data if key not in PROFILE_KEYS]
    if unknown:
        raise ConfigError(f"cleaning profile {name}: unknown key {unknown[0]!r}; keys: {', '.join(PROFILE_KEYS)}")
    base = data.get("base")
    if base is not None and base not in BUILT_IN:
        raise ConfigError(f"cleaning profile {name}: base {base!r} is not a built-in profile; "
                          f"built-in: {', '.join(BUILT_IN)}")
    start = BUILT_IN[base] if base else {"rules": None, "thresholds": {}}
    rules = data.get("rules", start["rules"])
    if rules is None:
        raise ConfigError(f"cleaning profile {name}: name its rules (rules: [...]) or a base profile")
    if isinstance(rules, str):
        rules = [r.strip() for r in rules.split(",") if r.strip()]
    if not isinstance(rules, (list, tuple)):
        raise ConfigError(f"cleaning profile {name}: rules must be a list, got {rules!r}")
    thresholds = data.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise ConfigError(f"cleaning profile {name}: thresholds must be a mapping of clean.* fields")
    return {"rules": tuple(str(r) for r in rules), "thresholds": {**start["thresholds"], **thresholds}}


def resolve_profile(name: str, clean: CleanConfig) -> Profile:
    """The profile's rules and its CleanConfig (the run's, with the profile's thresholds over it)."""
    definition = _definition(name)
    for rule in definition["rules"]:
        if rule not in RULES:
            raise ConfigError(f"cleaning profile {name}: unknown rule {rule!r}; rules: {', '.join(RULES)}")
    # Keep the pipeline's order whatever order the file lists them in.
    rules = tuple(r for r in RULES if r in definition["rules"])
    own = dataclasses.replace(clean)
    for key, value in definition["thresholds"].items():
        if key in RUN_FIELDS:
            raise ConfigError(f"cleaning profile {name}: clean.{key} is set for the whole run, not per profile")
        try:
            set_field(own, str(key), value, f"clean.{key}")
        except ConfigError as err:
            raise ConfigError(f"cleaning profile {name}: {err}") from None
    return Profile(name, rules, dict(definition["thresholds"]), own)


def source_profiles(specs, clean: CleanConfig) -> dict[str, Profile]:
    """Each source's profile by source name (its own, else its kind's default); errors name the source."""
    out = {}
    for index, spec in enumerate(specs):
        name = spec.profile or DEFAULT_BY_KIND.get(spec.kind, "web")
        try:
            out[spec.name] = resolve_profile(name, clean)
        except ConfigError as err:
            raise ConfigError(f"collect.sources[{index}] ({spec.name}): {err}") from None
    return out
