"""GRPO learning curve: held-out greedy pass@1 (and pass@4) every N steps from a run's SFT model.

    python benchmarks/grpo_curve.py --run-dir runs/tiny [--steps 1000] [--every 200] [--minutes 6] [--split dev]
                                    [--set grpo.lr=1e-4 --set grpo.temperature=1.0 ...] [--out curve.json]

The grpo stage measures only its end point; this asks how pass@1 moves along the way and
whether more steps than a laptop's eight minutes would reach a given gain. It runs the
stage's own pieces (tasks, rewards, `grpo_step`, the shared Trainer) with the run's
config plus the `--set` overrides, a constant learning rate (no decay at an arbitrary
end), and evaluates the first `eval_per_difficulty` dev problems of each level (`--split
test` for the test problems; compare settings on dev, so the headline set chooses nothing)
greedily (pass@1) and 60 of each level 4 times at temperature 1 (pass@4); before and after,
it counts where each wrong greedy answer first leaves the worked solution (an operand read
wrongly from the question, a wrong result, or other: lmforge/evals/reasoning.error_kind).
With `grpo.tools` in the run's config (or `--set grpo.tools=[calculator,lookup]`) rollouts and
evaluation offer those tools. It uses the GPU
when there is one; start several at once with different `--set` to compare settings.
Nothing is written to the run directory. A benchmark, never a test.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.tasks.reasoning import balanced_subset, load_tasks  # noqa: E402
from lmforge.evals.reasoning import evaluate_reasoning  # noqa: E402
from lmforge.checkpoints import load_model  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402
from lmforge.tokenizer import Tokenizer  # noqa: E402
from lmforge.train.grpo import build_rewards, grpo_step  # noqa: E402
from lmforge.train.rollout import prompts_for_step  # noqa: E402
from lmforge.device import pick_device  # noqa: E402
from lmforge.train.loop import Trainer  # noqa: E402
from lmforge.tools.registry import ToolBox  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=200, help="evaluate every this many GRPO steps")
    ap.add_argument("--minutes", type=float, default=0.0, help="stop training after this long; 0 = no limit")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument("--split", choices=["dev", "test"], default="dev", help="which held-out problems to evaluate")
    ap.add_argument("--out", default="grpo_curve.json")
    args = ap.parse_args()

    run = RunDir(Path(args.run_dir))
    from lmforge.config import load_config
    cfg = load_config(None, ["grpo.schedule=constant", *args.set], base=run.config_path)
    g = cfg.grpo
    device = pick_device(cfg.run.device)
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    policy = load_model(run.model_dir("sft"), device=device)
    max_prompt = policy.cfg.seq_len - g.max_completion_tokens
    tools = ToolBox.from_config(g.tools, run, cfg.tools) if g.tools else None
    schemas = tools.schemas() if tools is not None else None
    tasks, _ = load_tasks(run.path("datasets", "reasoning.jsonl"), tokenizer, max_prompt, g.answer_column,
                          tools=schemas)
    # settings are compared on the dev problems; the test problems are for the stage's headline only
    held_file = {"dev": "reasoning_dev.jsonl", "test": "reasoning_eval.jsonl"}[args.split]
    held_out, _ = load_tasks(run.path("datasets", held_file), tokenizer, max_prompt, g.answer_column)
    held_out = balanced_subset(held_out, g.eval_per_difficulty)
    rewards = build_rewards(g)

    def evaluate(step: int) -> dict:
        r = evaluate_reasoning(policy, tokenizer, held_out, 4, 1.0, g.max_completion_tokens, seed=cfg.run.seed,
                               examples=0, k_per_difficulty=60, tools=tools)
        return {"step": step, "pass@1": r["pass@1"], "pass@4": r["pass@k"], "first_errors": r["errors"],
                "pass@1_by_difficulty": {level: v["pass@1"] for level, v in r["by_difficulty"].items()}}

    curve = [evaluate(0)]
    errors = {"before": curve[0]["first_errors"]}
    print(json.dumps(curve[-1]), "first errors:", errors["before"], flush=True)
    tmp = Path(tempfile.mkdtemp())
    g = dataclasses.replace(g, max_steps=args.steps, max_minutes=args.minutes, checkpoint_every=10**9)
    trainer = Trainer(policy, g, out_dir=tmp, log_path=tmp / "log.jsonl", seed=cfg.run.seed, device=device,
                      stage="grpo")
    started, rows = time.perf_counter(), []

    def save() -> None:
        Path(args.out).write_text(json.dumps({"run": str(run.root), "set": args.set, "device": str(device),
                                              "first_errors": errors, "curve": curve}, indent=1))

    def step_fn(step: int) -> dict:
        batch = prompts_for_step(tasks, step, g.prompts_per_step, cfg.run.seed)
        rows.append(grpo_step(trainer, None, tokenizer, batch, rewards, g, cfg.run.seed * 1_000_003 + step * 10_007,
                              tools))
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            recent = rows[-args.every:]
            point = evaluate(step + 1)
            point.update({key: round(sum(r[field] for r in recent) / len(recent), 4) for key, field in
                          [("reward", "reward_mean"), ("zero_std", "zero_std_fraction"),
                           ("length", "completion_length_mean")]})
            point["train_seconds"] = round(time.perf_counter() - started, 1)
            curve.append(point)
            print(json.dumps(point), flush=True)
            save()
        return rows[-1]

    result = trainer.run(step_fn, resume=False)
    if curve[-1]["step"] != result.steps:
        curve.append(evaluate(result.steps))
    errors["after"] = curve[-1]["first_errors"]
    save()
    print("first errors after:", errors["after"])
    print(f"pass@1 {curve[0]['pass@1']:.1%} -> {curve[-1]['pass@1']:.1%} after {result.steps} steps "
          f"(best {max(p['pass@1'] for p in curve):.1%}); {args.out}")


if __name__ == "__main__":
    main()
