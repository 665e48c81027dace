"""The stage graph that `lmforge run` walks: the STAGES table, fingerprints, and running a stage.

Each stage writes `stages/<stage>.json` (lmforge/rundir.py): its status, a fingerprint of the
config sections it reads and of its inputs, its metrics and its wall time. Like `make`, a
stage whose manifest is `done` with the same fingerprint is skipped; one left `running`
(killed) or `failed` with the same fingerprint resumes from its own checkpoint; anything else
runs from scratch.

    from lmforge.run import run_pipeline
    from lmforge.rundir import RunDir
    run_pipeline(cfg, RunDir("runs/tiny"), to_stage="pretrain")
"""
from __future__ import annotations

import hashlib
import importlib
import json
import sys
import time
import traceback
from typing import Callable

from . import progress
from .config import Config
from .errors import StageError
from .rundir import STAGE_NAMES, RunDir, Stage, StageContext, is_main_process, peak_memory_mb, versions

# The graph, in run order.
STAGES: list[Stage] = [
    Stage("collect", (), ("world", "collect"), "lmforge.data.collect:run_stage", "documents",
          "gather raw documents (by default: crawl the built-in world's web site) and the fact table"),
    Stage("clean", ("collect",), ("clean", "run.seed"), "lmforge.data.clean:run_stage", "kept",
          "extract, filter, remove personal data, deduplicate, mix: data/clean and data/removed"),
    Stage("tokenizer", ("clean",), ("tokenizer", "run.seed"), "lmforge.tokenizer.stage:run_stage",
          "bytes_per_token", "train byte-level BPE and write train/val token shards"),
    Stage("pretrain", ("tokenizer",), ("model", "pretrain", "run.seed", "report.fact_eval_limit"),
          "lmforge.train.pretrain:run_stage", "fact_accuracy", "next-token prediction: the base model"),
    Stage("reasoning", ("collect",), ("reasoning", "world.languages"), "lmforge.tasks.reasoning:run_stage",
          "problems", "make verifiable arithmetic word problems: RL prompts, worked SFT examples, held-out tests"),
    Stage("index", ("clean",), ("tools.lookup_corpus", "tools.lookup_sources", "tools.lookup_practice",
                               "tools.lookup_practice_mix", "world.languages"),
          "lmforge.tools.lookup:run_stage", "passages",
          "the lookup tool's BM25 index: cleaned corpus, the world's reference shelf, your documents"),
    Stage("synth", ("collect", "pretrain"), ("synth", "tools", "world.languages"), "lmforge.tasks.synth:run_stage",
          "conversations", "make instruction-tuning conversations from the fact table (and tool-use ones)",
          uses=("reasoning", "index")),
    Stage("sft", ("pretrain", "synth"), ("sft", "run.seed"), "lmforge.train.sft:run_stage",
          "held_out_fact_accuracy", "supervised fine-tuning: the chat model"),
    Stage("preferences", ("collect", "sft"), ("preferences", "world.languages"), "lmforge.tasks.preferences:run_stage",
          "pairs", "preference pairs: the SFT model's answers judged by the automatic annotator "
          "(or by people with `lmforge label`)"),
    Stage("reward", ("sft", "preferences"), ("reward", "run.seed"), "lmforge.train.reward:run_stage",
          "held_out_accuracy", "reward model: the chat model with a scalar head, Bradley-Terry on preference pairs"),
    Stage("ppo", ("sft", "reward", "preferences"), ("ppo", "run.seed"), "lmforge.train.ppo:run_stage",
          "win_rate", "RLHF: PPO against the reward model with a KL leash to the SFT model"),
    Stage("dpo", ("sft", "preferences"), ("dpo", "run.seed"), "lmforge.train.dpo:run_stage",
          "win_rate", "direct preference optimization (DPO / IPO) on the preference pairs"),
    Stage("grpo", ("sft", "reasoning"), ("grpo", "tools", "run.seed"), "lmforge.train.grpo:run_stage",
          "held_out_pass_at_1", "reasoning RL with verifiable rewards (GRPO): the reasoning model"),
    Stage("report", ("pretrain",), ("report", "generate"), "lmforge.evals.report:run_stage",
          "sections", "write the report card", uses=("sft", "reward", "ppo", "dpo", "grpo")),
]
# Stages import lmforge/rundir.py, not this module, so the order is written there too.
if tuple(s.name for s in STAGES) != STAGE_NAMES:
    raise RuntimeError("lmforge/run.py STAGES and lmforge/rundir.py STAGE_NAMES list different stages")


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise StageError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")


