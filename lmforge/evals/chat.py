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

lookup_evaluation asks datasets/lookup_eval.jsonl (lmforge/tasks/tool_data.py) with the
tools offered and without: questions about unseen entities of the test (headline) and dev
partitions, which only the lookup tool's reference shelf can answer (correct with lookup;
"I don't know" or made up without), and questions about invented names that lookup cannot
answer ("I don't know" with lookup). It also counts the tool calls and the malformed ones.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..files import read_jsonl
from ..engine import generate
from .facts import select_facts
from .judge import judge, value_kind
from .stats import proportion


@dataclass
class Answer:
    text: str
    ended: bool      # the model emitted <|end|> itself
    tool_calls: list = field(default_factory=list)   # with tools: the calls it made (lmforge/engine/tool_loop.py)


def ask(model, tokenizer, questions: list[str], max_new_tokens: int = 64, batch_size: int = 64,
        system: str | None = None, tools=None) -> list[Answer]:
    """Greedy answers; with tools (a ToolBox) they are declared in the prompt and run mid-answer."""
    answers = []
    schemas = tools.schemas() if tools is not None else None
    for start in range(0, len(questions), batch_size):
        prompts = []
        for question in questions[start:start + batch_size]:
            messages = ([{"role": "system", "content": system}] if system else []) + \
                [{"role": "user", "content": question}]
            prompts.append(tokenizer.render_chat(messages, add_generation_prompt=True, tools=schemas)[0])
        outs = generate(model, prompts, max_new_tokens=max_new_tokens, temperature=0.0,
                        stop_ids=(tokenizer.end_id,), tokenizer=tokenizer, tools=tools)
        answers += [Answer(o.text.strip(), o.finish_reason == "stop", o.tool_calls or []) for o in outs]
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


def tool_call_counts(answers: list[Answer]) -> dict:
    """Calls made, malformed ones (unparsable or naming no offered tool) and their rate."""
    calls = sum(len(a.tool_calls) for a in answers)
    malformed = sum(bool(c.get("malformed")) for a in answers for c in a.tool_calls)
    return {"calls": calls, "malformed": malformed, "malformed_rate": round(malformed / calls, 4) if calls else 0.0}


def lookup_evaluation(model, tokenizer, eval_path: str | Path, limit: int, tools=None, index=None,
                      max_new_tokens: int = 192) -> dict:
    """Unseen-entity test questions without tools (correct, "I don't know"); with `tools` (a
    ToolBox offering lookup) also unseen test and dev questions and unanswerable ones with it."""
    rows = read_jsonl(eval_path)
    sets = {name: select_facts([{**r, "held_out": False} for r in rows if r["split"] == name], limit, held_out=False)
            for name in ("unseen_test", "unseen_dev", "unanswerable")}
    result: dict = {"figures": {}}
    tool_answers = []

    def count(facts, answers, known, reason):
        return sum(judge(a.text, a.ended, {"known": known, "value": f.get("value"), "entity": f["entity"],
                                           "attribute": f["attribute"], "language": f["language"]},
                         index).reason.startswith(reason) for f, a in zip(facts, answers))
    test = sets["unseen_test"]
    if test:
        questions = [f["question"] for f in test]
        plain = ask(model, tokenizer, questions, 64)
        result["figures"]["unseen_test_correct_without_tools"] = proportion(count(test, plain, True, "correct"),
                                                                            len(test))
        result["figures"]["unseen_test_idk_without_tools"] = proportion(count(test, plain, False, "idk_unknown"),
                                                                        len(test))
        result["unseen_test_examples"] = [{"question": q, "value": f["value"], "without_tools": a.text}
                                          for q, f, a in zip(questions[:4], test, plain)]
    if tools is None:
        return result
    for name, facts in sets.items():
        if not facts:
            continue
        answers = ask(model, tokenizer, [f["question"] for f in facts], max_new_tokens, tools=tools)
        tool_answers += answers
        used = round(sum(any(c.get("name") == "lookup" for c in a.tool_calls) for a in answers) / len(facts), 4)
        if name == "unanswerable":
            result["figures"]["unanswerable_idk_with_lookup"] = proportion(count(facts, answers, False, "idk_unknown"),
                                                                           len(facts))
            result["unanswerable_lookup_rate"] = used
            result["unanswerable_examples"] = [{"question": f["question"], "answer": a.text}
                                               for f, a in zip(facts[:4], answers)]
            continue
        part = name.removeprefix("unseen_")
        result["figures"][f"unseen_{part}_correct_with_lookup"] = proportion(count(facts, answers, True, "correct"),
                                                                             len(facts))
        if part == "test":
            # Values that are numbers (years, lengths, populations) against words (towns, trades):
            # a number must be copied token by token from the result, a word is often one token
            # the model can pick out of it; tiny's models do the second far better than the first
            # (docs/LOG.md, "What lookup misses at tiny").
            for kind in ("number", "word"):
                pairs = [(f, a) for f, a in zip(facts, answers) if value_kind(f["value"]) == kind]
                if pairs:
                    result["figures"][f"unseen_test_{kind}_correct_with_lookup"] = proportion(
                        count(*zip(*pairs), True, "correct"), len(pairs))
        result[f"unseen_{part}_lookup_rate"] = used
        if part == "test":
            for example, answer in zip(result["unseen_test_examples"], answers):
                example["with_lookup"] = answer.text
    counts = tool_call_counts(tool_answers)
    result["tool_calls"] = counts
    result["figures"]["malformed_tool_calls"] = proportion(counts["malformed"], counts["calls"])
    return result
