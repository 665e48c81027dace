"""Shared fixtures: one micro run of the whole pipeline, reused by the tests that read it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lmforge(*args: str, cwd=None, check=True, env_extra=None, timeout=600) -> subprocess.CompletedProcess:
    """Run the real `lmforge` command line in a subprocess."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-m", "lmforge", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lmforge {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> Path:
    """runs/micro after `lmforge run --preset micro` (the whole pipeline as it stands)."""
    run_dir = tmp_path_factory.mktemp("runs") / "micro"
    lmforge("run", "--preset", "micro", "--run-dir", str(run_dir))
    return run_dir


@pytest.fixture
def micro_copy(micro_run, tmp_path) -> Path:
    """A private copy of the micro run that a test may change."""
    target = tmp_path / "micro"
    shutil.copytree(micro_run, target)
    return target
