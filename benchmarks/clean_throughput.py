"""Cleaning throughput: documents per CPU-second (= per core) for each step and overall, and peak
memory, on the built-in site at `tiny` size and on a 10x larger generated one.

    OMP_NUM_THREADS=1 python benchmarks/clean_throughput.py                 # scales 1 and 10, 2 workers
    OMP_NUM_THREADS=1 python benchmarks/clean_throughput.py --scales 1 --workers 1

For each scale it builds the world and its site, writes the site's pages as raw shards (as the
crawl would, without the HTTP round trips), then runs the real clean stage in a child process
(`lmforge clean`) and reads its manifest: each step's CPU seconds are summed over workers, so
documents / CPU-second is the per-core rate, whatever else the machine is doing. Peak memory
is the largest resident set of the stage's processes (the parent and each worker), which is
what "memory stays bounded" is about: it should grow with the shard size, not with the corpus.
Never run as a test.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmforge.config import WorldConfig, load_config  # noqa: E402
from lmforge.data.shards import ShardedWriter  # noqa: E402
from lmforge.data.site import build_site  # noqa: E402
from lmforge.data.sources import charset_of, decode_bytes  # noqa: E402
from lmforge.data.world import build_world  # noqa: E402
from lmforge.files import atomic_write_json  # noqa: E402
from lmforge.run import RunDir  # noqa: E402


def world_config(scale: int) -> WorldConfig:
    base = load_config("tiny").world
    return WorldConfig(seed=base.seed, n_entities=base.n_entities * scale, article_variants=base.article_variants,
                       stories=base.stories * scale, dialogues=base.dialogues * scale,
                       arithmetic=base.arithmetic * scale)


def prepare(run: RunDir, scale: int, shard_docs: int) -> dict:
    """World, site, raw shards and a collect manifest, as `lmforge collect` would leave them."""
    started = time.perf_counter()
    cfg = load_config("tiny", [f"world.n_entities={world_config(scale).n_entities}"])
    cfg.world = world_config(scale)
    world = build_world(cfg.world)
    site = build_site(world, cfg.collect.site_dirt_fraction, seed=cfg.world.seed)
    build_seconds = time.perf_counter() - started
    docs = unreadable = 0
    with ShardedWriter(run.raw_dir, "site", shard_docs) as out:
        for path, page in site.pages.items():
            if site.truth[path]["expect"] == "skip" or page.status != 200:
                unreadable += 1 if site.truth[path]["expect"] != "skip" else 0
                continue
            text, reason, _ = decode_bytes(page.body, charset_of(page.content_type, page.body))
            if text is None or not page.content_type.startswith("text/html"):
                unreadable += 1
                continue
            url = site.origin + path
            out.write({"id": f"site/{hashlib.sha1(url.encode()).hexdigest()[:16]}", "text": text, "source": "site",
                       "url": url, "meta": {"format": "html"}})
            docs += 1
    run.save_config(cfg)
    atomic_write_json(run.manifest_path("collect"), {
        "stage": "collect", "status": "done", "output_id": f"bench-{scale}", "fingerprint": "bench",
        "metrics": {"sources": [{"name": "site", "kind": "site", "weight": 1.0}], "unreadable": {}}})
    return {"pages": len(site.pages), "raw_documents": docs, "not_html_or_undecodable": unreadable,
            "site_seconds": round(build_seconds, 1)}


def run_clean(run: RunDir, workers: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    # /usr/bin/time-like numbers without it: the child's own peak RSS covers the parent process of
    # the stage, and every worker it forks is a grandchild counted in the same RUSAGE_CHILDREN.
    subprocess.run([sys.executable, "-m", "lmforge", "clean", "--run-dir", str(run.root), "--force",
                    f"clean.workers={workers}"], check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    manifest = json.loads(run.manifest_path("clean").read_text())
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(after.ru_utime + after.ru_stime
                                                                 - before.ru_utime - before.ru_stime, 1),
            "metrics": manifest["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="1,10", help="world sizes relative to tiny")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-docs", type=int, default=1000)
    parser.add_argument("--out", default="", help="also write the results as JSON here")
    args = parser.parse_args()
    results = []
    for scale in [int(s) for s in args.scales.split(",")]:
        with tempfile.TemporaryDirectory(prefix=f"clean-bench-{scale}x-") as tmp:
            run = RunDir(Path(tmp) / "run")
            prepared = prepare(run, scale, args.shard_docs)
            cleaned = run_clean(run, args.workers)
        m = cleaned.pop("metrics")
        steps = {name: {"docs_in": st["docs_in"], "cpu_seconds": st["seconds"],
                        "docs_per_cpu_second": round(st["docs_in"] / st["seconds"], 1) if st["seconds"] else None}
                 for name, st in m["steps"].items()}
        step_cpu = sum(st["seconds"] for st in m["steps"].values())
        row = {"scale": scale, **prepared, **cleaned, "kept": m["kept"], "workers": m["workers"],
               "shards": m["shards"], "steps": steps,
               "overall_docs_per_cpu_second_steps": round(m["raw_documents"] / step_cpu, 1),
               "overall_docs_per_cpu_second_process": round(m["raw_documents"] / cleaned["cpu_seconds"], 1)}
        results.append(row)
        print(f"\n== scale {scale}x: {prepared['pages']:,} pages, {m['raw_documents']:,} raw documents, "
              f"{m['shards']} shards, {m['workers']} workers")
        rss = m.get("peak_rss_mb") or {}
        row["peak_rss_mb_by_process"] = rss
        print(f"   clean: {cleaned['wall_seconds']}s wall, {cleaned['cpu_seconds']}s CPU, kept {m['kept']:,}; "
              f"peak RSS: largest worker {rss.get('workers')} MB, stage process {rss.get('stage_process')} MB")
        print(f"   {'step':<20}{'docs in':>10}{'CPU s':>10}{'docs/CPU s':>14}")
        for name, st in steps.items():
            rate = f"{st['docs_per_cpu_second']:,.0f}" if st["docs_per_cpu_second"] else "-"
            print(f"   {name:<20}{st['docs_in']:>10,}{st['cpu_seconds']:>10.2f}{rate:>14}")
        print(f"   overall: {row['overall_docs_per_cpu_second_steps']:,.0f} docs per CPU-second in the steps, "
              f"{row['overall_docs_per_cpu_second_process']:,.0f} counting all of the stage's CPU time")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
