"""The collect and clean stages end to end on a small built-in site: every input accounted for,
the quality bars against the site's ground truth, outputs that do not depend on the number of
workers (or on crawling versus reading the site's WARC file), and the optional Ray executor.

    python -m pytest tests/test_clean_stage.py -q
"""
from __future__ import annotations

import json
import shutil

import pytest

from lmforge.config import load_config
from lmforge.files import read_documents, read_jsonl
from lmforge.run import get_stage, execute_stage
from lmforge.rundir import RunDir

SMALL = ["world.n_entities=60", "world.article_variants=2", "world.stories=40", "world.dialogues=40",
         "world.arithmetic=80", "collect.site_dirt_fraction=0.06", "collect.shard_docs=150"]


def collect_and_clean(run_dir, *overrides: str) -> tuple[RunDir, dict]:
    cfg = load_config("micro", SMALL + list(overrides))
    run = RunDir(run_dir)
    execute_stage(run, cfg, get_stage("collect"))
    return run, execute_stage(run, cfg, get_stage("clean"))["metrics"]


def texts(run: RunDir, folder: str) -> list[tuple[str, str]]:
    return [(d["url"], d["text"]) for d in read_documents(run.path("data", folder))]


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    return collect_and_clean(tmp_path_factory.mktemp("clean") / "run", "clean.workers=2")


def test_every_input_is_accounted_for(cleaned):
    run, m = cleaned
    acc = m["accounting"]
    assert acc["balanced"] and acc["inputs"] == acc["kept"] + acc["removed"] + acc["unreadable"]
    assert acc["removed"] == sum(m["removed"].values()) and acc["unreadable"] == sum(m["unreadable"].values())
    # Each fetched URL sits in exactly one of data/clean, data/removed, data/unreadable.
    places = {}
    for folder in ("clean", "removed", "unreadable"):
        for doc in read_documents(run.path("data", folder), columns=("url", "meta")):
            assert doc["url"] not in places, (doc["url"], places.get(doc["url"]), folder)
            places[doc["url"]] = folder
            if folder != "clean":
                assert doc["meta"]["reason"]
    truth = read_jsonl(run.world_dir / "site_truth.jsonl")
    assert {r["url"] for r in truth if r["expect"] != "skip"} == set(places)
    assert len(places) == acc["inputs"]
    collect = json.loads(run.manifest_path("collect").read_text())["metrics"]
    assert m["unreadable_at_collect"] == collect["unreadable"]
    assert {"http_404", "http_500", "redirect_loop", "content_type", "invalid_utf8"} <= set(collect["unreadable"])
    assert (run.world_dir / "site.warc.gz").exists() and (run.world_dir / "facts.jsonl").exists()


def test_quality_bars_against_the_ground_truth(cleaned):
    _, m = cleaned
    truth = m["truth"]
    dirt = truth["dirt"]
    assert dirt["unwanted"]["recall"] >= 0.95
    assert dirt["near_duplicate"]["recall"] >= 0.9       # small sample; the tiny site measures >= 0.95
    assert dirt["exact_duplicate"]["recall"] >= 0.95
    for kind in ("spam", "lorem_ipsum", "foreign_language", "broken_encoding", "http_error"):
        assert dirt[kind]["recall"] >= 0.95, kind
    assert dirt["pii"]["left_in_kept_text"] == 0
    # Dirt the cleaner never saw: held-out unwanted generators, unseen PII formats, scored
    # against the planted truth and by the independent detector (small sample at this size).
    assert dirt["unwanted_held_out"]["pages"] >= 9 and dirt["unwanted_held_out"]["recall"] >= 0.8
    assert truth["reason_families"]["unwanted"]["precision"] >= 0.95
    assert dirt["pii_unseen"]["planted_items_on_kept_pages"] >= 30 and dirt["pii_unseen"]["left_fraction"] <= 0.01
    assert truth["pii_detector"]["hits_in_kept_text"] == {}
    assert truth["hard_negatives"]["pages"] >= 9 and truth["hard_negatives"]["removed_fraction"] <= 0.1
    assert truth["clean_pages"]["wrongly_removed_fraction"] <= 0.02
    assert truth["kept_pages_naming_held_out_entities"] == 0
    assert truth["kept_pages_with_boilerplate"] == 0
    assert truth["trained_fact_sentences_present"] >= 0.99
    assert m["steps"]["extract"]["docs_in"] > 0 and m["steps"]["pii"]["modified"] > 0


