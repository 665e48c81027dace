"""The clean stage: data/raw -> data/clean (kept), data/removed (with reasons), data/unreadable.

    lmforge clean --run-dir runs/tiny
    lmforge clean --run-dir runs/tiny --force clean.workers=4 clean.near_dedup=false

The steps, in order (every threshold is a `clean.*` field; defaults from the FineWeb paper):

    extract      HTML -> main text (resiliparse or trafilatura); mojibake repaired, U+FFFD-mangled text dropped
    math_route   (optional, `math_route`) worksheets are marked to skip the prose rules below
    language     keep `languages` at probability >= `language_threshold` (py3langid)
    gopher_quality, gopher_repetition, c4, fineweb     the heuristic quality rules
    unwanted     URL blocklist and banned URL words, then word lists
    classifier   a learned unwanted-content classifier (its score in meta.unwanted_score)
    pii          e-mail addresses (plain and obfuscated), phone numbers, IPv4 and IPv6 replaced
    exact dedup  normalised-text hash        near dedup   MinHash-LSH, word 5-grams, 14 x 8
    mixture      each source's share of the kept text set by its weight (collect.sources)

It runs in three passes over the raw shards that collect wrote:

  1. per shard, in parallel (`workers`): the per-document steps, then dedup keys of survivors
  2. once: merge the sorted dedup keys of all shards (bounded memory), pick the duplicates,
     and compute the mixture rates
  3. per shard, in parallel: write the kept documents and the duplicates' removal rows

Which of the steps after extraction a document goes through is its source's cleaning profile
(lmforge/config/profiles.py: web, curated, code-docs or a YAML file); dedup and the mixture run
over all sources together. The manifest breaks removals down by source and profile.

Each input document ends in exactly one place, and the manifest proves it:
collected inputs = kept + removed[reason] + unreadable[reason] (collect's unreadable included).
Outputs depend on the shards only, never on the number of workers or on timing.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import CleanConfig
from ..config.profiles import resolve_profile, source_profiles
from ..config.sources import parse_sources
from ..errors import StageError
from ..files import atomic_write_json, read_documents
from ..rundir import StageContext
from .classifier import model_for
from .dedup import DedupKeys, doc_key, find_exact_duplicates, find_near_duplicates
from .executors import make_executor
from .mixture import copies, mixture_rates
from .pipeline import build_steps, unwanted_lists  # noqa: F401 - unwanted_lists: part of this module's interface
from .shards import DocWriter
from .steps import Step, StepStats, run_steps
from .truth import score_cleaning

PREVIEW_CHARS = 2000


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (Linux and macOS; None elsewhere)."""
    try:
        import resource
        import sys as _sys
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(peak / (1024 * 1024 if _sys.platform == "darwin" else 1024), 1)
    except (ImportError, OSError):
        return None


_STEP_CACHE: dict[str, list[Step]] = {}


def _cached_steps(profile: dict, classifier_path: str = "") -> list[Step]:
    # A worker process builds each profile's steps (and loads the language model) once, not once per shard.
    key = json.dumps([profile, classifier_path], sort_keys=True)
    if key not in _STEP_CACHE:
        _STEP_CACHE[key] = build_steps(CleanConfig(**profile["clean_cfg"]), profile["rules"], classifier_path)
    return _STEP_CACHE[key]


def _task_profiles(profiles: dict) -> dict:
    return {name: {"name": p.name, "rules": list(p.rules), "clean_cfg": dataclasses.asdict(p.clean)}
            for name, p in profiles.items()}


# ---------------------------------------------------------------- pass 1: per shard

def _with_reason(doc: dict, reason: str, detail: str, preview: bool = False) -> dict:
    meta = {**(doc.get("meta") or {}), "reason": reason, "stage": "clean"}
    if detail:
        meta["detail"] = detail[:300]
    text = doc["text"][:PREVIEW_CHARS] if preview else doc["text"]
    return {**doc, "text": text, "meta": meta}


