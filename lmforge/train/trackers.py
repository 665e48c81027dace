"""Experiment trackers beside the JSONL logs: TensorBoard and Weights & Biases, both optional.

    lmforge run --preset tiny track.loggers=[tensorboard]        # then: tensorboard --logdir runs/tiny/tensorboard
    WANDB_MODE=offline lmforge run --preset tiny track.loggers=[wandb]     # runs/tiny/wandb, `wandb sync` later

The JSONL log of each training stage (logs/<stage>.jsonl) stays the source of truth: trackers get
a copy of the numbers in each row the training loop writes there, nothing more, and nothing
reads them back. Install them with `pip install 'lmforge[track]'`.

How it is wired: `run.execute_stage` opens a `session` around every stage (the run's `track` config
and folder); the one training loop (`Trainer`, train/loop.py) asks `for_stage` for its trackers
when it starts and hands them every row it appends to the JSONL log. Outside a session
(benchmarks, the estimate's timed steps, tests that build a Trainer) there are none, and on
every rank but the first there are none.

The `track` section is in no stage's fingerprint (run.py's config_keys): trackers record, they
do not change a result, so turning one on or off never re-runs a stage.

Each stage is its own TensorBoard run (<run>/tensorboard/<stage>/, or <track.tensorboard_dir>/
<run name>/<stage>/) and its own W&B run (named <run name>/<stage>, grouped by the run name),
because every stage counts its steps from 0.
A resumed stage drops the TensorBoard events after its checkpoint's step, as it drops those
JSONL rows; in W&B a resumed stage is a new run of the group, tagged "resumed".
"""
from __future__ import annotations

import contextlib
import importlib.util
import shutil
from pathlib import Path

from ..config import TRACK_LOGGERS as LOGGERS

EXTRA = "pip install 'lmforge[track]'"
_MODULE = {"tensorboard": "tensorboard", "wandb": "wandb"}   # what each logger imports

_session: dict = {}      # the stage being run: track config, run folder, run name, whole config


def check(loggers: list, installed: bool = True) -> None:
    """Unknown names (when the config loads) and, with installed, missing libraries (when a stage
    starts): a one-line ConfigError."""
    from ..config import ConfigError
    for name in loggers:
        if name not in LOGGERS:
            raise ConfigError(f"track.loggers: unknown logger {name!r}; choose from {list(LOGGERS)}")
        if installed and importlib.util.find_spec(_MODULE[name]) is None:
            raise ConfigError(f"track.loggers: {name} is not installed; {EXTRA}")


@contextlib.contextmanager
def session(track, run_root: Path, run_name: str, config: dict):
    """Trackers for the training stages run inside; closes any a failed stage left open."""
    global _session
    _session = {"track": track, "root": Path(run_root), "name": run_name, "config": config, "open": []}
    try:
        yield
    finally:
        for trackers in _session["open"]:
            trackers.close()
        _session = {}


def for_stage(stage: str, step: int, resumed: bool, is_main: bool = True) -> Trackers | None:
    """The trackers a training stage writes to, starting after `step`; None outside a session,
    with no loggers configured, or off the first rank."""
    if not _session or not _session["track"].loggers or not is_main:
        return None
    track, root = _session["track"], _session["root"]
    sinks = []
    for name in track.loggers:
        if name == "tensorboard":     # a folder of your own holds several runs: one subfolder each
            base = Path(track.tensorboard_dir) / _session["name"] if track.tensorboard_dir else root / "tensorboard"
            sinks.append(TensorBoard(base / stage, step, resumed))
        else:
            sinks.append(WandB(track, root, f"{_session['name']}/{stage}", _session["name"], stage, resumed,
                               _session["config"]))
    trackers = Trackers(sinks)
    _session["open"].append(trackers)
    return trackers


def scalars(row: dict, prefix: str = "") -> dict[str, float]:
    """The numbers of a log row (nested dicts flattened with '/'); text, flags and the step left out."""
    out = {}
    for key, value in row.items():
        if key == "step" and not prefix:
            continue
        if isinstance(value, dict):
            out.update(scalars(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


class Trackers:
    """Every configured tracker of one stage, written to together."""

    def __init__(self, sinks: list):
        self.sinks = sinks

    def log(self, row: dict) -> None:
        values = scalars(row)
        if values and "step" in row:
            for sink in self.sinks:
                sink.log(int(row["step"]), values)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []


class TensorBoard:
    def __init__(self, folder: Path, step: int, resumed: bool):
        from torch.utils.tensorboard import SummaryWriter
        if not resumed and folder.exists():    # a fresh start: the old events go, as the old JSONL log does
            shutil.rmtree(folder)
        # resumed: events after the checkpoint's step are dropped (purge_step), as the log's rows are
        self.writer = SummaryWriter(str(folder), purge_step=step + 1 if resumed else None, flush_secs=30)

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


def _shareable(config: dict) -> dict:
    """The config without secrets (serve.api_key...): W&B sends it to a server."""
    return {k: _shareable(v) if isinstance(v, dict) else v for k, v in config.items() if "api_key" not in k}


class WandB:
    def __init__(self, track, root: Path, name: str, group: str, stage: str, resumed: bool, config: dict):
        import wandb
        # mode "" leaves it to W&B ($WANDB_MODE, else online)
        self.run = wandb.init(project=track.wandb_project, entity=track.wandb_entity or None,
                              mode=track.wandb_mode or None, dir=str(root), name=name, group=group,
                              job_type=stage, tags=["resumed"] if resumed else None, config=_shareable(config),
                              reinit="create_new", settings=wandb.Settings(console="off"))   # rows, not the bar
        # our own step field as the x axis: W&B's internal step must only grow, ours restarts on resume
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log({"step": step, **values})

    def close(self) -> None:
        import wandb
        self.run.finish()
        wandb.teardown()     # finish() may return before W&B's service has written everything; this waits
