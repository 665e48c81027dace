"""Chat evaluation: ask the model the fact table's questions and check its answers.

    from lmforge.evals.chat import ask, sft_evaluation
    answers = ask(model, tokenizer, ["Where did Ada Berg come from?"])
    result = sft_evaluation(model, tokenizer, "runs/tiny/datasets/sft_eval.jsonl", limit=400)

A question is rendered as one user turn plus the assistant prompt (the same rendering
as training), answered greedily, and counted correct when the ground-truth judge
(lmforge/evals/judge.py) calls it correct: it states the true value as a whole word or
number and does not hedge between values, negate it or say "I don't know" beside it. An
answer "ends properly" when the model itself emitted <|end|> before the token limit.

sft_evaluation asks three sets of datasets/sft_eval.jsonl: facts SFT trained on, and the
facts it held out, split into a dev part (for choosing SFT settings) and a test part (the
headline figure, used for nothing else). Each comes with its size and 95 % interval.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..files import read_jsonl
from ..generate import generate
from .facts import select_facts
from .judge import judge
from .stats import proportion


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


def qa_accuracy(model, tokenizer, facts: list[dict], limit: int, index=None) -> dict:
    """Greedy answers to the facts' questions (an evenly spread `limit` of them), judged;
    index: the run's JudgeIndex (lmforge/evals/judge.py)."""
    chosen = select_facts(facts, limit, held_out=False)
    if not chosen:
        return {"accuracy": 0.0, "end_rate": 0.0, "n": 0, "correct": 0, "by_language": {}, "examples": []}
    answers = ask(model, tokenizer, [f["question"] for f in chosen])
    by_language: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    correct = ended = 0
    examples = []
    for fact, answer in zip(chosen, answers):
        item = {"known": True, "value": fact["value"], "entity": fact.get("entity"),
                "attribute": fact.get("attribute"), "language": fact.get("language")}
        ok = judge(answer.text, answer.ended, item, index).reason.startswith("correct")
        correct, ended = correct + ok, ended + answer.ended
        by_language[fact["language"]][0] += ok
        by_language[fact["language"]][1] += 1
        if len(examples) < 8:
            examples.append({"question": fact["question"], "value": fact["value"], "answer": answer.text,
                             "correct": ok, "ended": answer.ended})
    return {"accuracy": round(correct / len(chosen), 4), "end_rate": round(ended / len(chosen), 4),
            "n": len(chosen), "correct": correct,
            "by_language": {k: round(a / b, 4) for k, (a, b) in sorted(by_language.items())}, "examples": examples}


def sft_evaluation(model, tokenizer, eval_path: str | Path, limit: int, index=None) -> dict:
    """Accuracy on facts SFT trained on and on facts it never saw (known only from pretraining):
    the held-out test part (headline) and dev part, each with a 95 % Wilson interval."""
    rows = read_jsonl(eval_path)
    # select_facts filters on the world's held_out flag; every row here is a trained entity
    sets = {"trained": [{**r, "held_out": False} for r in rows if r["split"] == "trained"],
            "test": [{**r, "held_out": False} for r in rows if r["split"] == "held_out" and r.get("subset") != "dev"],
            "dev": [{**r, "held_out": False} for r in rows if r["split"] == "held_out" and r.get("subset") == "dev"]}
    results = {name: qa_accuracy(model, tokenizer, facts, limit, index) for name, facts in sets.items()}
    asked = sum(r["n"] for r in results.values())
    end_rate = sum(r["end_rate"] * r["n"] for r in results.values()) / max(asked, 1)
    on_trained, on_test, on_dev = results["trained"], results["test"], results["dev"]
    return {
        "trained_fact_accuracy": on_trained["accuracy"],
        "held_out_fact_accuracy": on_test["accuracy"],
        "held_out_fact_accuracy_dev": on_dev["accuracy"],
        "end_rate": round(end_rate, 4),
        "questions_asked": asked,
        "figures": {"held_out_facts": proportion(on_test["correct"], on_test["n"]),
                    "held_out_facts_dev": proportion(on_dev["correct"], on_dev["n"]),
                    "trained_facts": proportion(on_trained["correct"], on_trained["n"]),
                    "answers_ending": proportion(round(end_rate * asked), asked)},
        "trained_by_language": on_trained["by_language"],
        "held_out_by_language": on_test["by_language"],
        "examples": on_trained["examples"][:4] + on_test["examples"][:4],
    }
