"""The grammar of source specs (`collect.sources`, `tools.lookup_sources`): parsing them into SourceSpecs.

    from lmforge.config.sources import parse_sources
    parse_sources(["site", "books=folder:/data/books~curated@0.16"])   # [SourceSpec(...), SourceSpec(...)]

A spec is `[name=]kind[:location][#text_column][~profile][@weight]` or a YAML mapping with the same
fields; lmforge/data/sources.py lists the kinds and reads them. A bad entry raises a one-line
ConfigError naming it, when the config loads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ConfigError

KINDS = ("site", "site_warc", "world", "folder", "warc", "jsonl", "parquet", "hub", "crawl")


@dataclass
class SourceSpec:
    name: str
    kind: str
    location: str = ""
    weight: float = 1.0
    text_column: str = "text"
    limit: int = 0                                  # at most this many documents; 0 = all
    profile: str = ""                               # cleaning profile; "" = the kind's default
    options: dict = field(default_factory=dict)     # hub: split, config, data_files; id_column, url_column


def parse_sources(entries: list, default_text_column: str = "text", field: str = "collect.sources") -> list[SourceSpec]:
    """Parse `collect.sources` (or another field of source specs); a bad entry raises ConfigError naming it."""
    specs = []
    for index, entry in enumerate(entries):
        where = f"{field}[{index}]"
        if isinstance(entry, dict):
            data = dict(entry)
            kind = str(data.pop("kind", ""))
            spec = SourceSpec(name=str(data.pop("name", "") or kind), kind=kind,
                              location=str(data.pop("path", data.pop("location", "")) or ""),
                              text_column=str(data.pop("text_column", "") or ""),
                              profile=str(data.pop("profile", "") or ""), options={})
            try:
                spec.weight = float(data.pop("weight", 1.0))
                spec.limit = int(data.pop("limit", 0))
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: weight must be a number and limit an integer") from None
            spec.options = data
        elif isinstance(entry, str):
            spec = _parse_source_string(entry.strip(), where)
        else:
            raise ConfigError(f"{where}: expected 'kind:location@weight' or a mapping, got {entry!r}")
        if spec.kind not in KINDS:
            raise ConfigError(f"{where}: unknown source kind {spec.kind!r}; kinds: {', '.join(KINDS)}")
        if spec.kind in ("folder", "warc", "jsonl", "parquet", "hub", "crawl") and not spec.location:
            raise ConfigError(f"{where}: a {spec.kind} source needs a location ({spec.kind}:...)")
        if not spec.weight > 0:
            raise ConfigError(f"{where}: weight must be > 0, got {spec.weight}")
        if spec.limit < 0:
            raise ConfigError(f"{where}: limit must be >= 0, got {spec.limit}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", spec.name):
            raise ConfigError(f"{where}: source name {spec.name!r} may only use letters, digits, '_', '.', '-'")
        spec.text_column = spec.text_column or default_text_column
        specs.append(spec)
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{field}: the name {name!r} is used twice; give each source a name (name=kind:...)")
    if not specs:
        raise ConfigError(f"{field}: name at least one source (e.g. site)")
    return specs


def _parse_source_string(text: str, where: str) -> SourceSpec:
    weight = 1.0
    head, at, tail = text.rpartition("@")
    if at:
        try:
            weight = float(tail)
            text = head
        except ValueError:
            pass        # an "@" that is part of the location
    profile = ""
    head, tilde, tail = text.rpartition("~")
    if tilde and re.fullmatch(r"[A-Za-z0-9_.-]+|\S+\.ya?ml", tail):
        text, profile = head, tail         # "~/books" is a path, not a profile: the tail has a "/"
    name = ""
    match = re.match(r"([A-Za-z0-9_.-]+)=(.*)$", text)
    if match:
        name, text = match.group(1), match.group(2)
    kind, _, location = text.partition(":")
    column = ""
    if kind in ("jsonl", "parquet", "hub") and "#" in location:
        location, _, column = location.rpartition("#")
    if not kind:
        raise ConfigError(f"{where}: empty source spec")
    return SourceSpec(name=name or kind, kind=kind, location=location, weight=weight, text_column=column,
                      profile=profile)