def test_output_does_not_depend_on_workers_or_on_crawling(cleaned, tmp_path):
    run, m = cleaned
    other = RunDir(tmp_path / "one-worker")
    shutil.copytree(run.root, other.root)
    cfg = load_config("micro", SMALL + ["clean.workers=1"])
    one = execute_stage(other, cfg, get_stage("clean"), force=True)["metrics"]
    assert texts(other, "clean") == texts(run, "clean")
    assert texts(other, "removed") == texts(run, "removed")
    assert one["removed"] == m["removed"] and one["workers"] == 1 and m["workers"] == 2
    # The same site read from its WARC file instead of over HTTP: the same kept text. The WARC
    # holds pages in the order the site made them (the boards last), the crawl meets them after
    # the original that links them, so the shards, and the order of kept rows, differ.
    warc_run, warc = collect_and_clean(tmp_path / "warc", "clean.workers=2", "collect.sources=[site_warc]")
    assert sorted(texts(warc_run, "clean")) == sorted(texts(run, "clean"))
    assert warc["kept"] == m["kept"]


def test_ray_executor_gives_the_same_output(tmp_path):
    """clean.executor=ray (a local Ray of 2 CPUs, as `ray start` on each machine would give a
    cluster): the cleaning steps and the tokenizer's parts give the local processes' output."""
    ray = pytest.importorskip("ray")
    # The smallest world with two shards: starting Ray is the slow part, not the cleaning.
    tiny = ["world.n_entities=20", "world.article_variants=1", "world.stories=10", "world.dialogues=10",
            "world.arithmetic=10", "collect.shard_docs=40", "collect.sources=[world]"]
    run = RunDir(tmp_path / "local")
    cfg = load_config("micro", tiny + ["clean.workers=2"])
    execute_stage(run, cfg, get_stage("collect"))
    local = execute_stage(run, cfg, get_stage("clean"))["metrics"]
    execute_stage(run, cfg, get_stage("tokenizer"))
    other = RunDir(tmp_path / "ray")
    shutil.copytree(run.root, other.root)
    ray_cfg = load_config("micro", tiny + ["clean.executor=ray", "clean.workers=2"])
    on_ray = execute_stage(other, ray_cfg, get_stage("clean"), force=True)["metrics"]
    assert local["shards"] == 2 and on_ray["workers"] == local["workers"] == 2
    assert texts(other, "clean") == texts(run, "clean") and texts(run, "clean")
    assert texts(other, "removed") == texts(run, "removed") and on_ray["removed"] == local["removed"]
    execute_stage(other, ray_cfg, get_stage("tokenizer"), force=True)
    token_files = sorted(p.relative_to(run.tokens_dir) for p in run.tokens_dir.rglob("*.bin"))
    assert len(token_files) >= 4                          # train and val of each document file
    assert token_files == sorted(p.relative_to(other.tokens_dir) for p in other.tokens_dir.rglob("*.bin"))
    for name in token_files:
        assert (other.tokens_dir / name).read_bytes() == (run.tokens_dir / name).read_bytes(), name
    assert not ray.is_initialized()                       # the Ray it started is shut down again


def test_pipeline_trains_on_clean_text(micro_run):
    """The micro run of the whole pipeline: clean ran, the tokenizer read data/clean, the report says so."""
    run = RunDir(micro_run)
    clean = json.loads(run.manifest_path("clean").read_text())
    assert clean["status"] == "done" and clean["metrics"]["accounting"]["balanced"]
    assert run.documents_dir() == run.path("data", "clean")
    tokenizer = json.loads(run.manifest_path("tokenizer").read_text())
    assert tokenizer["inputs"]["clean"] == clean["output_id"]
    report = (micro_run / "report" / "report.md").read_text()
    assert "## Collect and clean" in report and "Every input accounted for" in report
    # each source's profile and kept share, and the dirt the cleaner saw beside the dirt it never saw
    assert "| source | profile | inputs | kept | kept share |" in report
    assert "| dirt | seen by the cleaner | never seen (held out) |" in report
    assert "The classifier on the held-out generators: recall" in report


def test_interrupted_clean_resumes_from_finished_shards(cleaned, tmp_path, monkeypatch):
    import lmforge.data.clean as clean_module
    run, m = cleaned
    other = RunDir(tmp_path / "resume")
    shutil.copytree(run.root, other.root)
    cfg = load_config("micro", SMALL + ["clean.workers=1"])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("killed after pass 1")

    with monkeypatch.context() as patch:
        patch.setattr(clean_module, "_find_duplicates", interrupted)
        with pytest.raises(KeyboardInterrupt):
            execute_stage(other, cfg, get_stage("clean"), force=True)
    assert json.loads(other.manifest_path("clean").read_text())["status"] == "failed"
    assert list(other.path("data", ".clean_work").glob("filter-*.json"))     # finished shards left markers
    calls = []
    original = clean_module.filter_shard
    monkeypatch.setattr(clean_module, "filter_shard", lambda task: calls.append(task["shard"]) or original(task))
    resumed = execute_stage(other, cfg, get_stage("clean"))
    assert resumed["resumed"] and calls == []                                # no shard filtered twice
    assert texts(other, "clean") == texts(run, "clean")
    assert resumed["metrics"]["accounting"] == m["accounting"]
