"""Standard benchmarks: `lmforge eval`. Validation bits per byte, multiple choice by
log-likelihood (HellaSwag, ARC-Easy, ARC-Challenge, MMLU) with a CORE-style centred average,
and GSM8K by generation.

    lmforge eval --run-dir runs/web                                  # every task found
    lmforge eval --run-dir runs/web eval.tasks=hellaswag,mmlu=/data/mmlu/test eval.limit=500
    torchrun --nproc_per_node 8 -m lmforge eval --run-dir runs/web   # items split across ranks

Data. Each task reads its official file format from `eval.data_dir` (default <run>/eval_data):
HellaSwag's `hellaswag_val.jsonl` (ctx_a, ctx_b / ctx, activity_label, endings, label), AI2's
ARC JSONL (`ARC-Easy-Test.jsonl`: question.stem, question.choices[].text/label, answerKey),
MMLU's CSV folder (`mmlu/*_test.csv`: question, A, B, C, D, answer; no header) and GSM8K's
`test.jsonl` (question, answer ending in "#### N"). The Hugging Face versions of the same data
(Rowan/hellaswag, allenai/ai2_arc, cais/mmlu, openai/gsm8k) load from JSONL files in their
schemas too, or from the hub with eval.hub=true when online. A row missing a field stops the
task with one line naming the file, the row and the field. A task with no file is skipped and
listed with where it was looked for.

Scoring. Multiple choice, zero-shot: each choice is a continuation of the question; its score
is the sum of the model's log-probabilities of the continuation's tokens given
<|bos|> + context (HellaSwag: divided by the continuation's UTF-8 bytes, the usual acc_norm,
since its endings differ in length; ARC and MMLU: the plain sum; MMLU scores the letters
" A".." D" after the lettered choices). Requests are batched (right-padded: causal attention
makes padding invisible to earlier positions), and the item is right when the best-scoring
choice is the labelled one. Accuracy comes with its 95 % Wilson interval (evals/stats.py), and
the centred accuracy (acc - chance) / (1 - chance), chance = mean of 1 / choices, puts tasks
with 2 to 5 choices on one scale: 0 is guessing, 1 is perfect. The CORE-style figure is the
mean centred accuracy of the multiple-choice tasks that ran (DCLM's CORE averages 22 tasks
this way; ours is the same recipe on these four, not the CORE number). GSM8K: greedy answers
from the one generation engine after "Question: ...\\nAnswer:" (with eval.gsm8k_shots worked
examples from the file's first rows before it), stopped at the next "Question:"; right when
the number after "####" (else the last number in the answer) equals the reference's.

Bits per byte is pretraining's validation metric (evals/likelihood.window_eval_fn) on
eval.bpb_windows windows of the run's validation tokens.

Under torchrun every rank scores every len(items) / world_size-th item and the counts are
summed, so the figures do not depend on the number of processes. Results go to
evals/<stage>.json and a section of the report card.
"""
from __future__ import annotations

import csv
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..device import all_reduce_sums, init_distributed, pick_device
from ..files import atomic_write_json
from ..checkpoints import load_for_sampling
from ..engine import fast_path, generate
from ..errors import StageError
from ..tokenizer import TokenizerError, load_split
from .card import markdown_table
from .likelihood import continuation_logprobs, window_eval_fn
from .stats import proportion

MC_TASKS = ("hellaswag", "arc_easy", "arc_challenge", "mmlu")
TASKS = ("bpb", *MC_TASKS, "gsm8k")

# where a task's file is looked for in eval.data_dir, in order
LOCAL_FILES = {
    "hellaswag": ["hellaswag_val.jsonl", "hellaswag*.jsonl"],
    "arc_easy": ["ARC-Easy-Test.jsonl", "ARC-Easy*.jsonl", "arc_easy*.jsonl"],
    "arc_challenge": ["ARC-Challenge-Test.jsonl", "ARC-Challenge*.jsonl", "arc_challenge*.jsonl"],
    "mmlu": ["mmlu/test", "mmlu", "mmlu*.jsonl"],
    "gsm8k": ["gsm8k/test.jsonl", "gsm8k*.jsonl", "test.jsonl"],
}
HUB = {  # name, config, split
    "hellaswag": ("Rowan/hellaswag", None, "validation"),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", "test"),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "test"),
    "mmlu": ("cais/mmlu", "all", "test"),
    "gsm8k": ("openai/gsm8k", "main", "test"),
}
LETTERS = "ABCDEFGHIJ"


