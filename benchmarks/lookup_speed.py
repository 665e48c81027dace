"""How long one lookup takes: `LookupIndex.search` (bm25s scores and its own top-k) beside bm25s's
`retrieve()`, which it replaced, on the run's index, side by side in one process.

    python benchmarks/lookup_speed.py --run-dir runs/tiny            # needs a run through synth
    python benchmarks/lookup_speed.py --run-dir runs/tiny --repeats 5

The queries are the lookup evaluation's questions and their entities' names (datasets/
lookup_eval.jsonl), so both the short queries the model writes and whole questions. The two are
timed in alternation, best of `--repeats`, and their results compared (passages and order, ties
included). A benchmark, never a test.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.files import read_jsonl  # noqa: E402
from lmforge.tools.lookup import LookupIndex  # noqa: E402


def with_retrieve(index: LookupIndex, query: str, k: int = 2) -> list[tuple[float, str]]:
    """The search as it was: bm25s's retrieve(), which starts a thread pool per call."""
    import bm25s
    tokens = bm25s.tokenize([query[:1000]], stopwords=index.stopwords, show_progress=False, return_ids=False)
    if not tokens or not tokens[0]:
        return []
    docs, scores = index.retriever.retrieve(tokens, k=min(k, len(index.passages)), show_progress=False, n_threads=1)
    return [(float(s), index.passages[int(d)]) for d, s in zip(docs[0], scores[0]) if s > 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--queries", type=int, default=400, help="evaluation rows used (each: name and question)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run = Path(args.run_dir)
    index = LookupIndex.load(run / "data" / "index")
    rows = read_jsonl(run / "datasets" / "lookup_eval.jsonl")[:args.queries]
    queries = [r["entity"] for r in rows] + [r["question"] for r in rows]
    same = sum(index.search(q) == with_retrieve(index, q) for q in queries)
    best = {"search": float("inf"), "retrieve": float("inf")}
    for _ in range(args.repeats):
        for name, fn in (("retrieve", lambda q: with_retrieve(index, q)), ("search", index.search)):
            started = time.perf_counter()
            for query in queries:
                fn(query)
            best[name] = min(best[name], time.perf_counter() - started)
    print(json.dumps({"queries": len(queries), "passages": len(index.passages), "same_results": same,
                      "ms_per_query": {name: round(seconds / len(queries) * 1000, 3) for name, seconds in best.items()}},
                     indent=1))


if __name__ == "__main__":
    main()
