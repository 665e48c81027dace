"""Tool-use quality bars of a run: test pass@1 with and without tools, where wrong answers go wrong.

    python benchmarks/tool_bars.py --run-dir runs/tiny [--stage sft] [--tools calculator,lookup] [--out bars.json]

Evaluates one stage's model on the reasoning stage's test problems (datasets/reasoning_eval.jsonl,
`grpo.eval_per_difficulty` per level, greedy) through the stage code's own evaluation
(lmforge/evals/reasoning.evaluate_reasoning): with the tools offered (when the run's tokenizer
has tool tokens) and without them. For each: pass@1 overall and per difficulty with its 95 %
interval, the worked steps whose result is wrong, where wrong answers first leave the reference
solution (misread operand, wrong result, other), and tool calls with the malformed ones. It
is how the no-tools baseline (a run with `synth.tool_use=plain`) gets the figures the grpo
stage measures for the tool run. Nothing is written to the run. A benchmark, never a test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.tasks.reasoning import balanced_subset, load_tasks  # noqa: E402
from lmforge.evals.reasoning import evaluate_reasoning  # noqa: E402
from lmforge.evals.stats import proportion  # noqa: E402
from lmforge.checkpoints import load_model  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402
from lmforge.tokenizer import Tokenizer  # noqa: E402
from lmforge.tools.registry import ToolBox  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--stage", default="sft")
    ap.add_argument("--tools", default="calculator,lookup", help="tools offered in the with-tools evaluation")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    run = RunDir(args.run_dir)
    cfg = run.load_config()
    g = cfg.grpo
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    model = load_model(run.model_dir(args.stage))
    tasks, _ = load_tasks(run.path("datasets", "reasoning_eval.jsonl"), tokenizer,
                          model.cfg.seq_len - g.max_completion_tokens, g.answer_column)
    tasks = balanced_subset(tasks, g.eval_per_difficulty)
    arms = {"without_tools": None}
    if tokenizer.has_tools and args.tools:
        arms["with_tools"] = ToolBox.from_config(args.tools.split(","), run, cfg.tools)
    result = {"run": str(run.root), "stage": args.stage, "problems": len(tasks)}
    for name, tools in arms.items():
        r = evaluate_reasoning(model, tokenizer, tasks, 0, 1.0, g.max_completion_tokens, seed=cfg.run.seed,
                               examples=0, tools=tools)
        result[name] = {"pass@1": proportion(r["correct"], r["n"]),
                        "by_difficulty": {k: v["pass@1"] for k, v in r["by_difficulty"].items()},
                        "errors": r["errors"], "equations": r["equations"], "wrong_results": r["wrong_results"],
                        "tool_calls": r.get("tool_calls", {})}
        print(name, json.dumps(result[name]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