class EvalDataError(ValueError):
    """A benchmark file that does not have the expected schema, in one line."""


@dataclass
class Choice:
    """One multiple-choice item: the context, the continuations, the right one's index."""
    context: str
    choices: list[str]
    label: int


@dataclass
class Problem:
    question: str
    solution: str
    answer: str


@dataclass
class TaskData:
    items: list
    source: str
    skipped: dict = field(default_factory=dict)


# ---------------------------------------------------------------- reading the official formats

def _need(row, name: str, where: str):
    if not isinstance(row, dict) or name not in row or row[name] is None:
        raise EvalDataError(f"{where}: missing field {name!r}")
    return row[name]


def _label_index(value, labels: list[str], where: str) -> int:
    text = str(value).strip()
    if text in labels:
        return labels.index(text)
    if text.isdigit() and 0 <= int(text) < len(labels):
        return int(text)
    raise EvalDataError(f"{where}: label {value!r} is none of the choices {labels}")


def _hellaswag_text(text: str) -> str:
    # as lm-evaluation-harness prepares HellaSwag: WikiHow's [title] and [step] markers out
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def parse_hellaswag(row, where: str) -> Choice:
    endings = _need(row, "endings", where)
    if "ctx_a" in row and "ctx_b" in row:
        ctx = row["ctx_a"] + " " + str(row["ctx_b"]).capitalize()
    else:
        ctx = _need(row, "ctx", where)
    label = _need(row, "label", where)
    activity = row.get("activity_label") or ""
    context = _hellaswag_text(f"{activity}: {ctx}" if activity else ctx)
    return Choice(context, [" " + _hellaswag_text(e) for e in endings],
                  _label_index(label, [str(i) for i in range(len(endings))], where))


def parse_arc(row, where: str) -> Choice:
    question = _need(row, "question", where)
    if isinstance(question, dict):        # AI2's own JSONL: question.stem, question.choices[]
        stem = _need(question, "stem", where + " question")
        choices = _need(question, "choices", where + " question")
        texts = [_need(c, "text", where + " choice") for c in choices]
        labels = [str(_need(c, "label", where + " choice")) for c in choices]
    else:                                 # the hub's: question, choices.text, choices.label
        stem = question
        choices = _need(row, "choices", where)
        texts, labels = list(_need(choices, "text", where + " choices")), \
            [str(x) for x in _need(choices, "label", where + " choices")]
    label = _label_index(_need(row, "answerKey", where), labels, where)
    return Choice(f"Question: {stem}\nAnswer:", [" " + t for t in texts], label)


def mmlu_item(question: str, options: list[str], answer, subject: str, where: str) -> Choice:
    letters = list(LETTERS[:len(options)])
    head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    body = question.strip() + "\n" + "".join(f"{letter}. {text}\n" for letter, text in zip(letters, options))
    return Choice(head + body + "Answer:", [" " + letter for letter in letters], _label_index(answer, letters, where))


def parse_mmlu(row, where: str) -> Choice:
    question = _need(row, "question", where)
    options = _need(row, "choices", where)
    return mmlu_item(question, list(options), _need(row, "answer", where), row.get("subject") or "general knowledge",
                     where)


def parse_gsm8k(row, where: str) -> Problem:
    question, solution = _need(row, "question", where), _need(row, "answer", where)
    if "####" not in solution:
        raise EvalDataError(f"{where}: field 'answer' has no '#### <number>' final answer")
    return Problem(question, solution, normalize_number(solution.rsplit("####", 1)[1]))


PARSERS = {"hellaswag": parse_hellaswag, "arc_easy": parse_arc, "arc_challenge": parse_arc,
           "mmlu": parse_mmlu, "gsm8k": parse_gsm8k}


def read_jsonl_rows(path: Path, task: str) -> list:
    items = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvalDataError(f"{where}: not JSON ({err.msg})") from None
            items.append(PARSERS[task](row, where))
    return items


