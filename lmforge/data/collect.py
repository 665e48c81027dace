"""The collect stage: gather raw documents from every configured source into data/raw/*.parquet.

    lmforge collect --run-dir runs/tiny
    lmforge collect "collect.sources=[site@0.6, books=folder:/data/books@0.4]"

Always, whatever the sources: the built-in world's ground truth (entities and the fact table,
held-out entities included) goes to data/world/, outside the training data, because later
stages measure against it. With the default source `site`, collect also builds the world's
dirty web site (lmforge/world/site.py), writes its truth to data/world/site_truth.jsonl and the
site as data/world/site.warc.gz, serves it on 127.0.0.1 with a small server it starts and stops
itself, and crawls it over real HTTP.

Each source's documents go to data/raw/<source>-00000.parquet, -00001, ... in shards of
`collect.shard_docs` (the unit of parallel cleaning). Anything that cannot become a document
(binary or empty files, bad bytes, malformed JSON lines, HTTP errors, timeouts, redirect
loops...) is written to data/unreadable/collect-00000.parquet with its reason, and counted
in the manifest: nothing is silently lost.
"""
from __future__ import annotations

import re
import time
from collections import Counter

from ..config.sources import SourceSpec, parse_sources
from ..errors import StageError
from ..rundir import StageContext
from ..world import build_world, write_world
from ..world.site import build_site
from ..world.site_server import serve_site
from .crawl import Crawler
from .shards import DocWriter, ShardedWriter
from .sources import (SourceError, UnreadableInput, read_folder, read_hub, read_jsonl, read_parquet, read_warc,
                      read_world_text)


def _records(spec: SourceSpec, ctx: StageContext, world, site, stats: dict):
    """The source's documents and unreadable inputs, in a fixed order."""
    c = ctx.cfg.collect
    if spec.kind == "world":
        yield from read_world_text(world, spec)
    elif spec.kind == "site":
        with serve_site(site) as base:
            crawler = Crawler([base + "/"], max_pages=c.crawl_max_pages, delay_s=c.crawl_delay_s,
                              timeout_s=c.crawl_timeout_s, workers=c.crawl_workers, user_agent=c.crawl_user_agent,
                              max_bytes=c.max_doc_bytes, max_redirects=c.crawl_max_redirects,
                              public_origin=(base, site.origin))
            ctx.progress(f"crawling the built-in site at {base}/ ({len(site.pages):,} pages)")
            yield from crawler.crawl(spec.name)
            stats["crawl"] = dict(crawler.stats)
    elif spec.kind == "site_warc":
        yield from read_warc(SourceSpec(spec.name, "warc", str(ctx.run.world_dir / "site.warc.gz")), c.max_doc_bytes)
    elif spec.kind == "crawl":
        seeds = [s for s in re.split(r"[|\s]+", spec.location) if s]
        try:
            crawler = Crawler(seeds, max_pages=c.crawl_max_pages, delay_s=c.crawl_delay_s, timeout_s=c.crawl_timeout_s,
                              workers=c.crawl_workers, user_agent=c.crawl_user_agent, max_bytes=c.max_doc_bytes,
                              max_redirects=c.crawl_max_redirects)
        except ValueError as err:
            raise SourceError(f"source {spec.name}: {err}") from None
        yield from crawler.crawl(spec.name)
        stats["crawl"] = dict(crawler.stats)
    else:
        reader = {"folder": read_folder, "warc": read_warc, "jsonl": read_jsonl, "parquet": read_parquet,
                  "hub": read_hub}[spec.kind]
        yield from reader(spec, c.max_doc_bytes)


def run_stage(ctx: StageContext) -> dict:
    run, cfg = ctx.run, ctx.cfg
    c = cfg.collect
    started = time.perf_counter()
    specs = parse_sources(c.sources, c.text_column)
    world = build_world(cfg.world)
    world_stats = write_world(world, run.world_dir)

    site = None
    site_metrics = {}
    if any(s.kind in ("site", "site_warc") for s in specs):
        t0 = time.perf_counter()
        site = build_site(world, c.site_dirt_fraction, seed=cfg.world.seed)
        site.write_truth(run.world_dir / "site_truth.jsonl")
        site_metrics = {"site_pages": len(site.pages), "site_dirt_fraction": c.site_dirt_fraction}
        if c.site_warc or any(s.kind == "site_warc" for s in specs):
            site_metrics["site_warc_records"] = site.write_warc(run.world_dir / "site.warc.gz")
        ctx.progress(f"built the site: {len(site.pages):,} pages in {time.perf_counter() - t0:.1f}s")

    for old in run.raw_dir.glob("*.parquet"):
        old.unlink()
    unreadable_dir = run.path("data", "unreadable")
    for old in unreadable_dir.glob("collect-*.parquet"):
        old.unlink()

    documents, characters = 0, 0
    by_source, unreadable, by_language = Counter(), Counter(), Counter()
    source_rows, crawl_stats = [], {}
    with DocWriter(unreadable_dir / "collect-00000.parquet") as unreadable_out:
        for spec in specs:
            t0 = time.perf_counter()
            stats: dict = {}
            n_docs = n_bad = 0
            try:
                with ShardedWriter(run.raw_dir, spec.name, c.shard_docs) as out:
                    for record in _records(spec, ctx, world, site, stats):
                        if isinstance(record, UnreadableInput):
                            unreadable[record.reason] += 1
                            unreadable_out.write(record.to_row("collect"))
                            n_bad += 1
                            continue
                        out.write(record)
                        n_docs += 1
                        characters += len(record["text"])
                        language = record["meta"].get("language")
                        if language:
                            by_language[language] += 1
                        if spec.limit and n_docs >= spec.limit:
                            break
            except SourceError as err:
                raise StageError(str(err)) from None
            by_source[spec.name] += n_docs
            documents += n_docs
            if stats.get("crawl"):
                crawl_stats[spec.name] = stats["crawl"]
            source_rows.append({"name": spec.name, "kind": spec.kind, "location": spec.location, "weight": spec.weight,
                                "documents": n_docs, "unreadable": n_bad,
                                "seconds": round(time.perf_counter() - t0, 2)})
            ctx.progress(f"{spec.name}: {n_docs:,} documents, {n_bad:,} unreadable "
                         f"in {time.perf_counter() - t0:.1f}s")
    if documents == 0:
        raise StageError("collect found no readable documents in any source "
                         f"({sum(unreadable.values())} unreadable inputs; see data/unreadable/)")
    ctx.progress(f"{documents:,} documents, {characters:,} characters, {sum(unreadable.values()):,} unreadable "
                 f"in {time.perf_counter() - started:.1f}s")
    return {
        "documents": documents,
        "characters": characters,
        "inputs": documents + sum(unreadable.values()),
        "unreadable": dict(sorted(unreadable.items())),
        "by_source": dict(sorted(by_source.items())),
        "by_language": dict(sorted(by_language.items())),
        "sources": source_rows,
        "crawl": crawl_stats,
        **site_metrics,
        "entities": world_stats.get("entities"),
        "held_out_entities": world_stats.get("held_out_entities"),
        "unseen_splits": world_stats.get("unseen_splits"),
        "facts": world_stats.get("facts"),
        "world_documents": world_stats.get("documents"),
    }