def _raw_docs(path: Path, lost: Counter):
    """Documents of one raw shard; rows a damaged shard cannot give are counted, not lost."""
    import pyarrow.parquet as pq
    read = 0
    try:
        expected = pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - the footer itself is unreadable
        lost["bad_raw_shard"] += 1
        return
    try:
        for doc in read_documents(path):
            read += 1
            yield doc
    except Exception:  # noqa: BLE001
        lost["bad_raw_shard"] += max(1, expected - read)


def filter_shard(task: dict) -> dict:
    """Pass 1 for one raw shard: per-document steps, survivors and their dedup keys to work/."""
    shard, work = task["shard"], Path(task["work"])
    c = task["clean_cfg"]
    profiles, default = task["profiles"], task["default_profile"]

    by_name: dict[str, list[Step]] = {}

    def steps_for(doc: dict) -> list[Step]:
        source = doc.get("source", "")
        if source not in by_name:      # the cache key is a JSON of the profile: built once per source
            by_name[source] = _cached_steps(profiles.get(source, default), task["classifier"])
        return by_name[source]

    stats: dict[str, StepStats] = {}
    by_source: dict[str, dict] = {}
    keys = DedupKeys(exact=c["exact_dedup"], near=c["near_dedup"], ngram=c["minhash_ngram"],
                     bands=c["minhash_bands"], rows=c["minhash_rows"], seed=c["minhash_seed"])
    removed, unreadable, examples = Counter(), Counter(), {}
    chars, source_ids, source_names = [], [], {}
    docs_in = kept = 0
    started = time.perf_counter()
    dedup_seconds = 0.0
    with DocWriter(work / f"survivors-{shard:05d}.parquet") as kept_out, \
            DocWriter(task["removed"]) as removed_out, DocWriter(task["unreadable"]) as unreadable_out:
        for outcome in run_steps(steps_for, _raw_docs(Path(task["raw"]), unreadable), stats):
            docs_in += 1
            doc = outcome.doc
            source = doc.get("source", "")
            tally = by_source.setdefault(source, {"profile": profiles.get(source, default)["name"], "inputs": 0,
                                                  "passed": 0, "removed": Counter(), "unreadable": Counter()})
            tally["inputs"] += 1
            if outcome.status == "kept":
                t0 = time.process_time()
                try:
                    keys.add(doc, doc_key(shard, kept))
                except Exception as err:  # noqa: BLE001 - counted, never fatal
                    outcome.status, outcome.reason = "unreadable", "dedup_keys:step_error"
                    outcome.detail = f"{type(err).__name__}: {err}"
                dedup_seconds += time.process_time() - t0
            if outcome.status == "kept":
                tally["passed"] += 1
                kept_out.write(doc)
                kept += 1
                chars.append(len(doc["text"]))
                source_ids.append(source_names.setdefault(doc.get("source", ""), len(source_names)))
            elif outcome.status == "removed":
                removed[outcome.reason] += 1
                tally["removed"][outcome.reason] += 1
                removed_out.write(_with_reason(doc, outcome.reason, outcome.detail))
                bucket = examples.setdefault(outcome.reason, [])
                if len(bucket) < task["examples"]:
                    bucket.append({"id": doc["id"], "url": doc.get("url", ""), "detail": outcome.detail[:200],
                                   "text": doc["text"][:300]})
            else:
                unreadable[outcome.reason] += 1
                tally["unreadable"][outcome.reason] += 1
                unreadable_out.write(_with_reason(doc, outcome.reason, outcome.detail, preview=True))
    keys.save(work / f"exact-{shard:05d}.npy", work / f"bands-{shard:05d}.npy")
    names = sorted(source_names, key=source_names.get)
    np.savez(work / f"index-{shard:05d}.npz", chars=np.array(chars, dtype=np.int64),
             source=np.array(source_ids, dtype=np.int32), names=np.array(names or [""], dtype=str))
    step_stats = {name: st.to_dict() for name, st in stats.items()}
    step_stats["dedup_keys"] = {"name": "dedup_keys", "docs_in": kept, "chars_in": int(sum(chars)), "kept": kept,
                                "modified": 0, "dropped": {}, "unreadable": {}, "seconds": round(dedup_seconds, 4)}
    # Documents lost with a damaged shard were never yielded: count them as inputs too.
    lost = unreadable.get("bad_raw_shard", 0)
    if lost:
        by_source.setdefault("", {"profile": "", "inputs": 0, "passed": 0, "removed": Counter(),
                                  "unreadable": Counter()})["unreadable"]["bad_raw_shard"] += lost
        by_source[""]["inputs"] += lost
    sources = {name: {**t, "removed": dict(t["removed"]), "unreadable": dict(t["unreadable"])}
               for name, t in by_source.items()}
    result = {"shard": shard, "docs_in": docs_in + lost, "kept": kept, "removed": dict(removed),
              "unreadable": dict(unreadable), "examples": examples, "steps": step_stats, "sources": sources,
              "seconds": round(time.perf_counter() - started, 3), "peak_rss_mb": peak_rss_mb()}
    atomic_write_json(work / f"filter-{shard:05d}.json", result)
    return result


