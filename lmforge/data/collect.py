"""The collect stage: gather raw documents into data/raw/*.parquet.

    lmforge collect --run-dir runs/tiny

Today its one source is the built-in world (lmforge/data/world.py): it writes the
world's documents to data/raw/world-00000.parquet and its ground truth (entities and
the fact table, held-out entities included) to data/world/, outside the training data.
"""
from __future__ import annotations

import time
from collections import Counter

from ..files import write_documents
from ..run import StageContext
from .world import build_world, write_world


def run_stage(ctx: StageContext) -> dict:
    started = time.perf_counter()
    world = build_world(ctx.cfg.world)
    world_stats = write_world(world, ctx.run.world_dir)
    by_source: Counter = Counter()
    by_language: Counter = Counter()
    characters = 0

    def counted(docs):
        nonlocal characters
        for doc in docs:
            by_source[doc["source"]] += 1
            by_language[doc["meta"].get("language", "?")] += 1
            characters += len(doc["text"])
            yield doc

    out = ctx.run.raw_dir / "world-00000.parquet"
    documents = write_documents(out, counted(world.documents()))
    ctx.progress(f"{documents:,} documents, {characters:,} characters in {time.perf_counter() - started:.1f}s")
    return {
        "documents": documents,
        "characters": characters,
        "by_source": dict(sorted(by_source.items())),
        "by_language": dict(sorted(by_language.items())),
        "entities": world_stats.get("entities"),
        "held_out_entities": world_stats.get("held_out_entities"),
        "facts": world_stats.get("facts"),
    }
