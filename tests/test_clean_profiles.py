"""Cleaning profiles per source: defaults by kind, user profiles in YAML, one-line errors before
any work, and a run that mixes sources with different profiles (a curated folder of long
books next to web text), deduplicated across them.

    python -m pytest tests/test_clean_profiles.py -q
"""
from __future__ import annotations

import json
import random

import pytest

from lmforge.config import ConfigError, load_config
from lmforge.config.profiles import resolve_profile, source_profiles
from lmforge.config.sources import parse_sources
from lmforge.data.pipeline import build_steps
from lmforge.world.prose import long_document, near_copy
from lmforge.files import read_documents
from lmforge.run import execute_stage, get_stage
from lmforge.rundir import RunDir

from .conftest import lmforge


def test_every_kind_has_a_default_profile_and_a_source_can_name_one(tmp_path):
    specs = parse_sources(["site", "web=warc:/x.warc", "books=folder:/data/books", "docs=folder:/d~code-docs",
                           "c=jsonl:/x.jsonl#content~curated@0.5", {"kind": "parquet", "path": "/p", "profile": "curated"}])
    clean = load_config("tiny").clean
    profiles = {name: p.name for name, p in source_profiles(specs, clean).items()}
    assert profiles == {"site": "web", "web": "web", "books": "curated", "docs": "code-docs", "c": "curated",
                        "parquet": "curated"}
    assert specs[4].text_column == "content" and specs[4].weight == 0.5
    assert parse_sources(["folder:~/books"])[0].location == "~/books" and not parse_sources(["folder:~/books"])[0].profile
    names = [s.name for s in build_steps(resolve_profile("curated", clean).clean, resolve_profile("curated", clean).rules)]
    assert names == ["extract", "math_route", "language", "pii"]
    code = resolve_profile("code-docs", clean)
    c4 = [s for s in build_steps(code.clean, code.rules) if s.name == "c4"][0]
    assert not c4.drop_curly_bracket and not c4.line_rules
    page = "Install it with pip.\nRun it:\nx = {1: 2}\nfoo()\n" + "It works well. " * 6
    assert c4.process({"id": "d", "text": page, "meta": {}})["text"] == page       # every line stays
    # a preset's relaxed thresholds reach the web profile
    assert resolve_profile("web", clean).clean.gopher_min_words == clean.gopher_min_words == 20


@pytest.mark.parametrize("body, error", [
    ({"rules": ["language", "gopher_qualty"]}, "unknown rule 'gopher_qualty'"),
    ({"base": "web", "thresholds": {"gopher_min_words": -3}}, "clean.gopher_min_words=-3 is out of range"),
    ({"base": "web", "thresholds": {"language_threshold": 2}}, "clean.language_threshold=2.0 is out of range"),
    ({"base": "web", "thresholds": {"no_such_rule": 1}}, "unknown field 'clean.no_such_rule"),
    ({"base": "web", "thresholds": {"workers": 4}}, "clean.workers is set for the whole run"),
    ({"base": "webby"}, "base 'webby' is not a built-in profile"),
    ({"thresholds": {}}, "name its rules"),
])
def test_a_bad_user_profile_stops_with_one_line_naming_it(tmp_path, body, error):
    import yaml
    path = tmp_path / "books.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError) as err:
        load_config("micro", [f"collect.sources=[site, books=folder:{tmp_path}~{path}]"])
    assert error in str(err.value) and "\n" not in str(err.value) and "collect.sources[1] (books)" in str(err.value)
    with pytest.raises(ConfigError, match="unknown cleaning profile 'curatd'"):
        load_config("micro", ["collect.sources=[site~curatd]"])


def test_the_command_line_stops_before_any_work(tmp_path):
    (tmp_path / "p.yaml").write_text("rules: [language, nonsense]\n")
    proc = lmforge("run", "--preset", "micro", "--run-dir", str(tmp_path / "run"), "--to", "clean",
                   f"collect.sources=[site~{tmp_path / 'p.yaml'}]", check=False)
    assert proc.returncode == 2
    assert "unknown rule 'nonsense'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "data").exists()