# ---------------------------------------------------------------- pass 3: per shard

def finish_shard(task: dict) -> dict:
    """Pass 3 for one shard: kept documents (with mixture copies) out, duplicates to removed."""
    shard, work = task["shard"], Path(task["work"])
    drops = {int(row): (reason, detail) for row, reason, detail in task["drops"]}
    rates, seed = task["rates"], task["seed"]
    removed, examples = Counter(), {}
    kept = written = chars = 0
    by_source, by_language = Counter(), Counter()
    removed_by_source: dict[str, Counter] = {}
    with DocWriter(task["clean"]) as clean_out, DocWriter(task["removed"]) as removed_out:
        for row, doc in enumerate(read_documents(work / f"survivors-{shard:05d}.parquet")):
            if row in drops:
                reason, detail = drops[row]
            else:
                n_copies = copies(doc["id"], rates.get(doc.get("source", ""), 1.0), seed)
                reason, detail = ("", "") if n_copies else ("mixture:downsampled", "")
            if reason:
                removed[reason] += 1
                removed_by_source.setdefault(doc.get("source", ""), Counter())[reason] += 1
                removed_out.write(_with_reason(doc, reason, detail))
                bucket = examples.setdefault(reason, [])
                if len(bucket) < task["examples"]:
                    bucket.append({"id": doc["id"], "url": doc.get("url", ""), "detail": detail[:200],
                                   "text": doc["text"][:300]})
                continue
            kept += 1
            chars += len(doc["text"])
            by_source[doc.get("source", "")] += 1
            by_language[(doc.get("meta") or {}).get("language", "?")] += 1
            for copy in range(n_copies):
                clean_out.write(doc if copy == 0 else {**doc, "id": f"{doc['id']}#r{copy + 1}"})
                written += 1
    return {"shard": shard, "kept": kept, "written": written, "chars": chars, "removed": dict(removed),
            "examples": examples, "by_source": dict(by_source), "by_language": dict(by_language),
            "removed_by_source": {k: dict(v) for k, v in removed_by_source.items()}, "peak_rss_mb": peak_rss_mb()}


# ---------------------------------------------------------------- pass 2 and the stage

