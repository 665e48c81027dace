"""The whole run's clock: what `lmforge run` estimated for each stage, so that every progress
bar can show the run's ETA next to its own.

    from lmforge import progress
    progress.set_plan({"pretrain": {"before": 5, "train": 600, "after": 40}, "sft": {...}},
                      order=["pretrain", "sft"])
    progress.run_eta("pretrain", remaining_train_seconds=300)   # 300 + 40 + the later stages
    progress.clock(3725)                                        # "1:02:05"

The plan is process-wide and set once by `run.run_pipeline` from `estimate.estimate_run`;
with no plan (a single stage run by hand) run_eta returns None and bars show their own ETA only.
"""
from __future__ import annotations

_plan: dict[str, dict] = {}
_order: list[str] = []


def set_plan(plan: dict[str, dict], order: list[str]) -> None:
    """plan: stage -> {"before": seconds before training (loading, a first evaluation), "train":
    seconds of training steps, "after": seconds after (evaluation, writing)}."""
    global _plan, _order
    _plan, _order = dict(plan), list(order)


def clear() -> None:
    set_plan({}, [])


def run_eta(stage: str, remaining_train_seconds: float) -> float | None:
    """Seconds until the whole run ends: this stage's remaining training (measured by the
    caller), the non-training part of its estimate (evaluation after training), and every
    later stage's estimate. None when no plan covers this stage."""
    if stage not in _plan:
        return None
    later = _order[_order.index(stage) + 1:]
    return (remaining_train_seconds + _plan[stage].get("after", 0.0)
            + sum(total(_plan[s]) for s in later if s in _plan))


def total(part: dict) -> float:
    return part.get("before", 0.0) + part.get("train", 0.0) + part.get("after", 0.0)


def clock(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
