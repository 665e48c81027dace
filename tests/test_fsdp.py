"""FSDP2 and sharded (DCP) checkpoints on CPU: 2 gloo processes under torchrun (c10d rendezvous,
as a multi-node launch uses) against 1 process, Muon included.

Bars (issue 21): the 2-process losses equal the 1-process ones within 1e-4 relative over 20
steps; a checkpoint saved by 2 processes resumes in 1, and one saved by 1 resumes in 2, with
the next loss within 1e-6 relative of the run that did not stop; a checkpoint from another
model shape is one line; the checkpoint converts to the model.safetensors other commands read.
"""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

from lmforge.checkpoints import load_model
from lmforge.train.loop import CheckpointError
from lmforge.train.sharded import convert_checkpoint, latest_checkpoint

from .conftest import ROOT
from .fsdp_worker import losses, train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def test_fsdp_matches_one_process_and_checkpoints_reshard(tmp_path):
    pytest.importorskip("torch.distributed.fsdp")
    work = tmp_path
    train(work / "one", 10)
    shutil.copytree(work / "one", work / "one_to_two")      # a 1-process checkpoint at step 10
    train(work / "one", 20)

    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
                           str(ROOT / "tests" / "fsdp_worker.py"), str(work)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    shutil.copytree(work / "two_at_10", work / "two_to_one")  # a 2-process checkpoint at step 10
    assert sorted(p.name for p in latest_checkpoint(work / "two_to_one").glob("*.distcp")) == \
        ["__0_0.distcp", "__1_0.distcp"]                       # sharded: one file per rank
    train(work / "two_to_one", 20)

    one, two = losses(work / "one"), losses(work / "two")
    assert sorted(one) == sorted(two) == list(range(1, 21))
    assert one[20] < one[1] - 0.5                              # it learns
    worst = max(relative(two[s], one[s]) for s in one)
    assert worst <= 1e-4, worst
    # resumed at another world size: the next loss as the run that went on, then the same course
    one_to_two, two_to_one = losses(work / "one_to_two"), losses(work / "two_to_one")
    assert relative(one_to_two[11], one[11]) <= 1e-6, (one_to_two[11], one[11])
    assert relative(two_to_one[11], two[11]) <= 1e-6, (two_to_one[11], two[11])
    assert max(relative(one_to_two[s], one[s]) for s in range(11, 21)) <= 1e-4
    assert max(relative(two_to_one[s], two[s]) for s in range(11, 21)) <= 1e-4
    # Muon on uneven row shards (5 rows on 2 ranks) is Muon on the whole matrices
    assert json.loads((work / "muon.json").read_text())["max_abs_difference"] < 1e-5

    # the latest checkpoint -> the one safetensors file; step 20 was also the best validation,
    # so it equals the stage's output weights
    out = work / "converted"
    assert convert_checkpoint(work / "two", out) == 20
    best = json.loads((work / "two" / "log.jsonl").read_text().splitlines()[-1])
    assert best["step"] == 20 and best["val_loss"] == min(r.get("val_loss", 9e9) for r in map(
        json.loads, (work / "two" / "log.jsonl").read_text().splitlines()))
    converted, saved = load_model(out).state_dict(), load_model(work / "two").state_dict()
    for name, tensor in saved.items():
        assert torch.equal(converted[name], tensor), name

    # a checkpoint from another model shape: one line naming the tensor
    shutil.copytree(work / "one", work / "wider")
    with pytest.raises(CheckpointError) as err:
        train(work / "wider", 30, d_model=64)
    message = str(err.value)
    assert "\n" not in message and "different model shape" in message and "embed.weight" in message
