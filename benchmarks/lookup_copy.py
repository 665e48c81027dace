"""Can the model copy a name it has never seen? The skill lookup needs, measured two ways.

    python benchmarks/lookup_copy.py --run-dir runs/tiny                  # base and SFT models
    python benchmarks/lookup_copy.py --run-dir runs/tiny --stages pretrain --questions 0
    python benchmarks/lookup_copy.py --run-dir runs/tiny --questions 400    # every dev question, by attribute
    python benchmarks/lookup_copy.py --run-dir runs/tiny --sft-model /tmp/other/models/sft    # another SFT model

1. In-context copying, no tools: a list of four invented names (lmforge/world/shelf.py's
   `invented_name`, so no entity has them) is shown, then repeated; the figure is the share of
   the repeat's tokens the model predicts greedily (a model with induction heads gets most of
   them; one without gets only what it can guess).
2. Restating a year from a card, no tools: an invented person's card in the reference shelf's
   form ("X: was born in 1752; came from Ulhavn; died in 1801.") and then "X was born in" (or
   "X died in"); the figure is the share of cards whose year the model writes exactly, every
   token of it. This is the step a lookup answer about a number needs.
3. With the SFT model and the built-in tools declared: for `--questions` unseen *dev* questions
   of datasets/lookup_eval.jsonl (never the test part: this is for settings) and as many lookup
   conversations of the SFT data (names the model trained on), the share whose first lookup
   query is exactly the asked name, with a few examples; and per attribute of those dev
   questions: answered right, query exactly the name, and the true value in the tool's result.

Needs a run through sft (for 3: with `synth.tool_use=calls`); writes nothing. A benchmark, never
a test.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.checkpoints import load_model  # noqa: E402
from lmforge.config.loader import load_config  # noqa: E402
from lmforge.evals.chat import ask  # noqa: E402
from lmforge.evals.judge import judge  # noqa: E402
from lmforge.files import read_jsonl  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402
from lmforge.tokenizer import Tokenizer  # noqa: E402
from lmforge.tools.lookup import practice_facts  # noqa: E402
from lmforge.tools.registry import ToolBox  # noqa: E402
from lmforge.world import read_facts  # noqa: E402
from lmforge.world.shelf import invented_name  # noqa: E402


def copy_accuracy(model, tokenizer, taken: set[str], trials: int, seed: int) -> float:
    rng = random.Random(seed)
    right = total = 0
    for _ in range(trials):
        names = ", ".join(invented_name(rng.choice(["person", "place", "animal"]), taken, rng) for _ in range(4)) + "."
        shown = [tokenizer.bos_id] + tokenizer.encode(f"Names: {names} Again: ")
        repeat = tokenizer.encode(names)
        with torch.no_grad():
            logits = model(torch.tensor([shown + repeat]))
        predicted = logits[0, len(shown) - 1:-1].argmax(-1).tolist()
        right += sum(p == t for p, t in zip(predicted, repeat))
        total += len(repeat)
    return round(right / total, 4)


def year_restating(model, tokenizer, taken: set[str], trials: int, seed: int) -> dict:
    rng = random.Random(seed)
    exact = {"born": 0, "died": 0}
    for _ in range(trials):
        name = invented_name("person", taken, rng)
        born = rng.randint(1700, 1899)
        died = born + rng.randint(30, 80)
        card = f"{name}: was born in {born}; came from {invented_name('place', taken, rng)}; died in {died}.\n"
        for field, year in (("born", born), ("died", died)):
            shown = [tokenizer.bos_id] + tokenizer.encode(f"{card}{name} {'was born' if field == 'born' else 'died'} in")
            target = tokenizer.encode(f" {year}")
            with torch.no_grad():
                logits = model(torch.tensor([shown + target]))
            predicted = logits[0, len(shown) - 1:-1].argmax(-1).tolist()
            exact[field] += predicted == target
    return {f"year_{field}_exact": round(k / trials, 4) for field, k in exact.items()}


def by_attribute(model, tokenizer, box, rows: list[dict]) -> dict:
    """Per attribute of unseen dev questions: answered right (the ground-truth judge), first
    query exactly the entity's name, and the true value somewhere in that call's result."""
    answers = ask(model, tokenizer, [r["question"] for r in rows], 192, tools=box)
    table: dict = {}
    for row, answer in zip(rows, answers):
        call = answer.tool_calls[0] if answer.tool_calls else {}
        item = {"known": True, "value": row["value"], "entity": row["entity"], "attribute": row["attribute"],
                "language": row["language"]}
        line = table.setdefault(row["attribute"], {"questions": 0, "right": 0, "query_is_the_name": 0,
                                                   "value_in_result": 0})
        line["questions"] += 1
        line["right"] += judge(answer.text, answer.ended, item).reason.startswith("correct")
        line["query_is_the_name"] += query_of(call) == row["entity"] if call else False
        line["value_in_result"] += row["value"] in str(call.get("result", ""))
    return dict(sorted(table.items(), key=lambda kv: -kv[1]["questions"]))


def query_of(call: dict):
    arguments = call.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    return arguments.get("query") if isinstance(arguments, dict) else None


def query_copies(model, tokenizer, box, questions: list[str], names: list[str]) -> dict:
    answers = ask(model, tokenizer, questions, 96, tools=box)
    queries = [query_of(a.tool_calls[0]) if a.tool_calls else None for a in answers]
    return {"questions": len(questions), "query_is_the_name": sum(q == n for q, n in zip(queries, names)),
            "examples": [f"{n} -> {q!r}: {a.text[:70]}" for n, q, a in list(zip(names, queries, answers))[:5]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--stages", default="pretrain,sft")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sft-model", default=None, help="an SFT model folder other than the run's (same tokenizer)")
    args = ap.parse_args()
    run = RunDir(args.run_dir)
    tokenizer = Tokenizer.load(run.root / "tokenizer")
    taken = {f["entity"].lower() for f in read_facts(run.world_dir / "facts.jsonl") + practice_facts(run)}
    result: dict = {}
    sft_dir = Path(args.sft_model) if args.sft_model else run.model_dir("sft")
    for stage in args.stages.split(","):
        model = load_model(sft_dir if stage == "sft" else run.model_dir(stage))
        model.eval()
        result[stage] = {"in_context_copy_token_accuracy": copy_accuracy(model, tokenizer, taken, args.trials,
                                                                         args.seed),
                         **year_restating(model, tokenizer, taken, 2 * args.trials, args.seed)}
    if args.questions and "sft" in result:
        rng = random.Random(args.seed)
        cfg = load_config(base=run.root / "config.yaml")
        box = ToolBox.from_config(["calculator", "lookup"], run, cfg.tools)
        model = load_model(sft_dir)
        model.eval()
        dev = [r for r in read_jsonl(run.path("datasets", "lookup_eval.jsonl")) if r["split"] == "unseen_dev"]
        dev = rng.sample(dev, min(args.questions, len(dev)))
        trained = [row["messages"] for row in read_jsonl(run.path("datasets", "sft.jsonl"))
                   if row.get("tools") and len(row["messages"]) > 1
                   and (row["messages"][1].get("tool_calls") or [{}])[0].get("function", {}).get("name") == "lookup"]
        trained = rng.sample(trained, min(args.questions, len(trained)))
        result["sft"]["dev_questions"] = query_copies(model, tokenizer, box, [r["question"] for r in dev],
                                                      [r["entity"] for r in dev])
        result["sft"]["trained_names"] = query_copies(
            model, tokenizer, box, [m[0]["content"] for m in trained],
            [m[1]["tool_calls"][0]["function"]["arguments"]["query"] for m in trained])
        result["sft"]["dev_by_attribute"] = by_attribute(model, tokenizer, box, dev)
        box.close()
    print(json.dumps(result, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
