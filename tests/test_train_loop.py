"""The shared training loop: exact resume after kill -9, DDP equals one process, safe checkpoints."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from lmforge.config import TrainConfig
from lmforge.train.loop import CheckpointError, Trainer
from lmforge.train.optim import lr_multiplier

from .conftest import ROOT, lmforge


def final_weights(run_dir):
    state = torch.load(run_dir / "models" / "pretrain" / "trainer_state.pt", weights_only=True)
    return state["step"], state["model"]


def log_rows(run_dir):
    return [json.loads(line) for line in (run_dir / "logs" / "pretrain.jsonl").read_text().splitlines()]


def test_kill_9_then_resume_gives_identical_weights(micro_run, tmp_path):
    settings = ["pretrain.max_steps=300", "pretrain.checkpoint_every=20", "pretrain.eval_every=50",
                "pretrain.patience=0", "pretrain.max_minutes=0"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for target in (reference, killed):
        shutil.copytree(micro_run, target)
    lmforge("pretrain", "--run-dir", str(reference), *settings, "--force")

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "pretrain", "--run-dir", str(killed), *settings,
                             "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / "logs" / "pretrain.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:   # wait until a checkpoint exists and training has moved past it
        if log.exists() and (killed / "models/pretrain/trainer_state.pt").exists():
            rows = log.read_text().splitlines()
            if rows and json.loads(rows[-1])["step"] >= 130:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at, _ = final_weights(killed)
    assert 0 < stopped_at < 300, "the kill must land mid-training"
    assert json.loads((killed / "stages" / "pretrain.json").read_text())["status"] == "running"

    out = lmforge("pretrain", "--run-dir", str(killed), *settings)     # no --force: resume
    assert "up to date" not in out.stderr
    assert json.loads((killed / "stages" / "pretrain.json").read_text())["resumed"] is True
    step_a, weights_a = final_weights(reference)
    step_b, weights_b = final_weights(killed)
    assert step_a == step_b == 300
    for name, tensor in weights_a.items():
        assert torch.equal(tensor, weights_b[name]), name
    assert [r["loss"] for r in log_rows(reference)] == [r["loss"] for r in log_rows(killed)]


def test_ddp_two_processes_match_one(micro_run, tmp_path):
    """2 gloo processes x batch 4 vs 1 process x batch 8: same global batch, same losses.
    Tolerance: 1e-4 relative on each loss; only the order of floating-point sums differs."""
    pytest.importorskip("torch.distributed.run")
    single, double = tmp_path / "single", tmp_path / "double"
    for target in (single, double):
        shutil.copytree(micro_run, target)
    common = ["pretrain.max_steps=15", "pretrain.eval_every=5", "pretrain.patience=0", "pretrain.grad_accum=2"]
    lmforge("pretrain", "--run-dir", str(single), *common, "pretrain.batch_size=8", "--force")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "lmforge", "pretrain", "--run-dir", str(double), *common,
                           "pretrain.batch_size=4", "--force"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = log_rows(single), log_rows(double)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 16))
    for ra, rb in zip(a, b):
        assert ra["items"] == rb["items"]
        assert abs(ra["loss"] - rb["loss"]) <= 1e-4 * ra["loss"], (ra, rb)
        if "val_loss" in ra:
            assert abs(ra["val_loss"] - rb["val_loss"]) <= 1e-4 * ra["val_loss"]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_checkpoint_is_an_error_naming_the_file(micro_copy, damage):
    path = micro_copy / "models" / "pretrain" / "trainer_state.pt"
    data = path.read_bytes()
    path.write_bytes(b"not a checkpoint at all" if damage == "garbage" else data[: len(data) // 2])
    manifest_path = micro_copy / "stages" / "pretrain.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["status"] = "running"       # as if the process had been killed
    manifest_path.write_text(json.dumps(manifest))
    proc = lmforge("pretrain", "--run-dir", str(micro_copy), check=False)
    assert proc.returncode == 1
    assert str(path) in proc.stderr and "corrupt or truncated" in proc.stderr
    assert path.stat().st_size != len(data) or damage == "garbage"   # never overwritten by a fresh start


class TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.proj = torch.nn.Linear(4, 4, bias=False)


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    trainer = Trainer(TinyModel(), TrainConfig(), out_dir=tmp_path, log_path=tmp_path / "log.jsonl", device="cpu")
    trainer.step = 7
    trainer.save_checkpoint()
    good = trainer.checkpoint_path.read_bytes()

    def broken_save(obj, path):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", broken_save)
    trainer.step = 8
    with pytest.raises(OSError):
        trainer.save_checkpoint()
    assert trainer.checkpoint_path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["trainer_state.pt"]   # no temp file left behind
    monkeypatch.undo()
    fresh = Trainer(TinyModel(), TrainConfig(), out_dir=tmp_path, log_path=tmp_path / "log.jsonl", device="cpu")
    assert fresh.load_checkpoint() and fresh.step == 7


def test_checkpoint_error_type(tmp_path):
    (tmp_path / "trainer_state.pt").write_bytes(b"\x00" * 10)
    trainer = Trainer(TinyModel(), TrainConfig(), out_dir=tmp_path, log_path=tmp_path / "l.jsonl", device="cpu")
    with pytest.raises(CheckpointError, match="trainer_state.pt"):
        trainer.load_checkpoint()


def test_schedules():
    cfg = TrainConfig(warmup_steps=10, schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.0)
    assert lr_multiplier(0, cfg, 100) == pytest.approx(0.1)
    assert lr_multiplier(50, cfg, 100) == 1.0
    assert lr_multiplier(90, cfg, 100) == pytest.approx(0.5)
    # a time budget 90 % spent decays the rate as far as 90 % of the steps would
    assert lr_multiplier(20, cfg, 100, time_fraction=0.9) == pytest.approx(0.5)
    cos = TrainConfig(warmup_steps=0, schedule="cosine", min_lr_ratio=0.1)
    assert lr_multiplier(0, cos, 100) == pytest.approx(1.0)
    assert lr_multiplier(100, cos, 100) == pytest.approx(0.1)


def test_a_stage_cut_short_by_max_minutes_says_so(micro_copy):
    """The budget is steps; a max_minutes cap that stops a stage early is marked in the manifest,
    in `lmforge status` and in the stage's closing line."""
    proc = lmforge("pretrain", "--run-dir", str(micro_copy), "pretrain.max_steps=100000", "pretrain.max_minutes=0.005",
                   "pretrain.eval_every=5", "--force")
    metrics = json.loads((micro_copy / "stages" / "pretrain.json").read_text())["metrics"]
    assert metrics["cut_short"] is True and metrics["stop_reason"] == "max_minutes"
    assert metrics["planned_steps"] == 100000 and 0 < metrics["steps"] < 100000
    assert "CUT SHORT by max_minutes" in proc.stderr
    status = lmforge("status", "--run-dir", str(micro_copy)).stdout
    assert f"CUT {metrics['steps']}/100000" in status and "pretrain: cut short by pretrain.max_minutes" in status
    lmforge("pretrain", "--run-dir", str(micro_copy), "pretrain.max_minutes=0", "pretrain.max_steps=30",
            "pretrain.patience=0", "--force")
    metrics = json.loads((micro_copy / "stages" / "pretrain.json").read_text())["metrics"]
    assert metrics["cut_short"] is False and metrics["steps"] == metrics["planned_steps"] == 30
    assert "CUT" not in lmforge("status", "--run-dir", str(micro_copy)).stdout


