"""Reasoning evaluation: pass@1 (greedy) and pass@k (sampled) on held-out problems, per difficulty.

    from lmforge.evals.reasoning import evaluate_reasoning
    result = evaluate_reasoning(model, tokenizer, tasks, k=8, temperature=1.0, max_new_tokens=64, seed=0)
    result["pass@1"], result["pass@k"], result["by_difficulty"]["2"]

A completion is correct when the answer it states (data/reasoning.extract_answer: after
"The answer is" / "Svaret er" / "####", else its last number) equals the reference.
pass@1 is the greedy answer; pass@k is the unbiased estimator of Chen et al. (2021),
1 - C(n-c, k) / C(n, k), from n = k samples at `temperature`, which with n = k is simply
"at least one of the k samples is right". `sampled_accuracy` is the mean over all samples.
Sampling k completions costs k greedy ones, so pass@k may use a subset (`k_per_difficulty`)
while pass@1 uses every held-out problem: more problems, less noise, same time.

With tools (a ToolBox) the tasks' prompts declare them and the model may call them while it
answers (the one tool loop, lmforge/tools/session.py); the text judged is the answer's text,
without calls and results. Every evaluation also reads the greedy answers' worked steps:
`equations` and `wrong_results` (steps "a op b = c" whose c is not a op b), and where each
wrong answer first leaves the reference solution (`errors`, `error_kind`): an operand or
operator read wrongly from the question (`misread_operand`), a wrong result
(`wrong_result`), or neither (`other`: a different number of steps, no steps, no answer).
"""
from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from decimal import Decimal, InvalidOperation
from pathlib import Path
from math import comb

from ..tasks.reasoning import Task, extract_answer
from ..engine import generate
from .judge import judge, load_index, value_kind
from .card import markdown_table, new_figure, pct, read_log, save_figure
from .overlap import equations

ERROR_KINDS = ("misread_operand", "wrong_result", "other")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def is_correct(text: str, answer: str) -> bool:
    said = extract_answer(text)
    return said is not None and said == answer


def is_right(text: str, answer: str, columns: dict) -> bool:
    """Whether a completion answers its task: the final answer equals the reference, or, for a
    task whose `judge` column is "fact" (lookup questions, lmforge/tasks/lookup_rl.py), the
    ground-truth judge (lmforge/evals/judge.py) finds the fact stated (`known` rows) or an
    "I don't know" (unanswerable rows), with the run's fact table when the row names it."""
    if columns.get("judge") != "fact":
        return is_correct(text, answer)
    known = bool(columns.get("known"))
    facts = columns.get("facts")
    index = load_index(facts) if facts and Path(facts).exists() else None
    item = {"known": known, "value": columns.get("value"), "entity": columns.get("entity", ""),
            "attribute": columns.get("attribute", ""), "language": columns.get("language", "en")}
    return judge(text, True, item, index).reason.startswith("correct" if known else "idk_unknown")


def step_is_right(a: str, op: str, b: str, c: str) -> bool:
    """Whether one worked step "a op b = c" computes right."""
    try:
        x, y, z = Decimal(a), Decimal(b), Decimal(c)
    except InvalidOperation:
        return False
    return {"+": x + y, "-": x - y, "×": x * y}.get(op) == z


def error_kind(text: str, solution: str | None) -> str:
    """Where a wrong answer first leaves the reference worked solution (see the module docstring)."""
    for want, got in zip(equations(solution or ""), equations(text)):
        if want[:3] != got[:3]:
            return "misread_operand"
        if want[3] != got[3]:
            return "wrong_result"
    return "other"


def with_tools(tasks: list[Task], tokenizer, tools) -> list[Task]:
    """The tasks with prompts that declare `tools` (a ToolBox; None: without tools)."""
    schemas = tools.schemas() if tools is not None else None
    return [dataclasses.replace(t, prompt_ids=tokenizer.render_chat(t.prompt, add_generation_prompt=True,
                                                                   tools=schemas)[0]) for t in tasks]


