"""What every report-card section is built from: a stage's metrics, its JSONL log, markdown
tables and figures.

    from lmforge.evals.card import markdown_table, read_log, stage_metrics
    rows = read_log(run.log_path("ppo"), "kl")     # the log rows that carry "kl"

A leaf: it imports nothing of lmforge's but files.py, so the sections (alignment, reasoning,
tools, standard, cleaning, inside) and the report that assembles them (evals/report.py) all
build on it without importing each other. The run folder is passed in, never imported.
"""
from __future__ import annotations

from pathlib import Path

from ..files import read_jsonl


def stage_metrics(run, stage: str) -> dict | None:
    """The metrics of a stage that finished (its manifest says done), else None."""
    manifest = run.read_manifest(stage)
    if not manifest or manifest.get("status") != "done":
        return None
    return manifest.get("metrics") or {}


def read_log(log_path: Path, key: str | None = None) -> list[dict]:
    """The rows of a stage's JSONL log, all or those that carry `key` (none when the log does
    not exist). The one reader of training logs: the stages' manifests and the card use it."""
    if not Path(log_path).exists():
        return []
    rows = read_jsonl(log_path)
    return rows if key is None else [r for r in rows if key in r]


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def pct(value) -> str:
    """A share as a percentage with one decimal, or "-" when there is none."""
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"


def new_figure():
    """(fig, ax) in the report card's size, drawn off-screen."""
    import matplotlib        # the card's only use of matplotlib: imported when a figure is drawn
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=(6.4, 3.6), dpi=110)


def save_figure(fig, out_png: Path) -> bool:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)
    return True
