"""The run directory and the stage graph, end to end on the micro preset."""
import json

from lmforge.files import read_documents
from lmforge.rundir import STAGE_NAMES

from .conftest import lmforge


def manifest(run_dir, stage):
    return json.loads((run_dir / "stages" / f"{stage}.json").read_text())


def test_micro_run_produces_every_artifact(micro_run):
    for stage in STAGE_NAMES:
        m = manifest(micro_run, stage)
        assert m["status"] == "done", m
        assert m["wall_seconds"] >= 0 and m["versions"]["torch"]
    assert (micro_run / "config.yaml").exists()
    docs = list(read_documents(micro_run / "data" / "raw"))
    assert len(docs) == manifest(micro_run, "collect")["metrics"]["documents"]
    assert set(docs[0]) == {"id", "text", "source", "url", "meta"}
    assert (micro_run / "data" / "world" / "facts.jsonl").exists()
    meta = json.loads((micro_run / "data" / "tokens" / "meta.json").read_text())
    assert meta["train_tokens"] > 0 and meta["val_tokens"] > 0
    assert manifest(micro_run, "tokenizer")["metrics"]["bytes_per_token"] > 1.0
    for name in ("model.safetensors", "config.json", "trainer_state.pt"):
        assert (micro_run / "models" / "pretrain" / name).exists()
    rows = [json.loads(line) for line in (micro_run / "logs" / "pretrain.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == manifest(micro_run, "pretrain")["metrics"]["steps"]
    assert any("val_loss" in r for r in rows)
    report = (micro_run / "report" / "report.md").read_text()
    for heading in ("## Data", "## Tokenizer", "## Pretraining", "Fact completion"):
        assert heading in report
    assert (micro_run / "report" / "pretrain_loss.png").stat().st_size > 1000


def test_rerun_skips_done_stages(micro_copy):
    before = {s: manifest(micro_copy, s)["finished_at"] for s in ("collect", "tokenizer", "pretrain")}
    proc = lmforge("run", "--run-dir", str(micro_copy))
    assert proc.stderr.count("up to date, skipped") == len(STAGE_NAMES)
    assert {s: manifest(micro_copy, s)["finished_at"] for s in before} == before


def test_config_change_reruns_only_downstream(micro_copy):
    before = {s: manifest(micro_copy, s)["finished_at"] for s in ("collect", "tokenizer", "pretrain")}
    lmforge("run", "--run-dir", str(micro_copy), "--to", "pretrain", "pretrain.max_steps=12")
    after = {s: manifest(micro_copy, s)["finished_at"] for s in before}
    assert after["collect"] == before["collect"] and after["tokenizer"] == before["tokenizer"]
    assert after["pretrain"] != before["pretrain"]
    assert manifest(micro_copy, "pretrain")["metrics"]["steps"] == 12
    status = lmforge("status", "--run-dir", str(micro_copy)).stdout
    assert "report" in status and "stale" in status    # report was made from the old model


def test_from_forces_a_stage(micro_copy):
    before = manifest(micro_copy, "tokenizer")["finished_at"]
    lmforge("run", "--run-dir", str(micro_copy), "--from", "tokenizer", "--to", "tokenizer")
    assert manifest(micro_copy, "tokenizer")["finished_at"] != before
    assert manifest(micro_copy, "collect")["status"] == "done"


def test_status_lists_headlines(micro_run):
    out = lmforge("status", "--run-dir", str(micro_run)).stdout
    for stage in ("collect", "tokenizer", "pretrain", "report"):
        assert stage in out
    assert "fact_accuracy=" in out and "bytes_per_token=" in out


def test_single_stage_needs_its_inputs(tmp_path):
    proc = lmforge("pretrain", "--preset", "micro", "--run-dir", str(tmp_path / "empty"), check=False)
    assert proc.returncode == 1
    assert "needs 'tokenizer'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_generate_and_next(micro_run):
    out = lmforge("generate", "The", "--run-dir", str(micro_run), "--seed", "3", "--max-new-tokens", "8",
                  "--temperature", "0.9").stdout
    again = lmforge("generate", "The", "--run-dir", str(micro_run), "--seed", "3", "--max-new-tokens", "8",
                    "--temperature", "0.9").stdout
    assert out.strip() and out == again     # a seed makes sampling reproducible
    bars = lmforge("next", "Det er bedre med en fugl i hånden enn ti på", "--run-dir", str(micro_run),
                   "--show", "5").stdout
    lines = [line for line in bars.splitlines() if "%" in line]
    assert len(lines) == 5
    percents = [float(line.rsplit(None, 1)[-1].rstrip("%")) for line in lines]
    assert percents == sorted(percents, reverse=True) and 0 < sum(percents) <= 100.5


def test_micro_run_has_tool_use_end_to_end(micro_run):
    """The index and the tool-use data exist, nothing held out reached SFT (tool results included),
    and the SFT stage measured unseen entities without tools (micro's context is too short for the
    lookup questions themselves)."""
    index = manifest(micro_run, "index")["metrics"]
    assert index["shelf_cards_in_corpus"] == 0 and index["by_source"]["shelf"] == index["shelf_cards"] > 0
    assert (micro_run / "data" / "index" / "bm25" / "params.index.json").exists()
    synth = manifest(micro_run, "synth")["metrics"]
    tool_rows = synth["tool_conversations"]
    assert tool_rows["calculator"] > 0 and tool_rows["no_tool"] == 8
    assert tool_rows["lookup_practice"] > 0 and tool_rows["lookup_unanswerable"] > 0
    # the practice entities exist only on the shelf: named in no document, no fact and no invented question
    practice = [json.loads(line) for line in (micro_run / "data" / "index" / "practice.jsonl").open()]
    assert index["practice_entities"] == 8 == len({row["entity"] for row in practice})
    names = {row["entity"].lower() for row in practice}
    world_names = {json.loads(line)["entity"].lower() for line in (micro_run / "data" / "world" / "facts.jsonl").open()}
    assert not names & world_names
    lookup_eval = [json.loads(line) for line in (micro_run / "datasets" / "lookup_eval.jsonl").open()]
    assert not names & {row["entity"].lower() for row in lookup_eval}
    overlap = synth["overlap"]
    assert overlap["unseen_entities_named_in_training"] == 0 and overlap["held_out_leaks_in_tool_results"] == 0
    rows = [json.loads(line) for line in (micro_run / "datasets" / "sft.jsonl").read_text().splitlines()]
    assert sum("tools" in r for r in rows) == sum(v for k, v in tool_rows.items() if not k.startswith("skipped"))
    sft = manifest(micro_run, "sft")["metrics"]
    assert "unseen_test_idk_without_tools" in sft["figures"]
    # the shelf is not among the documents the tokenizer read
    shelf = [json.loads(line)["text"] for line in (micro_run / "data" / "index" / "shelf.jsonl").open()]
    docs = "\n".join(d["text"] for d in read_documents(micro_run / "data" / "clean"))
    assert shelf and not any(card in docs for card in shelf)
