"""TensorBoard and W&B trackers beside the JSONL logs (lmforge/train/trackers.py): what they hold
is read back with their own readers (TensorBoard's EventAccumulator; W&B's offline run file
through its protobuf records) and equals the JSONL log; a resume drops the same rows from both;
turning trackers on re-runs no stage; a missing library is one line naming the extra.

    python -m pytest tests/test_trackers.py -q
"""
from __future__ import annotations

import dataclasses
import json
import struct
import sys

import pytest
import torch

from lmforge.cli import main
from lmforge.config import ConfigError, TrackConfig, TrainConfig, load_config
from lmforge.run import STAGES
from lmforge.train import trackers
from lmforge.train.loop import Trainer

from .conftest import lmforge


class Crash(RuntimeError):
    pass


def train(root, steps: int, loggers: list, crash_at: int | None = None, resume: bool = True) -> list[dict]:
    """A small model through the one training loop inside a tracking session, as run_stage
    opens one; returns the JSONL log's rows."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False))
    target = torch.full((4, 4), 0.5)
    cfg = TrainConfig(max_steps=steps, eval_every=4, checkpoint_every=5, log_every=2, patience=0, warmup_steps=0,
                      lr=0.05, matrix_lr=0.05)
    log_path = root / "logs" / "pretrain.jsonl"
    trainer = Trainer(model, cfg, out_dir=root / "models" / "pretrain", log_path=log_path, device="cpu",
                      stage="pretrain")

    def loss_fn(m, batch):
        return ((m[0].weight - target) ** 2).sum()

    def step_fn(step):
        if step == crash_at:
            raise Crash(step)
        loss = trainer.train_step([{"n_items": 1}], loss_fn)
        return {"loss": loss, "weights": {"norm": float(model[0].weight.detach().norm())}, "note": "text is not a scalar"}

    config = {"pretrain": dataclasses.asdict(cfg), "serve": {"api_key": "secret-key", "port": 8000}}
    with trackers.session(TrackConfig(loggers=loggers), root, "t", config):
        trainer.run(step_fn, eval_fn=lambda m: float(((m[0].weight - target) ** 2).sum()), resume=resume)
    return [json.loads(line) for line in log_path.read_text().splitlines()]


def tensorboard_scalars(folder) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder))
    events.Reload()
    out = {}
    for tag in events.Tags()["scalars"]:
        steps = [e.step for e in events.Scalars(tag)]
        assert len(steps) == len(set(steps)), (tag, steps)        # one value per step, a resume included
        out[tag] = {e.step: e.value for e in events.Scalars(tag)}
    return out


def column(rows: list[dict], key: str) -> dict[int, float]:
    """{step: value} of a field ("a/b" is row["a"]["b"]) in the rows that have it."""
    head, _, inner = key.partition("/")
    return {r["step"]: r[head][inner] if inner else r[head] for r in rows if head in r}


def test_tensorboard_holds_the_log_rows_and_a_resume_drops_the_same_ones(tmp_path):
    pytest.importorskip("tensorboard")
    with pytest.raises(Crash):               # killed after step 8; the last checkpoint is step 5
        train(tmp_path, 12, ["tensorboard"], crash_at=8)
    rows = train(tmp_path, 12, ["tensorboard"])
    assert [r["step"] for r in rows] == list(range(1, 13))
    scalars = tensorboard_scalars(tmp_path / "tensorboard" / "pretrain")
    assert {"loss", "val_loss", "lr_multiplier", "items", "weights/norm", "items_per_second"} <= set(scalars)
    assert "note" not in scalars and "step" not in scalars
    for key in ("loss", "val_loss", "weights/norm", "items_per_second"):
        logged = column(rows, key)
        assert sorted(scalars[key]) == sorted(logged), key        # steps 6-8 of the first try are gone
        for step, value in logged.items():
            assert scalars[key][step] == pytest.approx(value, rel=1e-6), (key, step)
    assert sorted(column(rows, "val_loss")) == [4, 8, 12]

    rows = train(tmp_path, 3, ["tensorboard"], resume=False)      # a fresh start: the old events go too
    assert tensorboard_scalars(tmp_path / "tensorboard" / "pretrain")["loss"] == pytest.approx(column(rows, "loss"))


def wandb_records(path) -> list:
    """Every record of a W&B offline run file: a 7-byte header (':W&B', 0xBEE1, version), then
    LevelDB's log format (32 KiB blocks of chunks: crc32c, length, type) holding protobuf Records."""
    from wandb.proto.wandb_internal_pb2 import Record
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, records, pending = 32768, 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:        # too little room for a chunk header: the block is padded
            pos += block - pos % block
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):                 # FULL or LAST chunk: a whole record
            records.append(Record.FromString(pending))
            pending = b""
    return records