def read_mmlu_csv(folder: Path) -> list:
    """The official MMLU layout: one headerless CSV per subject, question, A, B, C, D, answer."""
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise EvalDataError(f"{folder}: no MMLU *.csv files")
    items = []
    for path in files:
        subject = re.sub(r"_(test|dev|val)$", "", path.stem)
        with open(path, encoding="utf-8", newline="") as f:
            for number, row in enumerate(csv.reader(f), 1):
                where = f"{path}:{number}"
                if len(row) < 6:
                    fields = ["question", "A", "B", "C", "D", "answer"]
                    raise EvalDataError(f"{where}: missing field {fields[len(row)]!r} (MMLU rows are question, "
                                        f"A, B, C, D, answer)")
                items.append(mmlu_item(row[0], row[1:-1], row[-1], subject, where))
    return items


def read_task(task: str, path: Path) -> list:
    path = Path(path)
    if not path.exists():
        raise EvalDataError(f"{task}: {path} does not exist")
    if task == "mmlu" and path.is_dir():
        return read_mmlu_csv(path)
    return read_jsonl_rows(path, task)


def find_local(task: str, data_dir: Path) -> Path | None:
    for pattern in LOCAL_FILES[task]:
        found = sorted(Path(data_dir).glob(pattern))
        if found:
            return found[0]
    return None


def load_task(task: str, spec_path: str | None, data_dir: Path, hub: bool) -> TaskData | str:
    """The task's items, or why it was skipped."""
    path = Path(spec_path) if spec_path else find_local(task, data_dir)
    if path is not None:
        return TaskData(read_task(task, path), str(path))
    if not hub:
        return f"no file in {data_dir} ({', '.join(LOCAL_FILES[task])}); eval.hub=true reads it from the hub"
    import datasets  # the hf extra
    name, config, split = HUB[task]
    rows = datasets.load_dataset(name, config, split=split)
    return TaskData([PARSERS[task](row, f"{name} row {i}") for i, row in enumerate(rows)], f"hub:{name}/{split}")


def spread(items: list, limit: int) -> list:
    """At most `limit` items, evenly spread over the file (0 = all)."""
    if not limit or limit >= len(items):
        return items
    return [items[i] for i in np.unique(np.linspace(0, len(items) - 1, num=limit).astype(int))]


# ---------------------------------------------------------------- scoring

def choice_scores(model, tokenizer, items: list[Choice], batch_size: int, per_byte: bool) -> list[list[float]]:
    """Each item's score per choice: summed log-likelihood, or per UTF-8 byte of the choice."""
    contexts = tokenizer.encode_batch([it.context for it in items])
    requests, owners = [], []
    for n, (item, context) in enumerate(zip(items, contexts)):
        conts = tokenizer.encode_batch(item.choices)
        for cont in conts:
            requests.append(([tokenizer.bos_id] + context, cont))
            owners.append(n)
    logprobs = continuation_logprobs(model, requests, batch_size, tokenizer.pad_id)
    scores: list[list[float]] = [[] for _ in items]
    for n, lp in zip(owners, logprobs):
        scores[n].append(lp)
    if per_byte:
        scores = [[s / max(1, len(c.encode("utf-8"))) for s, c in zip(row, item.choices)]
                  for row, item in zip(scores, items)]
    return scores


def score_choice_task(model, tokenizer, items: list[Choice], batch_size: int, per_byte: bool,
                      rank: int = 0, world_size: int = 1) -> dict:
    """Accuracy of argmax-score choices on this rank's share of items, summed over ranks."""
    mine = items[rank::world_size]
    scores = choice_scores(model, tokenizer, mine, batch_size, per_byte) if mine else []
    right = sum(int(np.argmax(row) == item.label) for row, item in zip(scores, mine))
    chance = sum(1 / len(item.choices) for item in mine)
    right, n, chance = all_reduce_sums(right, len(mine), chance)
    return figures(int(right), int(n), chance / max(n, 1))


def figures(right: int, n: int, chance: float) -> dict:
    """Accuracy with its Wilson interval, and the centred accuracy (the same affine map of both
    ends gives its interval)."""
    result = proportion(right, n)
    centre = lambda p: (p - chance) / (1 - chance) if chance < 1 else 0.0  # noqa: E731
    result.update({"chance": round(chance, 4), "centred": round(centre(result["rate"]), 4),
                   "centred_low": round(centre(result["low"]), 4), "centred_high": round(centre(result["high"]), 4)})
    return result


NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def normalize_number(text: str) -> str:
    """'1,234.50' -> '1234.5'; '' when there is no number."""
    found = NUMBER.findall(text)
    if not found:
        return ""
    value = found[0].replace(",", "")
    return value.rstrip("0").rstrip(".") if "." in value else value


def extract_answer(text: str) -> str:
    """The number after '####' if the model wrote one, else the last number in the text."""
    if "####" in text:
        answer = normalize_number(text.split("####", 1)[1])
        if answer:
            return answer
    numbers = NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else ""


def gsm8k_prompt(problem: Problem, shots: list[Problem]) -> str:
    examples = "".join(f"Question: {s.question}\nAnswer: {s.solution}\n\n" for s in shots)
    return f"{examples}Question: {problem.question}\nAnswer:"


def score_gsm8k(model, tokenizer, problems: list[Problem], shots: list[Problem], max_new_tokens: int,
                rank: int = 0, world_size: int = 1, examples: int = 3) -> dict:
    mine = problems[rank::world_size]
    prompts = [[tokenizer.bos_id] + tokenizer.encode(gsm8k_prompt(p, shots)) for p in mine]
    outs = generate(model, prompts, max_new_tokens=max_new_tokens, temperature=0.0,
                    stop_ids=(tokenizer.end_id, tokenizer.bos_id), stop=("Question:",),
                    tokenizer=tokenizer) if mine else []
    right = sum(int(extract_answer(o.text) == p.answer) for o, p in zip(outs, mine))
    right, n = all_reduce_sums(right, len(mine))
    result = figures(int(right), int(n), 0.0)
    result["examples"] = [{"question": p.question[:200], "reference": p.answer, "answer": o.text.strip()[:300],
                           "extracted": extract_answer(o.text)} for p, o in list(zip(mine, outs))[:examples]]
    return result


def score_bpb(run, cfg, model, tokenizer, rank: int, world_size: int) -> dict | str:
    try:
        val = load_split(run.tokens_dir, "val")
    except TokenizerError as err:
        return str(err)
    seq_len = min(model.cfg.seq_len, cfg.pretrain.seq_len)
    if len(val) < seq_len + 1:
        return f"the validation split has {len(val)} tokens, fewer than seq_len + 1 = {seq_len + 1}"
    device = next(model.parameters()).device
    eval_fn = window_eval_fn(val, cfg.eval.bpb_windows, cfg.eval.batch_size, seq_len, device, rank, world_size,
                             byte_lengths=tokenizer.byte_lengths())
    with torch.no_grad(), fast_path(model):
        value = eval_fn(model)
    return {"bpb": round(value["bpb"], 4), "loss": round(value["loss"], 4), "windows": cfg.eval.bpb_windows,
            "tokens": cfg.eval.bpb_windows * seq_len, "source": str(run.tokens_dir / "val.bin")}


# ---------------------------------------------------------------- the command

def task_specs(tasks: list[str]) -> list[tuple[str, str | None]]:
    specs = []
    for entry in tasks:
        name, _, path = str(entry).partition("=")
        name = name.strip()
        if name not in TASKS:
            raise EvalDataError(f"eval.tasks: unknown task {name!r}; tasks: {', '.join(TASKS)}")
        specs.append((name, path.strip() or None))
    return specs


