"""The one training loop that every gradient stage uses (pretrain, sft, reward, dpo, ppo, grpo, distill).

A supervised stage supplies three things and `fit` does the rest:

    batch_fn(step, micro_step, rank, world_size) -> dict   # this process's micro-batch;
                                                            # must hold "n_items" (tokens, pairs, ...)
    loss_fn(model, batch) -> Tensor                         # SUM of the loss over the batch's items
    eval_fn(model) -> float                                 # validation loss, lower is better

    trainer = Trainer(model, cfg.pretrain, out_dir=run.model_dir("pretrain"),
                      log_path=run.log_path("pretrain"), seed=cfg.run.seed)
    result = trainer.fit(batch_fn, loss_fn, eval_fn, resume=True)

A stage with work between updates (RL: rollouts, rewards) gives `run` a step function
instead, which does one step's work and calls `train_step` for the update; the loop still
owns the step counter, time, schedule, logs, checkpoints, budgets and early stopping:

    result = trainer.run(lambda step: ppo_step(...), resume=ctx.resume)   # returns a log row

What lives here, once: the optimizers and the learning-rate schedule (from `optim.py`),
gradient accumulation, clipping, bf16 autocast where bf16 is fast, optional torch.compile,
DDP under torchrun, validation with early stopping, atomic checkpoints (model, optimizer,
RNG, step, early-stopping state) and exact resume, JSONL logs, the planned-vs-done budget
account, and a progress bar with tokens/s, MFU, the stage's ETA and the whole run's.

Budgets are steps (`max_steps`); `max_minutes` is an optional cap, and a stage it cuts
short says so (`budget_metrics`: planned steps, steps done, why it stopped).

Because batches are a pure function of the step, resuming after kill -9 replays the
exact same data, and a run on N processes sees the same global batch as one process.
Each micro-batch's summed loss is divided by the item count of the *global* batch, so
the gradient is the same however the batch is split across accumulation steps and ranks.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from .. import progress
from ..config import TrainConfig
from ..engine import fast_path
from ..device import Precision, all_reduce_sums, init_distributed, peak_flops, pick_device, train_precision
from ..files import atomic_path, atomic_write_text
from . import sharded, trackers
from .optim import build_optimizers, lr_multiplier

CHECKPOINT_NAME = "trainer_state.pt"


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be read; we refuse to silently start over."""


# ---------------------------------------------------------------- the trainer

@dataclass
class TrainResult:
    steps: int
    planned_steps: int
    items_seen: int
    best_val_loss: float
    best_eval: dict           # every field the best validation gave (loss, bpb, ...)
    last_val_loss: float
    stopped_early: bool
    stop_reason: str          # max_steps | val_loss_stopped_improving | max_minutes
    wall_seconds: float
    items_per_second: float
    mfu: float | None
    precision: dict
    resumed: bool = False     # continued from a checkpoint
    best_step: int | None = None   # the step whose weights are the output (0: the starting weights)
    data_wait_share: float | None = None   # fit: the share of the steps' time spent making batches
    @property
    def cut_short(self) -> bool:
        """The max_minutes cap, not the plan or early stopping, ended the stage."""
        return self.stop_reason == "max_minutes" and self.steps < self.planned_steps


def budget_metrics(result: TrainResult) -> dict:
    """The manifest's account of a training stage's budget: planned vs done, why it stopped,
    time per step and the precision it ran in. One set of names for every stage."""
    return {"steps": result.steps, "planned_steps": result.planned_steps, "stop_reason": result.stop_reason,
            "cut_short": result.cut_short, "train_seconds": result.wall_seconds,
            "seconds_per_step": round(result.wall_seconds / max(result.steps, 1), 4),
            "resumed": result.resumed, "precision": result.precision,
            **({"data_wait_share": result.data_wait_share} if result.data_wait_share is not None else {})}


def budget_line(result: TrainResult) -> str:
    """The stage's closing words about its budget, e.g. "300 of 300 planned steps" or
    "CUT SHORT by max_minutes: 120 of 300 planned steps"."""
    done = f"{result.steps} of {result.planned_steps} planned steps"
    if result.cut_short:
        return f"CUT SHORT by max_minutes: {done}"
    if result.stop_reason == "val_loss_stopped_improving":
        return f"{done} (validation loss stopped improving)"
    return done


