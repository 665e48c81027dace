"""Cleaning throughput: documents and MB of text per CPU-second (= per core) for each step and
overall, and peak memory, on the built-in site (at `tiny` size and larger) with both HTML
extractors side by side, on generated long plain-text documents (64 KB each), and the two
extractors' quality on the site's ground truth (boilerplate left, main text kept); and the
curated-profile bar on a folder of long books with planted near-duplicate copies (every
distinct book kept, unchanged apart from PII masking; every copy removed).

    OMP_NUM_THREADS=1 python benchmarks/clean_throughput.py                 # scale 1, both extractors, long docs
    OMP_NUM_THREADS=1 python benchmarks/clean_throughput.py --scales 1,10 --extractors resiliparse
    OMP_NUM_THREADS=1 python benchmarks/clean_throughput.py --scales "" --no-quality --curated 0   # long documents only

MB here is a million characters of the step's input text (bytes for ASCII).

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
from lmforge.world.site import build_site, path_of  # noqa: E402
from lmforge.data.sources import charset_of, decode_bytes  # noqa: E402
from lmforge.world import build_world  # noqa: E402
from lmforge.files import atomic_write_json  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402


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


def extractor_quality(scale: int) -> dict:
    """Both extractors on the site's original pages: docs per CPU-second over every HTML page,
    pages with boilerplate left, and the share of each page's main-text lines kept."""
    from lmforge.data.extract import ExtractText
    from lmforge.world.site_dirt import BOILERPLATE_SENTENCES, NAV, PRINT_LINK, SIDEBAR
    cfg = load_config("tiny")
    cfg.world = world_config(scale)
    world = build_world(cfg.world)
    site = build_site(world, cfg.collect.site_dirt_fraction, seed=cfg.world.seed)
    docs = {site.origin + path_of(d["url"]): d for d in world.documents()}
    furniture = {line for lines in NAV.values() for line in lines} | set(SIDEBAR.values()) | set(PRINT_LINK.values()) \
        | {"Popular", "Blog", "Legacy", "Archive", "Mirror", "Sponsored", "Draft", "Community", "Boards", "More"}
    pages = []
    for path, page in site.pages.items():
        if page.status == 200 and page.content_type.startswith("text/html") and site.truth[path]["expect"] != "skip":
            text, _, _ = decode_bytes(page.body, charset_of(page.content_type, page.body))
            if text is not None:
                pages.append((site.origin + path, text))
    out = {}
    for extractor in ("resiliparse", "trafilatura"):
        step = ExtractText(extractor=extractor)
        started = time.process_time()
        extracted = {url: step.main_text(html, url) for url, html in pages}
        seconds = time.process_time() - started
        boiler = kept_lines = all_lines = full = originals = 0
        for url, doc in docs.items():
            text = extracted.get(url)
            if text is None:
                continue
            originals += 1
            lines = {line.strip() for line in doc["text"].split("\n") if line.strip()}
            found = sum(line in text for line in lines)
            kept_lines, all_lines, full = kept_lines + found, all_lines + len(lines), full + (found == len(lines))
            boiler += any(s in text for s in BOILERPLATE_SENTENCES) or bool(furniture & {
                part.strip() for line in text.split("\n") for part in line.split("·")})
        out[extractor] = {"pages": len(pages), "cpu_seconds": round(seconds, 2),
                          "docs_per_cpu_second": round(len(pages) / seconds, 1),
                          "mb_per_cpu_second": round(sum(len(h) for _, h in pages) / seconds / 1e6, 2),
                          "original_pages": originals, "pages_with_boilerplate": boiler,
                          "main_text_lines_kept": round(kept_lines / max(1, all_lines), 4),
                          "pages_with_all_main_text": round(full / max(1, originals), 4)}
    return out