def test_mixed_sources_with_their_own_profiles_in_one_run(tmp_path):
    """Web text (the world, named web) and a curated folder of long books with dialogue lines,
    PII and planted near-duplicate copies: every distinct book is kept with its text unchanged
    but for the masked personal data, the copies go as near duplicates, and a text that is in
    both sources is kept once (dedup runs across profiles; the first in corpus order, shard
    files by name, so the books' copy)."""
    books = tmp_path / "books"
    books.mkdir()
    rng = random.Random(3)
    texts = {f"book{i:02d}.txt": long_document(random.Random(i), chars=20_000) for i in range(6)}
    texts["book01.txt"] = texts["book01.txt"].replace("\n\n", "\n\nWrite to me at ada.berg at fjordpost dot example "
                                                      "or call +49 30 1234567.\n\n", 1)
    texts["copy-of-book02.txt"] = near_copy(texts["book02.txt"], rng)
    texts["copy-of-book04.txt"] = near_copy(texts["book04.txt"], rng)
    for name, text in texts.items():
        (books / name).write_text(text, encoding="utf-8")
    # books weigh 0.9 of the mixture: repeated, never downsampled (the web share is)
    cfg = load_config("micro", ["collect.sources=[web=world~web@0.1, books=folder:" + str(books) + "@0.9]",
                                "world.n_entities=20", "world.article_variants=1", "world.stories=10",
                                "world.dialogues=10", "world.arithmetic=10", "clean.workers=2"])
    run = RunDir(tmp_path / "run")
    execute_stage(run, cfg, get_stage("collect"))
    # a world page copied into the books folder after collect would not count: copy one in first
    world_doc = next(d for d in read_documents(run.raw_dir) if d["meta"].get("kind") == "story")
    (books / "borrowed.txt").write_text(world_doc["text"], encoding="utf-8")
    execute_stage(run, cfg, get_stage("collect"), force=True)
    m = execute_stage(run, cfg, get_stage("clean"))["metrics"]
    texts["borrowed.txt"] = world_doc["text"]
    kept = {d["meta"].get("path"): d for d in read_documents(run.path("data", "clean")) if d["source"] == "books"}
    assert set(kept) == {f"book{i:02d}.txt" for i in range(6)} | {"borrowed.txt"}
    for name, doc in kept.items():
        if name == "book01.txt":
            assert doc["text"] != texts[name] and "fjordpost" not in doc["text"] and "1234567" not in doc["text"]
            assert doc["text"].replace("email@example.com", "").replace("555-0100", "") == \
                texts[name].replace("ada.berg at fjordpost dot example", "").replace("+49 30 1234567", "")
        else:
            assert doc["text"] == texts[name]      # speaker names on their own lines and all
    removed = {d["meta"].get("path") or d["url"]: d["meta"]["reason"] for d in read_documents(run.path("data", "removed"))}
    assert removed["copy-of-book02.txt"] == removed["copy-of-book04.txt"] == "near_dedup:duplicate"
    assert removed[world_doc["url"]] == "exact_dedup:duplicate"
    sources = m["sources"]
    assert sources["books"]["profile"] == "curated" and sources["web"]["profile"] == "web"
    assert sources["books"]["kept"] == 7 and sources["books"]["inputs"] == 9
    assert sources["books"]["removed"] == {"near_dedup:duplicate": 2}
    assert sources["web"]["removed"]["exact_dedup:duplicate"] >= 1
    assert sources["web"]["kept_share"] < 1.0 and sources["web"]["mixture_rate"] < 1 < sources["books"]["mixture_rate"]
    assert set(m["profiles"]) == {"web", "curated"} and m["profiles"]["curated"]["rules"] == ["language", "pii"]
    report = json.loads(run.manifest_path("clean").read_text())["metrics"]["sources"]
    assert report == sources