def _shard_index(work: Path, shard: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    data = np.load(work / f"index-{shard:05d}.npz")
    return data["chars"], data["source"], [str(n) for n in data["names"]]


def _lookup_ids(work: Path, keys: set[int]) -> dict[int, str]:
    """Document ids (or URLs) of the given keys: only the representatives of duplicate groups."""
    import pyarrow.parquet as pq
    by_shard: dict[int, list[int]] = {}
    for key in keys:
        by_shard.setdefault(key >> 32, []).append(key & 0xFFFFFFFF)
    out = {}
    for shard, rows in by_shard.items():
        table = pq.read_table(work / f"survivors-{shard:05d}.parquet", columns=["id", "url"])
        ids, urls = table.column("id").to_pylist(), table.column("url").to_pylist()
        for row in rows:
            out[(shard << 32) | row] = urls[row] or ids[row]
    return out


def _clear(folder: Path, pattern: str) -> None:
    for path in folder.glob(pattern):
        path.unlink()


def _merge_examples(into: dict, new: dict, limit: int) -> None:
    for reason, items in new.items():
        bucket = into.setdefault(reason, [])
        bucket.extend(items[:max(0, limit - len(bucket))])


def _find_duplicates(work: Path, n: int, c: CleanConfig, weights: dict) -> tuple:
    """Pass 2: merge every shard's dedup keys, pick the duplicates, set the mixture rates."""
    t0 = time.perf_counter()
    exact = find_exact_duplicates([work / f"exact-{s:05d}.npy" for s in range(n)]) if c.exact_dedup else {}
    near = find_near_duplicates([work / f"bands-{s:05d}.npy" for s in range(n)], c.minhash_bands, skip=exact) \
        if c.near_dedup else {}
    representative_ids = _lookup_ids(work, set(exact.values()) | set(near.values()))
    kept_chars: Counter = Counter()
    for shard in range(n):
        chars, source, names = _shard_index(work, shard)
        for row in range(len(chars)):
            key = doc_key(shard, row)
            if key not in exact and key not in near:
                kept_chars[names[int(source[row])]] += int(chars[row])
    rates = mixture_rates(dict(kept_chars), weights, c.mixture_max_repeats)
    drops: dict[int, list] = {s: [] for s in range(n)}
    for key, first in exact.items():
        drops[key >> 32].append((key & 0xFFFFFFFF, "exact_dedup:duplicate", f"of {representative_ids.get(first, first)}"))
    for key, first in near.items():
        drops[key >> 32].append((key & 0xFFFFFFFF, "near_dedup:duplicate", f"of {representative_ids.get(first, first)}"))
    return exact, near, rates, drops, time.perf_counter() - t0


def _source_rows(filtered, finished, collect_metrics: dict, profiles: dict, default: dict, rates: dict) -> dict:
    """Per source: its profile, inputs (collect's unreadable included), kept, kept share, the
    removals and unreadable inputs by reason, and its mixture rate."""
    rows: dict[str, dict] = {}

    def row(name: str) -> dict:
        profile = profiles.get(name, default)
        return rows.setdefault(name, {"profile": profile["name"], "rules": profile["rules"], "inputs": 0, "kept": 0,
                                      "removed": Counter(), "unreadable": Counter()})

    for spec in collect_metrics.get("sources", []):
        r = row(spec["name"])
        if spec.get("unreadable"):
            r["inputs"] += spec["unreadable"]
            r["unreadable"]["at_collect"] += spec["unreadable"]
    for result in filtered:
        for name, t in (result.get("sources") or {}).items():
            r = row(name)
            r["inputs"] += t["inputs"]
            r["removed"].update(t["removed"])
            r["unreadable"].update(t["unreadable"])
    for f in finished:
        for name, count in f["by_source"].items():
            row(name)["kept"] += count
        for name, reasons in (f.get("removed_by_source") or {}).items():
            row(name)["removed"].update(reasons)
    for name, r in rows.items():
        r["kept_share"] = round(r["kept"] / r["inputs"], 4) if r["inputs"] else None
        r["mixture_rate"] = round(rates.get(name, 1.0), 4)
        r["removed"] = dict(r["removed"].most_common())
        r["unreadable"] = dict(r["unreadable"].most_common())
    return dict(sorted(rows.items()))


def run_stage(ctx: StageContext) -> dict:
    run, c = ctx.run, ctx.cfg.clean
    started = time.perf_counter()
    # Each source's profile; a bad profile, threshold list or word-list file stops here, before
    # any work. Sources found in data/raw but no longer configured get the web profile.
    profiles = source_profiles(parse_sources(ctx.cfg.collect.sources, ctx.cfg.collect.text_column), c)
    default = resolve_profile("web", c)
    for profile in [default, *profiles.values()]:
        build_steps(profile.clean, profile.rules)      # trains the classifier once, in this process
    raw_shards = sorted(run.raw_dir.glob("*.parquet"))
    if not raw_shards:
        raise StageError(f"no raw documents in {run.raw_dir}; run `lmforge collect --run-dir {run.root}` first")
    clean_dir, removed_dir = run.path("data", "clean"), run.path("data", "removed")
    unreadable_dir, work = run.path("data", "unreadable"), run.path("data", ".clean_work")
    if not ctx.resume and work.exists():
        shutil.rmtree(work)
    for folder in (clean_dir, removed_dir, unreadable_dir, work):
        folder.mkdir(parents=True, exist_ok=True)
    _clear(clean_dir, "*.parquet")
    _clear(removed_dir, "dedup-*.parquet")
    if not ctx.resume:
        _clear(removed_dir, "filter-*.parquet")
        _clear(unreadable_dir, "clean-*.parquet")
    collect = run.read_manifest("collect") or {}
    collect_metrics = collect.get("metrics") or {}
    weights = {s["name"]: float(s.get("weight", 1.0)) for s in collect_metrics.get("sources", [])}
    clean_cfg = dataclasses.asdict(c)
    classifier_path, classifier_info = "", None
    if c.classifier and any("classifier" in p.rules for p in [default, *profiles.values()]):
        model = model_for(c.classifier_train, c.classifier_window, c.classifier_hash_bits)
        classifier_path, classifier_info = str(work / "unwanted-classifier.npz"), dict(model.info)
        model.save(Path(classifier_path))     # workers (forked, spawned or on Ray) load this one
    task_profiles, default_profile = _task_profiles(profiles), _task_profiles({"": default})[""]
    executor = make_executor(c.executor, c.workers, c.ray_address)
    workers = getattr(executor, "workers", c.workers)

    # pass 1 ---------------------------------------------------------------
    tasks, results = [], {}
    for shard, raw in enumerate(raw_shards):
        marker = work / f"filter-{shard:05d}.json"
        if ctx.resume and marker.exists():   # this shard finished before the interruption
            results[shard] = json.loads(marker.read_text())
            continue
        tasks.append({"shard": shard, "raw": str(raw), "work": str(work), "clean_cfg": clean_cfg,
                      "profiles": task_profiles, "default_profile": default_profile, "classifier": classifier_path,
                      "removed": str(removed_dir / f"filter-{shard:05d}.parquet"),
                      "unreadable": str(unreadable_dir / f"clean-{shard:05d}.parquet"),
                      "examples": c.examples_per_reason})
    if results:
        ctx.progress(f"resuming: {len(results)} of {len(raw_shards)} shards already filtered")
    done = [len(results)]

    def report(result: dict) -> None:
        done[0] += 1
        ctx.progress(f"filtered shard {done[0]}/{len(raw_shards)}: {result['docs_in']} in, {result['kept']} pass "
                     f"({result['seconds']:.1f}s)")

    try:
        for result in executor.map(filter_shard, tasks, on_result=report):
            results[result["shard"]] = result
        pass1_seconds = time.perf_counter() - started
        exact, near, rates, drops, dedup_seconds = _find_duplicates(work, len(raw_shards), c, weights)
        t0 = time.perf_counter()
        _clear(clean_dir, "*.parquet")
        n = len(raw_shards)
        finish_tasks = [{"shard": s, "work": str(work), "drops": sorted(drops[s]), "rates": rates,
                         "seed": ctx.cfg.run.seed, "clean": str(clean_dir / f"clean-{s:05d}.parquet"),
                         "removed": str(removed_dir / f"dedup-{s:05d}.parquet"), "examples": c.examples_per_reason}
                        for s in range(n)]
        finished = executor.map(finish_shard, finish_tasks)
        pass3_seconds = time.perf_counter() - t0
    finally:
        executor.close()

    # accounting -------------------------------------------------------------
    n = len(raw_shards)
    removed, unreadable_clean, examples = Counter(), Counter(), {}
    steps: dict[str, StepStats] = {}
    docs_in = 0
    for shard in range(n):
        r = results[shard]
        docs_in += r["docs_in"]
        removed.update(r["removed"])
        unreadable_clean.update(r["unreadable"])
        _merge_examples(examples, r["examples"], c.examples_per_reason)
        for name, st in r["steps"].items():
            steps.setdefault(name, StepStats(name)).merge(st)
    kept = written = kept_characters = 0
    by_source, by_language = Counter(), Counter()
    for f in finished:
        kept += f["kept"]
        written += f["written"]
        kept_characters += f["chars"]
        removed.update(f["removed"])
        by_source.update(f["by_source"])
        by_language.update(f["by_language"])
        _merge_examples(examples, f["examples"], c.examples_per_reason)
    collect_unreadable = Counter(collect_metrics.get("unreadable") or {})
    unreadable_all = collect_unreadable + unreadable_clean
    inputs = docs_in + sum(collect_unreadable.values())
    accounted = kept + sum(removed.values()) + sum(unreadable_all.values())
    if accounted != inputs:
        raise StageError(f"accounting does not balance: {inputs} inputs, {kept} kept + {sum(removed.values())} "
                         f"removed + {sum(unreadable_all.values())} unreadable = {accounted}")
    step_rows = {}
    for name, st in steps.items():
        row = st.to_dict()
        row["docs_per_second"] = round(st.docs_in / st.seconds, 1) if st.seconds > 0 else None
        row["mb_per_second"] = round(st.chars_in / st.seconds / 1e6, 2) if st.seconds > 0 else None
        step_rows[name] = row
    sources = _source_rows(results.values(), finished, collect_metrics, {**task_profiles}, default_profile, rates)
    step_rows["dedup_merge"] = {"name": "dedup_merge", "docs_in": sum(r["kept"] for r in results.values()),
                                "kept": sum(r["kept"] for r in results.values()) - len(exact) - len(near),
                                "dropped": {"exact": len(exact), "near": len(near)}, "seconds": round(dedup_seconds, 3)}
    metrics = {
        "kept": kept, "documents": written, "kept_characters": kept_characters,
        "kept_fraction": round(kept / inputs, 4) if inputs else 0.0,
        "raw_documents": docs_in,
        "accounting": {"inputs": inputs, "kept": kept, "removed": sum(removed.values()),
                       "unreadable": sum(unreadable_all.values()), "balanced": True},
        "removed": dict(sorted(removed.items())),
        "unreadable": dict(sorted(unreadable_all.items())),
        "unreadable_at_collect": dict(sorted(collect_unreadable.items())),
        "exact_duplicates": len(exact), "near_duplicates": len(near),
        "mixture_rates": {k: round(v, 4) for k, v in rates.items()},
        "by_source": dict(sorted(by_source.items())), "by_language": dict(sorted(by_language.items())),
        "sources": sources,
        "profiles": {p.name: p.to_dict() for p in [default, *profiles.values()]},
        "classifier": classifier_info,
        "steps": step_rows, "examples": examples, "shards": n, "workers": min(workers or 1, n),
        "pass_seconds": {"filter": round(pass1_seconds, 2), "dedup": round(dedup_seconds, 2),
                         "write": round(pass3_seconds, 2)},
        # Memory should grow with the shard size, not the corpus: the largest worker and this process.
        "peak_rss_mb": {"workers": max((r.get("peak_rss_mb") or 0 for r in list(results.values()) + finished),
                                       default=None),
                        "stage_process": peak_rss_mb()},
    }
    truth_path = run.world_dir / "site_truth.jsonl"
    if truth_path.exists() and collect_metrics.get("site_pages"):
        metrics["truth"] = score_cleaning(run)
    shutil.rmtree(work, ignore_errors=True)
    ctx.progress(f"{inputs:,} in: {kept:,} kept, {sum(removed.values()):,} removed, "
                 f"{sum(unreadable_all.values()):,} unreadable in {time.perf_counter() - started:.1f}s")
    return metrics