def run_eval(run, cfg, model, tokenizer, stage: str, rank: int = 0, world_size: int = 1,
             say=print) -> dict:
    """Every task of cfg.eval.tasks on the model; returns (and on rank 0 writes) the results."""
    ecfg = cfg.eval
    data_dir = Path(ecfg.data_dir) if ecfg.data_dir else run.path("eval_data")
    model.eval()
    results: dict = {"stage": stage, "tasks": {}, "skipped": {}, "limit": ecfg.limit}
    started = time.perf_counter()
    for task, path in task_specs(ecfg.tasks):
        began = time.perf_counter()
        if task == "bpb":
            value = score_bpb(run, cfg, model, tokenizer, rank, world_size)
        else:
            data = load_task(task, path, data_dir, ecfg.hub)
            if isinstance(data, str):
                value = data
            elif task == "gsm8k":
                shots, problems = data.items[:ecfg.gsm8k_shots], data.items[ecfg.gsm8k_shots:]
                value = score_gsm8k(model, tokenizer, spread(problems, ecfg.limit), shots,
                                    ecfg.gsm8k_max_new_tokens, rank, world_size)
            else:
                value = score_choice_task(model, tokenizer, spread(data.items, ecfg.limit), ecfg.batch_size,
                                          per_byte=task == "hellaswag", rank=rank, world_size=world_size)
            if not isinstance(value, str):
                value["source"] = data.source
                value["metric"] = ("exact match, greedy" if task == "gsm8k" else
                                   "acc_norm (per byte)" if task == "hellaswag" else "acc")
        if isinstance(value, str):
            results["skipped"][task] = value
            say(f"{task}: skipped, {value}")
            continue
        value["seconds"] = round(time.perf_counter() - began, 2)
        results["tasks"][task] = value
        say(f"{task}: " + (f"{value['bpb']:.4f} bits per byte" if task == "bpb" else
                           f"{value['rate']:.1%} [{value['low']:.1%}, {value['high']:.1%}] of {value['n']}, "
                           f"centred {value['centred']:+.3f}"))
    centred = [results["tasks"][t]["centred"] for t in MC_TASKS if t in results["tasks"]]
    if centred:
        results["core_centred_average"] = {"value": round(float(np.mean(centred)), 4), "tasks": len(centred),
                                           "of": [t for t in MC_TASKS if t in results["tasks"]]}
        say(f"CORE-style centred average over {len(centred)} tasks: {results['core_centred_average']['value']:+.4f}")
    results["seconds"] = round(time.perf_counter() - started, 2)
    results["world_size"] = world_size
    if rank == 0:
        atomic_write_json(run.path("evals", f"{stage}.json"), results)
    return results


def cli_eval(args, run, cfg) -> int:
    device = pick_device(cfg.run.device)
    rank, world_size = init_distributed(device)
    try:
        tokenizer, model, stage = load_for_sampling(run, args.stage)
    except StageError as err:
        print(f"lmforge: {err}", file=sys.stderr)
        return 1
    model = model.to(device)
    say = print if rank == 0 else (lambda *_: None)
    try:
        results = run_eval(run, cfg, model, tokenizer, stage, rank, world_size, say=say)
    except EvalDataError as err:
        print(f"lmforge: {err}", file=sys.stderr)
        return 1
    say(f"{stage}: {len(results['tasks'])} tasks in {results['seconds']:.1f}s -> {run.path('evals', stage + '.json')}")
    return 0


def report_section(run, cfg) -> str | None:
    """The card's section: one row per task and stage evaluated."""
    folder = run.path("evals")
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return None
    rows = []
    for path in files:
        data = json.loads(path.read_text())
        for task, value in data.get("tasks", {}).items():
            if task == "bpb":
                rows.append([data["stage"], "validation bits per byte", f"{value['bpb']:.4f}", "", "",
                             f"{value['tokens']:,} tokens"])
                continue
            rows.append([data["stage"], f"{task} ({value['metric']})", f"{100 * value['rate']:.1f} %",
                         f"{100 * value['low']:.1f}–{100 * value['high']:.1f} %", f"{value['centred']:+.3f}",
                         f"{value['n']:,} items, chance {100 * value['chance']:.0f} %"])
        core = data.get("core_centred_average")
        if core:
            rows.append([data["stage"], f"CORE-style centred average ({', '.join(core['of'])})",
                         f"{core['value']:+.4f}", "", "", f"{core['tasks']} tasks"])
        for task, why in data.get("skipped", {}).items():
            rows.append([data["stage"], task, "skipped", "", "", why[:80]])
    return ("## Standard benchmarks\n\n`lmforge eval`: zero-shot multiple choice by log-likelihood, GSM8K greedy; "
            "accuracy with its 95 % Wilson interval; centred = (acc − chance) / (1 − chance).\n\n"
            + markdown_table(["stage", "task", "score", "95 % interval", "centred", "on"], rows))