class Trainer:
    def __init__(self, model: torch.nn.Module, tc: TrainConfig, out_dir: Path, log_path: Path,
                 seed: int = 0, device: str | torch.device = "auto", flops_per_item: float | None = None,
                 save_fn: Callable[[torch.nn.Module, Path], None] | None = None, stage: str = "train",
                 optimizers: Callable[[torch.nn.Module, torch.device, Precision], list] | None = None):
        """optimizers, if given, builds the optimizer list from (model, device, precision) instead of
        build_optimizers on the whole model (PPO: policy and value at their own rates)."""
        self.tc = tc
        self.stage = stage
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.rank, self.world_size = init_distributed(self.device)
        self.is_main = self.rank == 0
        self.seed = seed
        self.out_dir = Path(out_dir)
        self.log_path = Path(log_path)
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME
        self.flops_per_item = flops_per_item
        self.save_fn = save_fn
        torch.manual_seed(seed)
        self.model = model.to(self.device)
        self.precision = train_precision(tc.dtype, self.device)
        # parallel=fsdp: sharded parameters (FSDP2) on more than one process, and sharded (DCP)
        # checkpoints at any process count, so a run can resume on another number of GPUs
        self.fsdp = getattr(tc, "parallel", "ddp") == "fsdp"
        if self.fsdp and optimizers is not None:
            raise ValueError(f"{stage}: parallel=fsdp supports the default optimizers only")
        self.sharded = self.fsdp and self.world_size > 1
        if self.sharded:
            sharded.shard_model(self.model, self.device)      # before the optimizers: they hold the sharded parameters
        self.optimizers = (optimizers(self.model, self.device, self.precision) if optimizers is not None
                           else build_optimizers(self.model, tc, self.device, self.precision.newton_schulz))
        # The module we call forward on: compiled and/or DDP-wrapped; self.model stays the plain
        # (or, under FSDP, the sharded) one.
        forward_model = self.model
        if tc.compile:
            forward_model = torch.compile(forward_model)
        if self.world_size > 1 and not self.sharded:
            ids = [self.device.index] if self.device.type == "cuda" else None
            forward_model = torch.nn.parallel.DistributedDataParallel(forward_model, device_ids=ids)
        self.forward_model = forward_model
        self.step = 0
        self.items_seen = 0
        self.time_parts = False        # benchmarks: time forward, backward and optimizer (synchronizing)
        self.part_seconds = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
        self.data_seconds: float | None = None   # seconds in batch_fn this session (fit only)
        self.step_seconds = 0.0                  # seconds in step_fn this session (validation left out)
        self.best_val = float("inf")
        self.best_eval: dict = {}
        self.best_step: int | None = None
        self.evals_without_improvement = 0
        self.train_seconds = 0.0
        self.trackers: trackers.Trackers | None = None   # TensorBoard / W&B copies of the log rows

    # -- checkpoints ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step, "items_seen": self.items_seen, "best_val": self.best_val,
            "best_eval": json.dumps(self.best_eval), "best_step": -1 if self.best_step is None else self.best_step,
            "evals_without_improvement": self.evals_without_improvement, "train_seconds": self.train_seconds,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
                    "python": list(random.getstate()[1])},
        }

    def _trainer_fields(self) -> dict:
        return {"items_seen": self.items_seen, "best_val": self.best_val, "best_eval": self.best_eval,
                "evals_without_improvement": self.evals_without_improvement, "train_seconds": self.train_seconds,
                "best_step": self.best_step}

    def save_checkpoint(self) -> None:
        """Atomic: a crash mid-write leaves the previous checkpoint intact."""
        if self.fsdp:     # every rank writes its shards (train/sharded.py)
            sharded.save(self.out_dir, self.step, self.model, self.optimizers, self._trainer_fields(), self.is_main)
            return
        if not self.is_main:
            return
        state = self.state_dict()
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(state, tmp)

    def load_checkpoint(self) -> bool:
        """Restore from the checkpoint if one exists; a damaged one is an error, never a restart."""
        if self.fsdp:
            return self._load_sharded()
        path = self.checkpoint_path
        if not path.exists():
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state["model"])
            for opt, opt_state in zip(self.optimizers, state["optimizers"], strict=True):
                opt.load_state_dict(opt_state)
        except Exception as err:  # noqa: BLE001 - any failure here means the file is unusable
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({first[:200]}); "
                                  f"delete it to start this stage over") from None
        self.step = state["step"]
        self.items_seen = state["items_seen"]
        self.best_val = state["best_val"]
        self.best_eval = json.loads(state.get("best_eval", "{}"))
        best_step = int(state.get("best_step", -1))
        self.best_step = None if best_step < 0 else best_step
        self.evals_without_improvement = state["evals_without_improvement"]
        self.train_seconds = state["train_seconds"]
        torch.set_rng_state(state["rng"]["torch"])
        np_state = np.random.get_state()
        np.random.set_state((np_state[0], np.array(state["rng"]["numpy"], dtype=np.uint32), *np_state[2:]))
        py_state = random.getstate()
        random.setstate((py_state[0], tuple(state["rng"]["python"]), py_state[2]))
        return True

    def _load_sharded(self) -> bool:
        try:
            state = sharded.load(self.out_dir, self.model, self.optimizers)
        except sharded.ShardedCheckpointError as err:
            raise CheckpointError(str(err)) from None
        if state is None:
            return False
        self.step = state["step"]
        self.items_seen = state["items_seen"]
        self.best_val = state["best_val"]
        self.best_eval = state["best_eval"]
        self.evals_without_improvement = state["evals_without_improvement"]
        self.train_seconds = state["train_seconds"]
        self.best_step = state.get("best_step")
        return True

    def save_weights(self) -> None:
        """The stage's output through save_fn: rank 0 writes; sharded, every rank takes part in
        gathering the whole model (save_model does both)."""
        if self.save_fn and (self.is_main or self.sharded):
            self.save_fn(self.model, self.out_dir)

    # -- logging ----------------------------------------------------------------
    def log(self, row: dict) -> None:
        """Append one row to the stage's JSONL log (main process only)."""
        if not self.is_main:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self.trackers is not None:
            self.trackers.log(row)

    def _truncate_log(self) -> None:
        """On resume, drop log rows written after the checkpoint we went back to."""
        if not self.is_main or not self.log_path.exists():
            return
        rows = [line for line in self.log_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= self.step]
        atomic_write_text(self.log_path, "".join(r + "\n" for r in rows))

    def start(self, resume: bool) -> bool:
        """Resume from the checkpoint (dropping log rows written after it) or start a fresh log.
        Returns whether it resumed."""
        if resume and self.load_checkpoint():
            self._truncate_log()
            return True
        if self.is_main and self.log_path.exists():
            self.log_path.unlink()
        return False

    # -- budgets and schedule ----------------------------------------------------
    def _time_fraction(self) -> float:
        """Share of the max_minutes cap used, agreed by all ranks (their clocks differ)."""
        if not self.tc.max_minutes:
            return 0.0
        mine = self.train_seconds / (self.tc.max_minutes * 60)
        return all_reduce_sums(mine)[0] / self.world_size

    def _set_lr(self, total_steps: int, time_fraction: float) -> float:
        mult = lr_multiplier(self.step, self.tc, total_steps, time_fraction)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * mult
        return mult

    # -- one update ---------------------------------------------------------------
    def evaluate(self, eval_fn: Callable[[torch.nn.Module], float | dict]) -> dict:
        """eval_fn on the model in eval mode, without gradients, in the step's precision.
        eval_fn returns the validation loss, or a dict with "loss" and other figures."""
        self.model.eval()
        with torch.no_grad(), self.precision.autocast_context(self.device), fast_path(self.model):
            value = eval_fn(self.model)
        self.model.train()
        return {k: float(v) for k, v in value.items()} if isinstance(value, dict) else {"loss": float(value)}

    def train_step(self, batches: list[dict], loss_fn: Callable) -> float:
        """One optimizer step over this process's micro-batches; returns the global mean loss."""
        local_items = sum(int(b["n_items"]) for b in batches)
        global_items = all_reduce_sums(local_items)[0]
        # summed on the device (float64 where the device has it): one host sync per step, not per micro-batch
        loss_total = torch.zeros((), dtype=torch.float32 if self.device.type == "mps" else torch.float64,
                                 device=self.device)
        for i, batch in enumerate(batches):
            # DDP and FSDP average gradients over ranks, so scale by world_size to get a global
            # sum / global count.
            sync = self.world_size == 1 or i == len(batches) - 1
            if self.sharded:
                sharded.set_gradient_sync(self.model, sync)
                ctx = contextlib.nullcontext()
            else:
                ctx = contextlib.nullcontext() if sync else self.forward_model.no_sync()
            with ctx, self.precision.autocast_context(self.device):
                started = self._clock()
                loss_sum = loss_fn(self.forward_model, batch)
                forward_done = self._clock()
                (loss_sum * (self.world_size / global_items)).backward()
            loss_total += loss_sum.detach()
            self._add_part("forward", started, forward_done)
            self._add_part("backward", forward_done, self._clock())
        started = self._clock()
        if self.tc.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.clip_grad)
        for opt in self.optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        self._add_part("optimizer", started, self._clock())
        self.items_seen += int(global_items)
        return all_reduce_sums(float(loss_total))[0] / global_items

    def _clock(self) -> float:
        if self.time_parts and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() if self.time_parts else 0.0

    def _add_part(self, part: str, start: float, end: float) -> None:
        if self.time_parts:
            self.part_seconds[part] += end - start

    # -- the loop -------------------------------------------------------------------
    def fit(self, batch_fn: Callable, loss_fn: Callable, eval_fn: Callable | None = None,
            resume: bool = True, total_steps: int | None = None,
            log_extra: Callable[[], dict] | None = None) -> TrainResult:
        """Supervised training: each step's batches from batch_fn, the loss from loss_fn.
        log_extra, if given, returns fields added to every step's log row (e.g. statistics
        the loss function gathered since the last call)."""
        grad_accum = self.tc.grad_accum

        def step_fn(step: int) -> dict:
            # Timed always (two clock reads a step): the step ends with one host sync (the loss),
            # so on a GPU this is time the device sits idle waiting for data.
            started = time.perf_counter()
            batches = [batch_fn(step, micro, self.rank, self.world_size) for micro in range(grad_accum)]
            self.data_seconds = (self.data_seconds or 0.0) + time.perf_counter() - started
            row = {"loss": round(self.train_step(batches, loss_fn), 7)}   # 7 decimals: resume checks at 1e-6
            if log_extra is not None:
                row.update(log_extra())
            return row
        return self.run(step_fn, total_steps=total_steps, eval_fn=eval_fn, resume=resume)

    def run(self, step_fn: Callable[[int], dict], total_steps: int | None = None,
            eval_fn: Callable | None = None, resume: bool = True,
            postfix: Callable[[dict], dict] | None = None, eval_start: bool = False) -> TrainResult:
        """Train to total_steps (default max_steps), early stopping or the max_minutes cap.

        step_fn(step) does one step's work, updating through train_step, and returns the
        step's log fields ("loss" is checked for being finite when present). The loop owns the
        step counter, the time, the schedule, logging, validation, checkpoints and the bar;
        postfix(row) picks what the bar shows (default: loss and items/s). eval_start also
        validates the starting weights, so that they stay the output unless training beats
        them on validation (for stages that may not improve on their start, such as RL)."""
        tc = self.tc
        total_steps = total_steps or tc.max_steps
        resumed = self.start(resume)
        self.data_seconds, self.step_seconds = None, 0.0    # fit's step_fn adds its batch_fn time
        self.trackers = trackers.for_stage(self.stage, self.step, resumed, self.is_main)
        self.model.train()
        stop_reason, stopped_early = "max_steps", False
        last_val = float("nan")
        if eval_fn is not None and eval_start and self.step == 0:
            figures = self.evaluate(eval_fn)
            last_val = figures["loss"]
            self.best_val, self.best_eval, self.best_step = last_val, figures, 0
            self.save_weights()
            self.log({"step": 0, **{f"val_{k}": round(v, 5) for k, v in figures.items()}})
        bar = None
        if self.is_main:
            bar = tqdm(total=total_steps, initial=self.step, desc=self.stage, unit="step",
                       dynamic_ncols=True, mininterval=1.0, leave=False)
        peak = peak_flops(self.device)
        window_items, window_start = self.items_seen, time.perf_counter()
        session_start, session_start_seconds, session_start_step = time.perf_counter(), self.train_seconds, self.step
        rate, mfu = 0.0, None
        time_fraction = self._time_fraction()
        while self.step < total_steps:
            lr_mult = self._set_lr(total_steps, time_fraction)
            started = time.perf_counter()
            fields = step_fn(self.step)
            self.step_seconds += time.perf_counter() - started
            loss = fields.get("loss")
            if loss is not None and not math.isfinite(loss):
                raise FloatingPointError(f"{self.stage}: loss became {loss} at step {self.step}; "
                                         f"lower the learning rate or check the data")
            self.step += 1
            self.train_seconds = session_start_seconds + time.perf_counter() - session_start
            row = {"step": self.step, **fields, "lr_multiplier": round(lr_mult, 5), "items": self.items_seen,
                   "elapsed_seconds": round(self.train_seconds, 2)}
            if self.step % tc.log_every == 0 or self.step == total_steps:
                elapsed = time.perf_counter() - window_start
                rate = (self.items_seen - window_items) / max(elapsed, 1e-9)
                mfu = rate * self.flops_per_item / peak if (peak and self.flops_per_item) else None
                row["items_per_second"] = round(rate, 1)
                if mfu is not None:
                    row["mfu"] = round(mfu, 4)
                window_items, window_start = self.items_seen, time.perf_counter()
            evaluated = False
            if eval_fn is not None and (self.step % tc.eval_every == 0 or self.step == total_steps):
                figures = self.evaluate(eval_fn)
                last_val = figures["loss"]
                row.update({f"val_{k}": round(v, 5) for k, v in figures.items()})
                evaluated = True
                if last_val < self.best_val - tc.min_delta:
                    self.best_val, self.best_eval, self.best_step = last_val, figures, self.step
                    self.evals_without_improvement = 0
                    self.save_weights()     # the best weights are the stage's output
                else:
                    self.evals_without_improvement += 1
            self.log(row)
            if bar is not None:
                shown = postfix(row) if postfix else {"loss": f"{loss:.3f}" if loss is not None else "-",
                                                      "items/s": f"{rate:,.0f}"}
                if not math.isnan(last_val):
                    shown["val"] = f"{last_val:.3f}"
                if mfu is not None:
                    shown["mfu"] = f"{mfu:.1%}"
                per_step = (self.train_seconds - session_start_seconds) / (self.step - session_start_step)
                run_eta = progress.run_eta(self.stage, per_step * (total_steps - self.step))
                if run_eta is not None:
                    shown["run ETA"] = progress.clock(run_eta)
                bar.set_postfix(shown, refresh=False)
                bar.update(1)
            if evaluated and tc.patience and self.evals_without_improvement >= tc.patience:
                stop_reason, stopped_early = "val_loss_stopped_improving", True
            time_fraction = self._time_fraction()
            if time_fraction >= 1.0 and self.step < total_steps:
                stop_reason, stopped_early = "max_minutes", True
            if stopped_early or self.step % tc.checkpoint_every == 0:
                self.save_checkpoint()
            if stopped_early:
                break
        if bar is not None:
            bar.close()
        if eval_fn is None:
            self.save_weights()
        elif eval_fn is not None and not math.isfinite(self.best_val):
            # Never evaluated (e.g. zero steps left): evaluate once so there is an output.
            self.best_eval = self.evaluate(eval_fn)
            self.best_val = last_val = self.best_eval["loss"]
            self.best_step = self.step
            self.save_weights()
        self.save_checkpoint()
        if self.trackers is not None:
            self.trackers.close()
        items_per_second = self.items_seen / max(self.train_seconds, 1e-9)
        mfu_total = (items_per_second * self.flops_per_item / peak) if (peak and self.flops_per_item) else None
        data_wait = (round(self.data_seconds / self.step_seconds, 4)
                     if self.data_seconds is not None and self.step_seconds > 0 else None)
        return TrainResult(steps=self.step, planned_steps=total_steps, items_seen=self.items_seen,
                           best_val_loss=self.best_val, best_eval=dict(self.best_eval), last_val_loss=last_val, stopped_early=stopped_early,
                           stop_reason=stop_reason, wall_seconds=round(self.train_seconds, 2),
                           items_per_second=round(items_per_second, 1), mfu=mfu_total,
                           precision=self.precision.record(), resumed=resumed,
                           best_step=self.best_step if eval_fn is not None else None, data_wait_share=data_wait)
