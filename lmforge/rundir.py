"""One run folder: its artifact paths, manifests and saved config, and what a stage function receives.

    from lmforge.rundir import RunDir, StageContext, STAGE_NAMES
    run = RunDir("runs/tiny")
    run.model_dir("sft"), run.read_manifest("pretrain"), run.load_config()

A run is a folder. Each stage writes `stages/<stage>.json` (lmforge/run.py decides when a stage
runs and what its manifest holds); its artifacts live under the paths named here. Stages import
this module, never lmforge/run.py, which imports them.
"""
from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import Config, dump_yaml, load_config
from .files import atomic_write_json, atomic_write_text

# The stages in run order; lmforge/run.py's STAGES table is checked against it on import.
STAGE_NAMES: tuple[str, ...] = ("collect", "clean", "tokenizer", "pretrain", "reasoning", "index", "synth", "sft",
                                "preferences", "reward", "ppo", "dpo", "grpo", "report")


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]          # upstream stages whose artifacts this one reads
    config_keys: tuple[str, ...]    # config sections (or section.key) that decide its output
    entry: str                      # "module:function", imported only when the stage runs (lmforge/run.py)
    headline: str                   # the metric `lmforge status` shows
    about: str
    uses: tuple[str, ...] = ()      # optional upstream stages: part of the fingerprint when they are done


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class RunDir:
    """Named paths inside one run folder, and its manifests."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    # artifacts ---------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path("config.yaml")

    @property
    def world_dir(self) -> Path:
        return self.path("data", "world")

    @property
    def raw_dir(self) -> Path:
        return self.path("data", "raw")

    @property
    def tokens_dir(self) -> Path:
        return self.path("data", "tokens")

    @property
    def tokenizer_dir(self) -> Path:
        return self.path("tokenizer")

    @property
    def report_dir(self) -> Path:
        return self.path("report")

    def documents_dir(self) -> Path:
        """Where training text comes from: data/clean once a clean stage has run, else data/raw."""
        clean = self.path("data", "clean")
        manifest = self.read_manifest("clean")
        return clean if manifest and manifest.get("status") == "done" else self.raw_dir

    def model_dir(self, stage: str) -> Path:
        return self.path("models", stage)

    def log_path(self, stage: str) -> Path:
        return self.path("logs", f"{stage}.jsonl")

    # manifests ---------------------------------------------------------------
    def manifest_path(self, stage: str) -> Path:
        return self.path("stages", f"{stage}.json")

    def read_manifest(self, stage: str) -> dict | None:
        path = self.manifest_path(stage)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {"status": "corrupt"}

    def write_manifest(self, stage: str, manifest: dict) -> None:
        if is_main_process():
            atomic_write_json(self.manifest_path(stage), manifest)

    def load_config(self) -> Config:
        return load_config(None, base=self.config_path)

    def save_config(self, cfg: Config) -> None:
        if is_main_process():
            atomic_write_text(self.config_path, dump_yaml(cfg))

    def latest_model_stage(self) -> str | None:
        """The last stage in graph order that finished and wrote a model."""
        found = None
        for name in STAGE_NAMES:
            manifest = self.read_manifest(name)
            if manifest and manifest.get("status") == "done" and (self.model_dir(name) / "model.safetensors").exists():
                found = name
        return found


@dataclass
class StageContext:
    """What a stage function receives."""
    run: RunDir
    cfg: Config
    stage: Stage
    resume: bool    # an earlier attempt with the same fingerprint left a checkpoint to continue from

    def progress(self, message: str) -> None:
        if is_main_process():
            print(f"[{self.stage.name}] {message}", file=sys.stderr, flush=True)


def versions() -> dict:
    import torch
    from . import __version__
    return {"lmforge": __version__, "python": platform.python_version(), "torch": torch.__version__}


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