def long_documents(count: int, chars: int) -> dict:
    """Every step of the web profile (and dedup keys) timed alone on long plain-text documents."""
    import random

    from lmforge.data.dedup import DedupKeys
    from lmforge.data.pipeline import build_steps
    from lmforge.world.prose import long_document
    docs = [{"id": f"long{i}", "text": long_document(random.Random(i), chars, play=False), "source": "long", "url": "",
             "meta": {"format": "text"}} for i in range(count)]
    steps = build_steps(load_config("tiny").clean)
    for step in steps:                  # warm up: models load, caches fill (not timed)
        step.process(docs[0])
    total = sum(len(d["text"]) for d in docs)
    rows = {}
    for step in steps:
        started = time.process_time()
        verdicts = [step.process(doc) for doc in docs]
        seconds = time.process_time() - started
        rows[step.name] = {"cpu_seconds": round(seconds, 3), "docs_per_cpu_second": round(count / seconds, 1),
                           "mb_per_cpu_second": round(total / seconds / 1e6, 2),
                           "kept": sum(isinstance(v, dict) for v in verdicts)}
    keys = DedupKeys()
    started = time.process_time()
    for i, doc in enumerate(docs):
        keys.add(doc, i)
    seconds = time.process_time() - started
    rows["dedup_keys"] = {"cpu_seconds": round(seconds, 3), "docs_per_cpu_second": round(count / seconds, 1),
                          "mb_per_cpu_second": round(total / seconds / 1e6, 2), "kept": count}
    return {"documents": count, "mean_chars": total // count, "steps": rows}


def curated_folder(count: int, copies: int, chars: int, workers: int) -> dict:
    """A folder of long plain-text books (prose and play-like dialogue, lmforge/world/prose.py),
    every fourth with personal data in formats the PII rules were not tuned on, and `copies`
    near-duplicate copies (a few words changed), through the real collect and clean stages with
    the folder's default profile (curated). Checks the quality bar: every distinct file kept,
    its text unchanged apart from PII masking; every copy removed as a near duplicate."""
    import random

    from lmforge.data.pii import DEFAULT_REPLACEMENTS
    from lmforge.world.prose import long_document, near_copy
    from lmforge.world.site_pii import unseen_line, unseen_pii
    from lmforge.files import read_documents
    from lmforge.run import execute_stage, get_stage
    stand_in = {"email": DEFAULT_REPLACEMENTS["email"], "phone": DEFAULT_REPLACEMENTS["phone"],
                "ipv6": DEFAULT_REPLACEMENTS["ipv6"]}
    rng = random.Random(22)
    with tempfile.TemporaryDirectory(prefix="clean-bench-curated-") as tmp:
        books = Path(tmp) / "books"
        books.mkdir()
        texts, expected, planted = {}, {}, 0
        for i in range(count):
            text = long_document(random.Random(i), chars)
            masked = text
            if i % 4 == 1:      # personal data in a paragraph of its own, after the first paragraph
                items = unseen_pii(f"reader{i}", random.Random(f"pii{i}"))
                line = unseen_line(items, "en")
                text = text.replace("\n\n", f"\n\n{line}\n\n", 1)
                for item in items:
                    line = line.replace(item["value"], stand_in[item["kind"].split("_")[0]])
                masked = masked.replace("\n\n", f"\n\n{line}\n\n", 1)
                planted += len(items)
            texts[f"book{i:03d}.txt"], expected[f"book{i:03d}.txt"] = text, masked
        for j, i in enumerate(rng.sample(range(count), copies)):
            texts[f"copy{j:02d}-of-book{i:03d}.txt"] = near_copy(texts[f"book{i:03d}.txt"], rng)
        for name, text in texts.items():
            (books / name).write_text(text, encoding="utf-8")
        run = RunDir(Path(tmp) / "run")
        cfg = load_config("micro", [f"collect.sources=[books=folder:{books}]", f"clean.workers={workers}"])
        execute_stage(run, cfg, get_stage("collect"))
        m = execute_stage(run, cfg, get_stage("clean"))["metrics"]
        kept = {d["meta"]["path"]: d["text"] for d in read_documents(run.path("data", "clean"))}
        removed = {d["meta"]["path"]: d["meta"]["reason"] for d in read_documents(run.path("data", "removed"))}
    distinct = [name for name in texts if name.startswith("book")]
    copy_names = [name for name in texts if name.startswith("copy")]
    unchanged = sum(kept.get(name) == texts[name] for name in distinct)
    masked_only = sum(kept.get(name) == expected[name] != texts[name] for name in distinct)
    steps = {name: {"docs_in": st["docs_in"], "cpu_seconds": st["seconds"],
                    "docs_per_cpu_second": round(st["docs_in"] / st["seconds"], 1) if st["seconds"] else None,
                    "mb_per_cpu_second": round(st.get("chars_in", 0) / st["seconds"] / 1e6, 2)
                    if st["seconds"] and st.get("chars_in") else None}
             for name, st in m["steps"].items()}
    return {"files": len(texts), "distinct": len(distinct), "copies": len(copy_names),
            "mean_chars": sum(len(t) for t in texts.values()) // len(texts), "profile": m["sources"]["books"]["profile"],
            "distinct_kept": sum(name in kept for name in distinct), "kept_unchanged": unchanged,
            "kept_changed_only_by_pii_masking": masked_only, "pii_items_planted": planted,
            "kept_changed_otherwise": sorted(n for n in distinct if n in kept and kept[n] not in (texts[n], expected[n])),
            "distinct_removed": {n: removed[n] for n in distinct if n in removed},
            "copies_removed_as_near_duplicates": sum(removed.get(n) == "near_dedup:duplicate" for n in copy_names),
            "copies_kept": sorted(n for n in copy_names if n in kept), "steps": steps}


def run_clean(run: RunDir, workers: int, extractor: str = "resiliparse") -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    # /usr/bin/time-like numbers without it: the child's own peak RSS covers the parent process of
    # the stage, and every worker it forks is a grandchild counted in the same RUSAGE_CHILDREN.
    subprocess.run([sys.executable, "-m", "lmforge", "clean", "--run-dir", str(run.root), "--force",
                    f"clean.workers={workers}", f"clean.extractor={extractor}"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    manifest = json.loads(run.manifest_path("clean").read_text())
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(after.ru_utime + after.ru_stime
                                                                 - before.ru_utime - before.ru_stime, 1),
            "metrics": manifest["metrics"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="1", help="site sizes relative to tiny (empty: none)")
    parser.add_argument("--extractors", default="resiliparse,trafilatura")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--shard-docs", type=int, default=1000)
    parser.add_argument("--long-docs", type=int, default=40, help="generated 64 KB documents (0: skip)")
    parser.add_argument("--long-chars", type=int, default=64_000)
    parser.add_argument("--curated", type=int, default=72, help="books in the curated folder (0: skip)")
    parser.add_argument("--curated-copies", type=int, default=6, help="planted near-duplicate copies among them")
    parser.add_argument("--quality", action=argparse.BooleanOptionalAction, default=True,
                        help="score both extractors on the site's truth")
    parser.add_argument("--out", default="", help="also write the results as JSON here")
    args = parser.parse_args()
    results: dict = {"site": []}
    for scale in [int(s) for s in args.scales.split(",") if s.strip()]:
        for extractor in [e for e in args.extractors.split(",") if e]:
            with tempfile.TemporaryDirectory(prefix=f"clean-bench-{scale}x-") as tmp:
                run = RunDir(Path(tmp) / "run")
                prepared = prepare(run, scale, args.shard_docs)
                cleaned = run_clean(run, args.workers, extractor)
            m = cleaned.pop("metrics")
            steps = {name: {"docs_in": st["docs_in"], "cpu_seconds": st["seconds"],
                            "docs_per_cpu_second": round(st["docs_in"] / st["seconds"], 1) if st["seconds"] else None,
                            "mb_per_cpu_second": round(st.get("chars_in", 0) / st["seconds"] / 1e6, 2)
                            if st["seconds"] and st.get("chars_in") else None}
                     for name, st in m["steps"].items()}
            step_cpu = sum(st["seconds"] for st in m["steps"].values())
            row = {"scale": scale, "extractor": extractor, **prepared, **cleaned, "kept": m["kept"],
                   "workers": m["workers"], "shards": m["shards"], "steps": steps,
                   "overall_docs_per_cpu_second_steps": round(m["raw_documents"] / step_cpu, 1),
                   "overall_docs_per_cpu_second_process": round(m["raw_documents"] / cleaned["cpu_seconds"], 1),
                   "peak_rss_mb_by_process": m.get("peak_rss_mb") or {}}
            results["site"].append(row)
            rss = row["peak_rss_mb_by_process"]
            print(f"\n== site at scale {scale}x, {extractor}: {prepared['pages']:,} pages, {m['raw_documents']:,} raw "
                  f"documents, {m['shards']} shards, {m['workers']} workers")
            print(f"   clean: {cleaned['wall_seconds']}s wall, {cleaned['cpu_seconds']}s CPU, kept {m['kept']:,}; "
                  f"peak RSS: largest worker {rss.get('workers')} MB, stage process {rss.get('stage_process')} MB")
            print_steps(steps)
            print(f"   overall: {row['overall_docs_per_cpu_second_steps']:,.0f} docs per CPU-second in the steps, "
                  f"{row['overall_docs_per_cpu_second_process']:,.0f} counting all of the stage's CPU time")
    if args.quality:
        results["extractors"] = extractor_quality(1)
        print("\n== extractors on the tiny site's pages (CPU seconds; truth: the world documents)")
        for name, q in results["extractors"].items():
            print(f"   {name:<12} {q['docs_per_cpu_second']:>8,.0f} docs/s {q['mb_per_cpu_second']:>6.2f} MB/s   "
                  f"boilerplate left on {q['pages_with_boilerplate']} of {q['original_pages']} pages, main-text lines "
                  f"kept {q['main_text_lines_kept']:.2%}, pages with all of it {q['pages_with_all_main_text']:.2%}")
    if args.long_docs:
        results["long_documents"] = long_documents(args.long_docs, args.long_chars)
        ld = results["long_documents"]
        print(f"\n== {ld['documents']} generated long documents of {ld['mean_chars']:,} characters, each step alone")
        print_steps(ld["steps"])
    if args.curated:
        results["curated"] = cur = curated_folder(args.curated, args.curated_copies, args.long_chars, args.workers)
        print(f"\n== a curated folder: {cur['distinct']} books of about {cur['mean_chars']:,} characters and "
              f"{cur['copies']} near-duplicate copies, profile {cur['profile']}")
        print(f"   distinct books kept {cur['distinct_kept']} of {cur['distinct']}: {cur['kept_unchanged']} unchanged, "
              f"{cur['kept_changed_only_by_pii_masking']} changed only by PII masking ({cur['pii_items_planted']} items), "
              f"otherwise changed: {cur['kept_changed_otherwise'] or 'none'}; removed: {cur['distinct_removed'] or 'none'}")
        print(f"   copies removed as near duplicates: {cur['copies_removed_as_near_duplicates']} of {cur['copies']}"
              f"{'; kept: ' + ', '.join(cur['copies_kept']) if cur['copies_kept'] else ''}")
        print_steps(cur["steps"])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


def print_steps(steps: dict) -> None:
    print(f"   {'step':<20}{'CPU s':>10}{'docs/CPU s':>14}{'MB/CPU s':>12}")
    for name, st in steps.items():
        rate = f"{st['docs_per_cpu_second']:,.0f}" if st.get("docs_per_cpu_second") else "-"
        mb = f"{st['mb_per_cpu_second']:.2f}" if st.get("mb_per_cpu_second") else "-"
        print(f"   {name:<20}{st['cpu_seconds']:>10.2f}{rate:>14}{mb:>12}")


if __name__ == "__main__":
    main()