def _complete(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, temperature: float, seed: int,
              batch_size: int, tools=None, calls: Counter | None = None) -> list[str]:
    texts = []
    for start in range(0, len(prompts), batch_size):
        outs = generate(model, prompts[start:start + batch_size], max_new_tokens=max_new_tokens,
                        temperature=temperature, seed=seed + start, stop_ids=(tokenizer.end_id,),
                        tokenizer=tokenizer, tools=tools)
        texts += [o.text.strip() for o in outs]
        if calls is not None:
            for o in outs:
                calls["calls"] += len(o.tool_calls or [])
                calls["malformed"] += sum(bool(c.get("malformed")) for c in o.tool_calls or [])
    return texts


def evaluate_reasoning(model, tokenizer, tasks: list[Task], k: int, temperature: float, max_new_tokens: int,
                       seed: int, batch_size: int = 128, examples: int = 4, k_per_difficulty: int = 0,
                       tools=None) -> dict:
    """pass@1 (greedy), pass@k and mean sampled accuracy, overall and per difficulty, plus examples.

    Greedy decoding is k times cheaper than sampling k completions, so pass@1 can use every
    task while pass@k and sampled accuracy use only the first `k_per_difficulty` tasks of
    each difficulty (0 = all); "n" counts the pass@1 tasks, "n_sampled" the pass@k ones
    ("correct" the greedy answers that are right). k = 0 samples nothing: pass@1 only.
    tools: a ToolBox the prompts declare and the model may call (the tasks are re-rendered)."""
    if not tasks:
        return {"n": 0, "n_sampled": 0, "correct": 0, "pass@1": 0.0, "pass@k": 0.0, "k": k, "sampled_accuracy": 0.0,
                "by_difficulty": {}, "examples": [], "errors": {}, "equations": 0, "wrong_results": 0}
    was_training = model.training
    model.eval()
    prompts = [t.prompt_ids for t in with_tools(tasks, tokenizer, tools)]
    calls: Counter = Counter()
    greedy = _complete(model, tokenizer, prompts, max_new_tokens, 0.0, seed, batch_size, tools, calls)
    seen: dict[str, int] = defaultdict(int)
    sample_ids = []
    for i, task in enumerate(tasks):
        level = str(task.columns.get("difficulty", "?"))
        if k and (not k_per_difficulty or seen[level] < k_per_difficulty):     # k = 0: greedy pass@1 only
            sample_ids.append(i)
            seen[level] += 1
    texts = _complete(model, tokenizer, [prompts[i] for i in sample_ids for _ in range(k)], max_new_tokens,
                      temperature, seed, batch_size, tools)
    sampled = {i: texts[j * k:(j + 1) * k] for j, i in enumerate(sample_ids)}
    model.train(was_training)
    tallies: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0, 0.0, 0.0])   # n, pass@1, n_sampled, pass@k, sampled
    rows = []
    for i, task in enumerate(tasks):
        ok_greedy = is_right(greedy[i], task.answer, task.columns)
        right = sum(is_right(text, task.answer, task.columns) for text in sampled[i]) if i in sampled else None
        for key in ("all", str(task.columns.get("difficulty", "?"))):
            tally = tallies[key]
            tally[0] += 1
            tally[1] += ok_greedy
            if right is not None:
                tally[2] += 1
                tally[3] += pass_at_k(k, right, k)
                tally[4] += right / k
        rows.append((task, greedy[i], ok_greedy))

    def summary(tally):
        n, n_sampled = tally[0], max(tally[2], 1)
        return {"n": n, "n_sampled": tally[2], "correct": tally[1], "pass@1": round(tally[1] / n, 4),
                "pass@k": round(tally[3] / n_sampled, 4), "sampled_accuracy": round(tally[4] / n_sampled, 4)}
    result = {**summary(tallies["all"]), "k": k, "temperature": temperature,
              "by_difficulty": {key: summary(t) for key, t in sorted(tallies.items()) if key != "all"}}
    # lookup questions with an answer: greedy pass@1 by the kind of value (numbers are what a
    # small model copies worst from a result: docs/LOG.md)
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for task, _, ok in rows:
        if task.columns.get("judge") == "fact" and task.columns.get("known"):
            tally = kinds[value_kind(task.columns.get("value"))]
            tally[0] += 1
            tally[1] += ok
    if kinds:
        result["by_value_kind"] = {kind: {"n": n, "correct": right, "pass@1": round(right / n, 4)}
                                   for kind, (n, right) in sorted(kinds.items())}
    # the greedy answers' worked steps: wrong results, and where wrong answers first go wrong
    steps = [step for text in greedy for step in equations(text)]
    result["equations"] = len(steps)
    result["wrong_results"] = sum(not step_is_right(*step) for step in steps)
    errors = Counter({kind: 0 for kind in ERROR_KINDS})
    errors.update(error_kind(text, task.columns.get("solution")) for task, text, ok in rows if not ok)
    result["errors"] = dict(errors)
    result["tools"] = tools.names if tools is not None else []
    if tools is not None:
        result["tool_calls"] = dict(calls)
    # a few examples, spread over the difficulty levels
    by_level: dict[str, list] = defaultdict(list)
    for task, text, ok in rows:
        by_level[str(task.columns.get("difficulty", "?"))].append((task, text, ok))
    picked = []
    for index in range(len(tasks)):
        for level in sorted(by_level):
            if index < len(by_level[level]) and len(picked) < examples:
                picked.append(by_level[level][index])
    result["examples"] = [{"question": t.prompt[-1]["content"], "answer": t.answer,
                           "difficulty": t.columns.get("difficulty"), "solution": t.columns.get("solution"),
                           "completion": text, "correct": ok} for t, text, ok in picked]
    return result


