"""Chat evaluation: ask the model the fact table's questions and check its answers.

    from lmforge.evals.chat import ask, sft_evaluation
    answers = ask(model, tokenizer, ["Where did Ada Berg come from?"])
    result = sft_evaluation(model, tokenizer, "runs/tiny/datasets/sft_eval.jsonl", limit=400)

A question is rendered as one user turn plus the assistant prompt (the same rendering
as training), answered greedily, and counted correct when the answer contains the true
value as a whole word or number. An answer "ends properly" when the model itself
emitted <|end|> before the token limit.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..files import read_jsonl
from ..generate import generate
from .facts import select_facts


@dataclass
class Answer:
    text: str
    ended: bool      # the model emitted <|end|> itself


def ask(model, tokenizer, questions: list[str], max_new_tokens: int = 64, batch_size: int = 64,
        system: str | None = None) -> list[Answer]:
    answers = []
    for start in range(0, len(questions), batch_size):
        prompts = []
        for question in questions[start:start + batch_size]:
            messages = ([{"role": "system", "content": system}] if system else []) + \
                [{"role": "user", "content": question}]
            prompts.append(tokenizer.render_chat(messages, add_generation_prompt=True)[0])
        outs = generate(model, prompts, max_new_tokens=max_new_tokens, temperature=0.0,
                        stop_ids=(tokenizer.end_id,))
        answers += [Answer(tokenizer.decode(o.tokens).strip(), o.finish_reason == "stop") for o in outs]
    return answers


def states_value(answer: str, value: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(value) + r"(?!\w)", answer) is not None


def qa_accuracy(model, tokenizer, facts: list[dict], limit: int) -> dict:
    chosen = select_facts(facts, limit, held_out=False)
    if not chosen:
        return {"accuracy": 0.0, "end_rate": 0.0, "n": 0, "by_language": {}, "examples": []}
    answers = ask(model, tokenizer, [f["question"] for f in chosen])
    by_language: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    correct = ended = 0
    examples = []
    for fact, answer in zip(chosen, answers):
        ok = states_value(answer.text, fact["value"])
        correct, ended = correct + ok, ended + answer.ended
        by_language[fact["language"]][0] += ok
        by_language[fact["language"]][1] += 1
        if len(examples) < 8:
            examples.append({"question": fact["question"], "value": fact["value"], "answer": answer.text,
                             "correct": ok, "ended": answer.ended})
    return {"accuracy": round(correct / len(chosen), 4), "end_rate": round(ended / len(chosen), 4),
            "n": len(chosen), "by_language": {k: round(a / b, 4) for k, (a, b) in sorted(by_language.items())},
            "examples": examples}


def sft_evaluation(model, tokenizer, eval_path: str | Path, limit: int) -> dict:
    """Accuracy on facts SFT trained on and on facts it never saw (known only from pretraining)."""
    rows = read_jsonl(eval_path)
    # select_facts filters on the world's held_out flag; every row here is a trained entity
    trained = [{**r, "held_out": False} for r in rows if r["split"] == "trained"]
    held = [{**r, "held_out": False} for r in rows if r["split"] == "held_out"]
    on_trained = qa_accuracy(model, tokenizer, trained, limit)
    on_held = qa_accuracy(model, tokenizer, held, limit)
    asked = on_trained["n"] + on_held["n"]
    end_rate = (on_trained["end_rate"] * on_trained["n"] + on_held["end_rate"] * on_held["n"]) / max(asked, 1)
    return {
        "trained_fact_accuracy": on_trained["accuracy"],
        "held_out_fact_accuracy": on_held["accuracy"],
        "end_rate": round(end_rate, 4),
        "questions_asked": asked,
        "trained_by_language": on_trained["by_language"],
        "held_out_by_language": on_held["by_language"],
        "examples": on_trained["examples"][:4] + on_held["examples"][:4],
    }