def test_wandb_offline_run_holds_the_log_rows(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONFIG_DIR": tmp_path / "config",
                        "WANDB_CACHE_DIR": tmp_path / "cache", "WANDB_DATA_DIR": tmp_path / "data"}.items():
        monkeypatch.setenv(name, str(value))
    rows = train(tmp_path, 6, ["wandb"])
    run_files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    records = wandb_records(run_files[0])
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run.display_name == "t/pretrain" and run.run_group == "t" and run.job_type == "pretrain"
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["serve"] == {"port": 8000} and config["pretrain"]["max_steps"] == 6    # no secrets sent
    assert b"secret-key" not in run_files[0].read_bytes()
    history = [{"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    assert [h["step"] for h in history] == [r["step"] for r in rows] == list(range(1, 7))
    for logged, row in zip(history, rows):
        assert logged["loss"] == pytest.approx(row["loss"], rel=1e-9)
        assert logged["weights/norm"] == pytest.approx(row["weights"]["norm"], rel=1e-9)
        assert ("val_loss" in logged) == ("val_loss" in row) and "note" not in logged


def test_trackers_are_in_no_fingerprint(micro_copy):
    """Turning trackers on changes no stage's fingerprint: a finished run stays up to date."""
    default = load_config("micro")
    tracked = load_config("micro", ["track.loggers=[tensorboard,wandb]", "track.wandb_mode=offline",
                                    "track.wandb_project=x", "track.tensorboard_dir=/elsewhere"])
    for stage in STAGES:
        assert not any(key.split(".")[0] == "track" for key in stage.config_keys), stage.name
        assert default.section_hash(*stage.config_keys) == tracked.section_hash(*stage.config_keys), stage.name
    out = lmforge("run", "--run-dir", str(micro_copy), "track.loggers=[tensorboard]").stderr
    assert out.count("up to date, skipped") == len(STAGES), out[-2000:]
    assert not (micro_copy / "tensorboard").exists()


def test_a_stage_run_from_the_command_line_writes_its_rows(micro_copy, tmp_path):
    pytest.importorskip("tensorboard")
    folder = tmp_path / "tensorboard"        # a folder of one's own: one subfolder per run, then per stage
    lmforge("reward", "--run-dir", str(micro_copy), "--force", "track.loggers=[tensorboard]",
            f"track.tensorboard_dir={folder}")
    rows = [json.loads(line) for line in (micro_copy / "logs" / "reward.jsonl").read_text().splitlines()]
    scalars = tensorboard_scalars(folder / "micro" / "reward")
    assert scalars["loss"] == pytest.approx(column(rows, "loss"), rel=1e-6) and len(scalars["loss"]) == 6
    assert [p.relative_to(folder).as_posix() for p in folder.glob("*/*")] == ["micro/reward"]


def test_unknown_logger_and_missing_library_are_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match=r"unknown logger 'mlflow'; choose from \['tensorboard', 'wandb'\]"):
        load_config("micro", ["track.loggers=[mlflow]"])
    monkeypatch.setitem(sys.modules, "wandb", None)      # as if it were not installed
    code = main(["collect", "--run-dir", str(tmp_path / "run"), "--preset", "micro", "track.loggers=[wandb]"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err == "lmforge: config error: track.loggers: wandb is not installed; pip install 'lmforge[track]'"
    assert not (tmp_path / "run" / "stages").exists()       # stopped before any stage started
