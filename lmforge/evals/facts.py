"""Fact completion: does the base model continue "Ada Berg was born in" with the true value?

    from lmforge.evals.facts import fact_accuracy
    result = fact_accuracy(model, tokenizer, facts, limit=600)

Each fact row of the world's fact table carries a cloze `prompt` and its `value`. The
model sees `<|bos|>` + prompt and decodes greedily; a completion is right when it starts
with the exact value and the value is not the start of a longer word or number
("19" is not "1943"). Only trained entities are checked unless `held_out=True`.
"""
from __future__ import annotations

from collections import defaultdict

from ..engine import generate


def select_facts(facts: list[dict], limit: int, held_out: bool = False) -> list[dict]:
    """A deterministic, evenly spread subset, so the figure is comparable between runs."""
    pool = [f for f in facts if bool(f.get("held_out")) == held_out]
    if len(pool) <= limit:
        return pool
    stride = len(pool) / limit
    return [pool[int(i * stride)] for i in range(limit)]


def completion_matches(completion: str, value: str) -> bool:
    text = completion.lstrip()
    if not text.startswith(value):
        return False
    rest = text[len(value):]
    return not rest or not rest[0].isalnum()


def fact_accuracy(model, tokenizer, facts: list[dict], limit: int = 600, batch_size: int = 64,
                  held_out: bool = False) -> dict:
    chosen = select_facts(facts, limit, held_out=held_out)
    if not chosen:
        return {"accuracy": 0.0, "n": 0, "by_language": {}, "by_attribute": {}, "examples": []}
    correct = 0
    by_language: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_attribute: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    examples = []
    for start in range(0, len(chosen), batch_size):
        rows = chosen[start:start + batch_size]
        prompts = [[tokenizer.bos_id] + tokenizer.encode(row["prompt"]) for row in rows]
        max_new = max(len(tokenizer.encode(" " + row["value"])) for row in rows) + 2
        outputs = generate(model, prompts, max_new_tokens=max_new, temperature=0.0,
                           stop_ids=(tokenizer.end_id, tokenizer.bos_id))
        for row, out in zip(rows, outputs):
            completion = tokenizer.decode(out.tokens)
            ok = completion_matches(completion, row["value"])
            correct += ok
            for table, key in ((by_language, row["language"]), (by_attribute, row["attribute"])):
                table[key][0] += ok
                table[key][1] += 1
            if len(examples) < 12:
                examples.append({"prompt": row["prompt"], "value": row["value"],
                                 "completion": completion, "correct": ok})
    ratio = lambda pair: round(pair[0] / pair[1], 4)  # noqa: E731
    return {
        "accuracy": round(correct / len(chosen), 4),
        "n": len(chosen),
        "by_language": {k: ratio(v) for k, v in sorted(by_language.items())},
        "by_attribute": {k: ratio(v) for k, v in sorted(by_attribute.items())},
        "examples": examples,
    }