@pytest.mark.parametrize("toward", [False, True])
def test_eval_start_keeps_the_starting_weights_unless_training_beats_them(tmp_path, toward):
    """With eval_start the starting weights are a candidate output: a run whose validation
    only gets worse ends with them (best_step 0); one that improves ends with its best step."""
    torch.manual_seed(0)
    model = TinyModel()
    start = model.proj.weight.detach().clone()
    target = start + (0.5 if toward else -0.5)
    saved = {}
    cfg = TrainConfig(max_steps=6, eval_every=2, patience=0, warmup_steps=0, lr=0.05, matrix_lr=0.05)
    trainer = Trainer(model, cfg, out_dir=tmp_path, log_path=tmp_path / "log.jsonl", device="cpu",
                      save_fn=lambda m, _: saved.update(w=m.proj.weight.detach().clone()))

    def loss_fn(m, batch):   # pulls proj.weight toward start + 0.5
        return ((m.proj.weight - (start + 0.5)) ** 2).sum()

    def step_fn(step):
        return {"loss": trainer.train_step([{"n_items": 1}], loss_fn)}

    def eval_fn(m):
        return float(((m.proj.weight - target) ** 2).sum())

    result = trainer.run(step_fn, eval_fn=eval_fn, eval_start=True)
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rows[0]["step"] == 0 and "val_loss" in rows[0]
    if toward:
        assert result.best_step == 6 and not torch.equal(saved["w"], start)
    else:
        assert result.best_step == 0 and torch.equal(saved["w"], start)


def test_fit_reports_the_share_of_time_spent_making_batches(tmp_path):
    """The data-loader wait: fit times batch_fn, and the manifest's budget metrics carry the
    share. A batch_fn that sleeps 0.2 s beside a step of a 2x2 matrix is most of the time;
    a plain run() (RL stages: no batch_fn) reports none."""
    from lmforge.train.loop import budget_metrics
    torch.manual_seed(0)
    cfg = TrainConfig(max_steps=3, warmup_steps=0, lr=0.01, matrix_lr=0.01, optimizer="adamw")
    trainer = Trainer(TinyModel(), cfg, out_dir=tmp_path, log_path=tmp_path / "log.jsonl", device="cpu",
                      save_fn=lambda m, _: None)

    def slow_batch(step, micro, rank, world_size):
        time.sleep(0.2)
        return {"n_items": 1}

    result = trainer.fit(slow_batch, lambda m, batch: (m.proj.weight ** 2).sum(), resume=False)
    assert 0.5 < result.data_wait_share <= 1.0
    assert budget_metrics(result)["data_wait_share"] == result.data_wait_share
    other = Trainer(TinyModel(), cfg, out_dir=tmp_path / "b", log_path=tmp_path / "b.jsonl", device="cpu",
                    save_fn=lambda m, _: None)
    plain = other.run(lambda step: {"loss": other.train_step([{"n_items": 1}], lambda m, b: (m.proj.weight ** 2).sum())})
    assert plain.data_wait_share is None and "data_wait_share" not in budget_metrics(plain)
