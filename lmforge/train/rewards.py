"""GRPO's verifiable rewards: the built-in reward functions, plug-in lookup and the weighted score.

    from lmforge.train.rewards import resolve_reward, score
    fns = [("correctness", resolve_reward("correctness"), 1.0), ("format", resolve_reward("format"), 0.1)]
    total, per_function = score(fns, prompts, completions, {"answer": answers}, errors)

A reward function is any callable `fn(prompts, completions, **columns) -> list[float | None]`:
`prompts` are the message lists, `completions` the generated texts, and each dataset column
comes as a list aligned with the completions (plus `answer`). None means "does not apply".
Built in: `correctness` (1 when the extracted answer equals the reference), `format`
(1 when the completion ends with "The answer is N." / "Svaret er N."), `steps` (partial
credit: the share of the reference worked solution's equations reproduced in order; None
on rows without a `solution` column) and `tool_format` (the share of the completion's tool
calls that parse; None without calls). With tools, `completions` are the answer's text
(calls and results left out) and the `tool_calls` column holds each completion's calls.
"""
from __future__ import annotations

import math
import numbers
import re
from collections import Counter
from typing import Callable

from ..tasks.reasoning import NUMBER, extract_answer, normalize_answer
from ..evals.overlap import equations
from ..evals.reasoning import is_right
from ..plugins import import_callable

_FORMAT_END = re.compile(r"(?:The answer is|Svaret er) " + NUMBER + r"\.?\s*$")


def correctness_reward(prompts, completions, answer, **columns) -> list[float]:
    """1.0 when the completion's final answer equals the reference answer, else 0.0. Rows whose
    `judge` column is "fact" (lookup questions) are judged as the evaluation judges them
    (lmforge/evals/reasoning.py's is_right): the fact stated, or "I don't know" when unanswerable."""
    judges = columns.get("judge") or [None] * len(completions)
    rewards = []
    for i, (completion, reference) in enumerate(zip(completions, answer)):
        if judges[i] == "fact":
            right = is_right(completion, reference, {name: values[i] for name, values in columns.items()})
            rewards.append(1.0 if right else 0.0)
            continue
        said = extract_answer(completion)
        if said is None:   # a non-numeric reference can still match a stated text answer
            said = normalize_answer(completion.strip().split("\n")[-1]) if completion.strip() else None
        rewards.append(1.0 if said is not None and said == normalize_answer(reference) else 0.0)
    return rewards


def format_reward(prompts, completions, **columns) -> list[float]:
    """1.0 when the completion ends with the answer line ("The answer is N." / "Svaret er N.")."""
    return [1.0 if _FORMAT_END.search(completion.strip()) else 0.0 for completion in completions]


def steps_reward(prompts, completions, solution=None, **columns) -> list[float | None]:
    """Partial credit from the reference worked solution (a verifiable process reward): the
    fraction of its equations the completion reproduces, in order, before the first one it
    gets wrong, over the longer of the two chains (extra steps cost too). None for rows
    without a `solution` column, so it adds nothing on data that has none."""
    solution = solution if solution is not None else [None] * len(completions)
    rewards: list[float | None] = []
    for completion, reference in zip(completions, solution):
        ref = equations(reference) if isinstance(reference, str) else []
        if not ref:
            rewards.append(None)
            continue
        got = equations(completion)
        right = 0
        for mine, theirs in zip(got, ref):
            if mine != theirs:
                break
            right += 1
        rewards.append(right / max(len(ref), len(got)))
    return rewards


def tool_format_reward(prompts, completions, tool_calls=None, **columns) -> list[float | None]:
    """The share of a completion's tool calls that parse and name a tool on offer (a small
    format reward for GRPO with tools); None for completions that made no call."""
    tool_calls = tool_calls if tool_calls is not None else [None] * len(completions)
    rewards: list[float | None] = []
    for calls in tool_calls:
        if not calls:
            rewards.append(None)
            continue
        rewards.append(sum(not c.get("malformed") for c in calls) / len(calls))
    return rewards


BUILTIN_REWARDS: dict[str, Callable] = {"correctness": correctness_reward, "format": format_reward,
                                        "steps": steps_reward, "tool_format": tool_format_reward}


def resolve_reward(spec: str) -> Callable:
    """A built-in name or "package.module:function"; raises ValueError with one clear line."""
    if spec in BUILTIN_REWARDS:
        return BUILTIN_REWARDS[spec]
    if ":" not in spec:
        raise ValueError(f"unknown reward {spec!r}; built in: {', '.join(BUILTIN_REWARDS)}, "
                         f"or give module:function")
    return import_callable(spec, "reward")


def score(reward_fns: list[tuple[str, Callable, float]], prompts: list, completions: list[str],
          columns: dict[str, list], errors: Counter) -> tuple[list[float], dict[str, list[float]]]:
    """Weighted sum of every reward function per completion, and each function's own values.

    A function that raises, returns the wrong number of values or a value that is not a
    finite number gives 0 for those completions, and the reason is counted in `errors`:
    one bad reward function never stops training. None means "does not apply" (adds 0).
    """
    n = len(completions)
    total = [0.0] * n
    per_function = {}
    for name, fn, weight in reward_fns:
        try:
            values = fn(prompts=prompts, completions=completions, **columns)
        except Exception as err:  # noqa: BLE001 - a user's reward function may fail in any way
            errors[f"{name}:raised:{type(err).__name__}"] += n
            values = [0.0] * n
        values = values.tolist() if hasattr(values, "tolist") else values      # numpy / torch arrays too
        if not isinstance(values, (list, tuple)):
            errors[f"{name}:not_a_list"] += n
            values = [0.0] * n
        if len(values) != n:
            errors[f"{name}:returned_{len(values)}_values_for_{n}"] += n
            values = [0.0] * n
        clean = []
        for value in values:
            if value is None:
                clean.append(0.0)
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                errors[f"{name}:not_a_number"] += 1
                clean.append(0.0)
                continue
            clean.append(float(value))
        per_function[name] = clean
        total = [t + weight * v for t, v in zip(total, clean)]
    return total, per_function
