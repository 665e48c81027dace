"""The shape every cleaning step shares, and the loop that runs a list of them over documents.

A step takes a document and returns it (possibly changed) or a `Drop` that says why it goes
(datatrove's shape: documents in, documents out, a reason for every one that leaves). A step
that raises on a document does not stop the job: the runner counts that document as
unreadable, with the step and the exception as its reason.

    from lmforge.data.steps import run_steps
    for outcome in run_steps(steps, docs):      # outcome.doc, outcome.status, outcome.reason
        ...

Steps can also be chained as generators, datatrove style: `kept = step(docs)` yields the kept
documents and records the dropped ones in `step.dropped` (a list of (doc, reason)).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator


@dataclass(frozen=True)
class Drop:
    """A step's verdict that a document goes; `reason` is a short stable key for counting."""
    reason: str
    detail: str = ""


class Unreadable(Exception):
    """Raised by a step when the document cannot be read at all (not a quality judgement)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class StepStats:
    """What one step saw: documents and characters in, kept, dropped by reason, unreadable, CPU seconds spent."""
    name: str
    docs_in: int = 0
    chars_in: int = 0
    kept: int = 0
    modified: int = 0
    dropped: Counter = field(default_factory=Counter)
    unreadable: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "docs_in": self.docs_in, "chars_in": self.chars_in, "kept": self.kept,
                "modified": self.modified,
                "dropped": dict(self.dropped), "unreadable": dict(self.unreadable),
                "seconds": round(self.seconds, 4)}

    def merge(self, other: dict) -> None:
        self.docs_in += other["docs_in"]
        self.chars_in += other.get("chars_in", 0)
        self.kept += other["kept"]
        self.modified += other["modified"]
        self.dropped.update(other["dropped"])
        self.unreadable.update(other["unreadable"])
        self.seconds += other["seconds"]


class Step:
    """One cleaning step. Subclasses set `name` and implement `process`."""
    name = "step"

    def process(self, doc: dict) -> dict | Drop:
        raise NotImplementedError

    def __call__(self, docs: Iterable[dict]) -> Iterator[dict]:
        """Generator form: yield kept documents; dropped ones go to self.dropped with their reason."""
        self.dropped = getattr(self, "dropped", [])
        for doc in docs:
            out = self.process(doc)
            if isinstance(out, Drop):
                self.dropped.append((doc, out.reason))
            else:
                yield out


class Filter(Step):
    """A step that only judges: `check(doc)` returns None to keep or a Drop."""

    def check(self, doc: dict) -> Drop | None:
        raise NotImplementedError

    def process(self, doc: dict) -> dict | Drop:
        return self.check(doc) or doc


@dataclass
class Outcome:
    doc: dict
    status: str            # kept | removed | unreadable
    reason: str = ""       # "<step>:<reason>" for removed and unreadable documents
    detail: str = ""


def run_steps(steps: list[Step] | Callable[[dict], list[Step]], docs: Iterable[dict],
              stats: dict[str, StepStats] | None = None) -> Iterator[Outcome]:
    """Run every document through the steps in order; yield one Outcome per input document.
    `steps` may be a function of the document (its source's profile decides its steps)."""
    if stats is None:
        stats = {}
    steps_for = steps if callable(steps) else (lambda doc, fixed=list(steps): fixed)
    if not callable(steps):
        for step in steps:
            stats.setdefault(step.name, StepStats(step.name))
    clock = time.process_time   # CPU seconds of this process: per-core cost, whatever else runs
    for doc in docs:
        outcome = None
        for step in steps_for(doc):
            st = stats.get(step.name) or stats.setdefault(step.name, StepStats(step.name))
            st.docs_in += 1
            before = doc["text"]
            st.chars_in += len(before)
            started = clock()
            try:
                out = step.process(doc)
            except Unreadable as err:
                out = err
            except RecursionError:
                out = Unreadable("too_deep", "recursion limit")
            except Exception as err:  # noqa: BLE001 - one bad document must never stop the job
                out = Unreadable("step_error", f"{type(err).__name__}: {str(err)[:200]}")
            st.seconds += clock() - started
            if isinstance(out, Unreadable):
                st.unreadable[out.reason] += 1
                outcome = Outcome(doc, "unreadable", f"{step.name}:{out.reason}", out.detail)
                break
            if isinstance(out, Drop):
                st.dropped[out.reason] += 1
                outcome = Outcome(doc, "removed", f"{step.name}:{out.reason}", out.detail)
                break
            st.kept += 1
            if out["text"] is not before and out["text"] != before:
                st.modified += 1
            doc = out
        yield outcome or Outcome(doc, "kept")
