"""`lmforge eval` split across ranks (lmforge/evals/standard.py): 2 gloo processes under
torchrun (c10d rendezvous, as tests/test_fsdp.py launches them) give the scores 1 process
gives on every task's fixtures (tests/fixtures/evals), uneven shares included (3 ARC-Challenge
items on 2 ranks).

    python -m pytest tests/test_eval_ranks.py -q
"""
import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT, lmforge
from .test_fsdp import free_port
from .test_standard_eval import FIXTURES

SETTINGS = [f"eval.data_dir={FIXTURES}", "eval.gsm8k_max_new_tokens=16", "eval.bpb_windows=8", "eval.batch_size=4"]


def scores(results: dict) -> dict:
    """Every figure of every task, without its timing."""
    return {task: {k: v for k, v in value.items() if k != "seconds"} for task, value in results["tasks"].items()}


def test_eval_on_two_ranks_gives_the_one_process_scores(micro_copy):
    pytest.importorskip("torch.distributed")
    out = micro_copy / "evals" / "pretrain.json"
    lmforge("eval", "--run-dir", str(micro_copy), "--stage", "pretrain", *SETTINGS)
    one = json.loads(out.read_text())
    out.unlink()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
                           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
                           "-m", "lmforge", "eval", "--run-dir", str(micro_copy), "--stage", "pretrain", *SETTINGS],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    two = json.loads(out.read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert one["skipped"] == two["skipped"] == {}
    assert {t: v["n"] for t, v in one["tasks"].items() if t != "bpb"} == \
        {"hellaswag": 4, "arc_easy": 4, "arc_challenge": 3, "mmlu": 5, "gsm8k": 4}
    a, b = scores(one), scores(two)
    # bits per byte: the same windows, summed in another order (rounded to 4 decimals)
    assert b.pop("bpb")["bpb"] == pytest.approx(a.pop("bpb")["bpb"], abs=1e-4)
    # GSM8K's examples are rank 0's first answers (problems 0 and 2 of 4 on two ranks): the same
    # greedy answers as one process gave those problems
    shown = {e["question"]: e for e in a["gsm8k"].pop("examples")}
    examples = b["gsm8k"].pop("examples")
    assert len(examples) == 2 and all(shown[e["question"]] == e for e in examples)
    assert a == b                     # right answers, n, rates, intervals, centred figures: equal
    assert one["core_centred_average"] == two["core_centred_average"]
