"""Print the default world's stats (build time included) and three sample documents.

    python -m lmforge.world
"""
import json
import sys
import time

from ..config import WorldConfig
from .build import build_world, world_stats


def main() -> None:
    started = time.perf_counter()
    world = build_world(WorldConfig())
    built_seconds = time.perf_counter() - started
    stats = world_stats(world)
    stats["build_seconds"] = round(built_seconds, 3)
    stats["total_seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(stats, indent=2))
    docs = list(world.documents())
    picks = [next((d for d in docs if d["source"] == "article"), None),
             next((d for d in docs if d["source"] == "story"), None),
             next((d for d in docs if d["source"] == "dialogue" and d["meta"]["language"] == "nb"), None)]
    for doc in filter(None, picks):
        print(f"\n---- {doc['id']}  {doc['url']}  {doc['meta']['entities']}\n{doc['text']}")


if __name__ == "__main__":
    sys.stdout.reconfigure(encoding="utf-8")
    main()
