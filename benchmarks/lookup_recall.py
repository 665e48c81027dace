"""How often the lookup tool can answer at all: the ceiling of the lookup bars, no model involved.

    python benchmarks/lookup_recall.py --run-dir runs/tiny

For every question of datasets/lookup_eval.jsonl (written by synth: the unseen test and dev
entities' facts, and questions about invented names) it queries the run's lookup index with
the entity's name, as the tool-use data teaches the model to, and counts: for unseen entities,
results in which one passage states the asked fact (the judge of lmforge/tasks/tool_data.py,
the one synth uses to keep a lookup conversation); for invented names, results with no passage
at all ("no results") and the median top BM25 score. A model that copies the name into the
query and the value out of the result can reach the first figure, and no further. Needs the
index and synth stages; writes nothing. A benchmark, never a test.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.tasks.tool_data import answered_by  # noqa: E402
from lmforge.files import read_jsonl  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402
from lmforge.tools.lookup import LookupIndex  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    args = ap.parse_args()
    run = RunDir(args.run_dir)
    index = LookupIndex.load(run)
    rows = read_jsonl(run.path("datasets", "lookup_eval.jsonl"))
    result = {}
    for split in ("unseen_test", "unseen_dev", "unanswerable"):
        part = [r for r in rows if r["split"] == split]
        hits = [index.search(r["entity"]) for r in part]
        figures = {"questions": len(part),
                   "top_score_median": round(statistics.median([h[0][0] if h else 0.0 for h in hits]), 2)
                   if part else None}
        if split == "unanswerable":
            figures["no_results"] = sum(not h for h in hits)
        else:
            figures["fact_in_result"] = sum(answered_by(index(r["entity"]), r["entity"], r["value"]) for r in part)
        result[split] = figures
    print(json.dumps(result))


if __name__ == "__main__":
    main()