# ---------------------------------------------------------------- the report card section

def _plot_rewards(log_path, out_png) -> bool:
    rows = read_log(log_path, "reward_mean")
    if not rows:
        return False
    steps = [r["step"] for r in rows]
    fig, ax = new_figure()
    rewards = [r["reward_mean"] for r in rows]
    ax.plot(steps, rewards, label="reward (mean of the step's completions)", lw=0.8, alpha=0.5)
    window = 10      # each step draws new prompts, so one step's reward is noisy; the running mean shows the trend
    smooth = [sum(rewards[max(0, i - window + 1):i + 1]) / len(rewards[max(0, i - window + 1):i + 1])
              for i in range(len(rewards))]
    ax.plot(steps, smooth, label=f"reward, running mean of {window} steps", lw=1.6)
    ax.plot(steps, [r["zero_std_fraction"] for r in rows], label="groups with equal rewards (skipped)", lw=1,
            alpha=0.7)
    ax.set_xlabel("GRPO step")
    ax.set_ylim(-0.02, max(1.02, max(r["reward_mean"] for r in rows) + 0.02))
    ax.set_title("GRPO rollouts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out_png)


def held_out_note(m: dict) -> str:
    """Where the test problems came from and what they share with training, in words."""
    source = m.get("held_out_source")
    overlap = (m.get("overlap") or {}).get("test") or {}
    if source is None:
        return "the held-out split of the run's problems"
    if "chains_in_training" in overlap:
        where = ("their solution chains (operands and operators) never occur in the SFT worked examples or "
                 f"the RL prompts' solutions (found in training: {overlap['chains_in_training']} chains, "
                 f"{overlap['same_prompt_in_training']} prompts)")
    else:
        where = f"none of their prompts is a training prompt ({overlap.get('same_prompt_in_training')} found)"
    dev = m.get("dev_before", {}).get("n")
    name = Path(source).name if source.endswith(".jsonl") else source
    return f"{name}; {where}; dev problems ({dev}) are for choosing settings"


def level_label(level) -> str:
    """A row label for a difficulty level: "2 steps" for word problems, the level's own name
    ("unseen", "unanswerable") for lookup questions."""
    level = str(level)
    return f"{level} step{'s' if level != '1' else ''}" if level.isdigit() else level


def report_section(run, cfg) -> str | None:
    """Markdown for the report card from the grpo manifest (the stage measured before and after)."""
    manifest = run.read_manifest("grpo")
    if not manifest or manifest.get("status") != "done":
        return None
    m = manifest.get("metrics") or {}
    before, after = m.get("before") or {}, m.get("after") or {}
    if not before or not after:
        return None
    k = m.get("k", before.get("k"))

    rows = []
    for level in sorted(set(before.get("by_difficulty", {})) | set(after.get("by_difficulty", {})), key=str):
        b, a = before["by_difficulty"].get(level, {}), after["by_difficulty"].get(level, {})
        rows.append([level_label(level), b.get("n", a.get("n")),
                     pct(b.get("pass@1")), pct(a.get("pass@1")), pct(b.get("pass@k")), pct(a.get("pass@k"))])
        if level == "unseen":     # lookup: the unseen questions again, by the kind of answer
            for kind in sorted(set(before.get("by_value_kind", {})) | set(after.get("by_value_kind", {}))):
                b, a = before.get("by_value_kind", {}).get(kind, {}), after.get("by_value_kind", {}).get(kind, {})
                rows.append([f"  unseen, a {kind} for answer", b.get("n", a.get("n")), pct(b.get("pass@1")),
                             pct(a.get("pass@1")), "", ""])
    rows.append(["**all**", before.get("n"), f"**{pct(before.get('pass@1'))}**", f"**{pct(after.get('pass@1'))}**",
                 pct(before.get("pass@k")), pct(after.get("pass@k"))])
    lookup = m.get("task_kind") == "lookup"
    unit = "questions" if lookup else "problems"
    header = ["questions about" if lookup else "difficulty", unit, "pass@1 SFT", "pass@1 GRPO", f"pass@{k} SFT",
              f"pass@{k} GRPO"]
    n_sampled = before.get("n_sampled")
    subset = (f" (measured on {n_sampled} of the {before.get('n')} problems: sampling costs {k} greedy answers)"
              if isinstance(n_sampled, int) and n_sampled < before.get("n", 0) else "")
    text = ["## Reasoning RL (GRPO): the reasoning model" + (" (on lookup questions)" if lookup else ""), "",
            f"{m.get('steps')} GRPO steps ({m.get('completions', 0):,} sampled completions) in "
            f"{m.get('train_seconds', 0):.0f}s, stop: {m.get('stop_reason')}; {pct(m.get('zero_std_group_fraction'))}"
            f" of groups had equal rewards{' and were skipped' if m.get('skip_flat_groups', True) else ''}. "
            f"Test {unit}: {held_out_note(m)}; pass@1 is the greedy answer, pass@{k} the chance that one of {k} "
            f"samples at temperature {before.get('temperature')} is right{subset}.", "", markdown_table(header, rows)]
    errors = m.get("reward_errors") or {}
    if errors:
        text += ["", "Reward function problems (each counted as reward 0): " +
                 ", ".join(f"{k_}: {v}" for k_, v in sorted(errors.items()))]
    if _plot_rewards(run.log_path("grpo"), run.report_dir / "grpo_reward.png"):
        text += ["", "![GRPO reward](grpo_reward.png)"]
    examples = m.get("examples") or []
    if examples:
        mark = lambda ok: "right" if ok else "wrong"  # noqa: E731
        text += ["", "### Worked examples (greedy)", "",
                 markdown_table(["question", "reference", "SFT model", "GRPO model"],
                        [[e["question"], e.get("solution") or e["answer"],
                          f"{e['sft_completion'][:120]} ({mark(e['sft_correct'])})",
                          f"{e['grpo_completion'][:120]} ({mark(e['grpo_correct'])})"] for e in examples])]
    return "\n".join(text)