def _barrier() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def fingerprint(run: RunDir, cfg: Config, stage: Stage) -> tuple[str, dict]:
    """Hash of the stage's config sections plus the identity of each upstream output."""
    inputs = {}
    for upstream in stage.needs:
        manifest = run.read_manifest(upstream)
        if not manifest or manifest.get("status") != "done":
            raise StageError(f"stage {stage.name!r} needs {upstream!r}, which has not finished in {run.root}; "
                             f"run `lmforge run --run-dir {run.root} --to {upstream}` first")
        inputs[upstream] = manifest["output_id"]
    for upstream in stage.uses:
        manifest = run.read_manifest(upstream)
        if manifest and manifest.get("status") == "done":
            inputs[upstream] = manifest["output_id"]
    config_hash = cfg.section_hash(*stage.config_keys)
    blob = json.dumps({"config": config_hash, "inputs": inputs}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16], {"config_hash": config_hash, "inputs": inputs}


def stage_state(run: RunDir, cfg: Config, stage: Stage) -> str:
    """done | resume | fresh — what running this stage now would do."""
    manifest = run.read_manifest(stage.name)
    try:
        fp, _ = fingerprint(run, cfg, stage)
    except StageError:
        return "fresh"
    if not manifest or manifest.get("fingerprint") != fp:
        return "fresh"
    if manifest.get("status") == "done":
        return "done"
    return "resume" if manifest.get("status") in ("running", "failed") else "fresh"


def execute_stage(run: RunDir, cfg: Config, stage: Stage, force: bool = False, estimate: dict | None = None) -> dict:
    """Run one stage (skipping it when it is up to date) and return its manifest."""
    from .train import trackers   # TensorBoard / W&B for the training loop inside, when configured
    trackers.check(cfg.track.loggers)    # a logger whose library is missing: one line, before any work
    fp, parts = fingerprint(run, cfg, stage)
    state = stage_state(run, cfg, stage)
    if state == "done" and not force:
        print(f"[{stage.name}] up to date, skipped", file=sys.stderr)
        return run.read_manifest(stage.name)
    resume = state == "resume" and not force
    _barrier()   # under torchrun every rank decides before rank 0 rewrites the manifest
    started = time.time()
    manifest = {"stage": stage.name, "status": "running", "fingerprint": fp, **parts,
                "started_at": started, "resumed": resume, "versions": versions()}
    if estimate:    # what `lmforge run` expected, to set beside what happened
        manifest["estimate"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in estimate.items()}
    run.write_manifest(stage.name, manifest)
    module_name, func_name = stage.entry.split(":")
    func: Callable[[StageContext], dict] = getattr(importlib.import_module(module_name), func_name)
    try:
        with trackers.session(cfg.track, run.root, cfg.run.name, cfg.to_dict()):
            metrics = func(StageContext(run=run, cfg=cfg, stage=stage, resume=resume)) or {}
    except BaseException as err:
        manifest.update(status="failed", error=f"{type(err).__name__}: {err}",
                        wall_seconds=round(time.time() - started, 2))
        if not isinstance(err, (StageError, KeyboardInterrupt)):
            manifest["traceback"] = traceback.format_exc(limit=8)
        run.write_manifest(stage.name, manifest)
        raise
    finished = time.time()
    manifest.update(status="done", metrics=metrics, finished_at=finished,
                    wall_seconds=round(finished - started, 2), peak_memory_mb=peak_memory_mb(),
                    output_id=hashlib.sha256(f"{fp}:{finished}".encode()).hexdigest()[:16])
    run.write_manifest(stage.name, manifest)
    return manifest


def select_stages(from_stage: str | None, to_stage: str | None) -> list[Stage]:
    names = list(STAGE_NAMES)
    start = names.index(get_stage(from_stage).name) if from_stage else 0
    end = names.index(get_stage(to_stage).name) if to_stage else len(names) - 1
    if start > end:
        raise StageError(f"--from {from_stage} comes after --to {to_stage}")
    return STAGES[start:end + 1]


def run_pipeline(cfg: Config, run: RunDir, from_stage: str | None = None, to_stage: str | None = None) -> list[dict]:
    """Walk the graph. Stages before --from are brought up to date too (make-like);
    --from forces that stage and every later selected one to run again."""
    run.root.mkdir(parents=True, exist_ok=True)
    run.save_config(cfg)
    upto = select_stages(None, to_stage)
    forced = {s.name for s in select_stages(from_stage, to_stage)} if from_stage else set()
    plan = {}
    if cfg.run.estimate and is_main_process():
        plan = announce_estimate(run, cfg, [s.name for s in upto if s.name in forced
                                            or stage_state(run, cfg, s) != "done"])
    results = []
    try:
        for stage in upto:
            results.append(execute_stage(run, cfg, stage, force=stage.name in forced, estimate=plan.get(stage.name)))
    finally:
        progress.clear()
    return results


def announce_estimate(run: RunDir, cfg: Config, names: list[str]) -> dict:
    """Time a few real steps of the stages about to run, print the estimate, and give the
    progress bars the whole run's plan (lmforge/estimate.py)."""
    if not names:
        return {}
    from .estimate import estimate_run, format_estimate
    plan = estimate_run(cfg, run, names)
    for line in format_estimate(plan, cfg, cfg.run.reference_minutes):
        print(f"[run] {line}", file=sys.stderr, flush=True)
    progress.set_plan({k: v for k, v in plan.items() if not k.startswith("_")}, names)
    return plan
