"""The collect stage with a mix of local sources and weights, then clean's mixture and accounting;
a hub source without a network fails with one line.

    python -m pytest tests/test_collect_stage.py -q
"""
from __future__ import annotations

import json

import pytest

from lmforge.config import ConfigError, load_config
from lmforge.files import read_documents
from lmforge.errors import StageError
from lmforge.run import execute_stage, get_stage
from lmforge.rundir import RunDir

SENTENCES = ["The old lighthouse keeper walked along the shore every morning.",
             "He counted the boats that came home with the tide and wrote their names in a book.",
             "In the evening he read the names aloud to his cat, who listened from the window.",
             "One winter a storm broke the glass of the lamp, and the keeper mended it with care.",
             "The children of the village brought him bread and news from the market.",
             "When spring came, the gulls returned to the rocks below the tower.",
             "A ship with red sails anchored in the bay for three days and then was gone.",
             "The keeper never learned where it had come from or where it went."]


def prose(seed: int) -> str:
    import random
    rng = random.Random(seed)
    picked = rng.sample(SENTENCES, len(SENTENCES))
    return f"Part {seed} of the story. " + " ".join(picked) + f" That was the end of part {seed}.\n"


def make_sources(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    for n in range(12):
        (books / f"book-{n:02d}.txt").write_text(prose(n))
    (books / "broken.txt").write_bytes(b"\xff\xfe\x00\x01 not text")
    (books / "empty.md").write_text("")
    rows = [json.dumps({"content": prose(100 + n)}) for n in range(6)]
    rows.insert(2, "{this is not json")
    (tmp_path / "letters.jsonl").write_text("\n".join(rows) + "\n")
    return books, tmp_path / "letters.jsonl"


def test_mixed_sources_weights_and_accounting(tmp_path):
    books, letters = make_sources(tmp_path)
    sources = f"[world@0.5, books=folder:{books}@0.3, letters=jsonl:{letters}#content@0.2]"
    cfg = load_config("micro", [f"collect.sources={sources}", "collect.shard_docs=100", "clean.workers=1"])
    run = RunDir(tmp_path / "run")
    collect = execute_stage(run, cfg, get_stage("collect"))["metrics"]
    assert collect["by_source"]["books"] == 12 and collect["by_source"]["letters"] == 6
    assert collect["unreadable"] == {"binary": 1, "empty": 1, "bad_json": 1}
    assert [s["weight"] for s in collect["sources"]] == [0.5, 0.3, 0.2]
    assert sorted(p.name for p in run.raw_dir.glob("*.parquet"))[:2] == ["books-00000.parquet", "letters-00000.parquet"]
    assert (run.world_dir / "facts.jsonl").exists() and not (run.world_dir / "site_truth.jsonl").exists()
    clean = execute_stage(run, cfg, get_stage("clean"))["metrics"]
    acc = clean["accounting"]
    assert acc["inputs"] == collect["inputs"] == acc["kept"] + acc["removed"] + acc["unreadable"]
    rates = clean["mixture_rates"]
    assert rates["world"] < 1 and rates["books"] > 1 and rates["letters"] > 1
    written = list(read_documents(run.path("data", "clean")))
    assert len(written) == clean["documents"]
    chars = {}
    for doc in written:
        chars[doc["source"]] = chars.get(doc["source"], 0) + len(doc["text"])
    total = sum(chars.values())
    # Repeats are capped (mixture_max_repeats), so small sources can fall short of their weight.
    assert chars["world"] / total > chars["books"] / total > 0
    assert any(d["id"].endswith("#r2") for d in written if d["source"] == "books")
    assert clean["removed"].get("mixture:downsampled", 0) > 0


def test_hub_source_offline_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config("micro", ["collect.sources=[hub:HuggingFaceFW/fineweb-edu]"])
    with pytest.raises(StageError) as err:
        execute_stage(RunDir(tmp_path / "run"), cfg, get_stage("collect"))
    assert "needs the network" in str(err.value) and "\n" not in str(err.value)


def test_bad_source_spec_is_a_config_error():
    with pytest.raises(ConfigError, match=r"collect.sources\[1\]"):
        load_config("micro", ["collect.sources=[site, folder]"])
