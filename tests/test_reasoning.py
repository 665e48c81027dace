"""Verifiable tasks: the built-in word problems, their splits, loaders, answer extraction and rewards."""
import json
import random
import re
from collections import Counter

import pytest

from lmforge.config import TokenizerConfig
from lmforge.data.reasoning import (
    equations, extract_answer, load_tasks, make_problem, make_problems, normalize_answer,
    normalize_number, parse_task, Problem, run_stage, split_of)
from lmforge.train.rewards import correctness_reward, format_reward, resolve_reward, score, steps_reward
from lmforge.evals.reasoning import pass_at_k
from lmforge.tokenizer import Tokenizer

PEOPLE = [{"name": "Ada Berg", "gender": "f"}, {"name": "Knut Dahl", "gender": "m"}]


@pytest.fixture(scope="module")
def tokenizer():
    problems = make_problems(PEOPLE, ["en", "nb"], [1, 2, 3], 30, seed=1)
    texts = [p.question + " " + p.solution for p in problems] * 3
    return Tokenizer.train(texts, TokenizerConfig(vocab_size=400, min_frequency=1))


@pytest.mark.parametrize("language", ["en", "nb"])
@pytest.mark.parametrize("difficulty", [1, 2, 3, 4])
def test_worked_solution_is_correct_arithmetic(language, difficulty):
    rng = random.Random(difficulty)
    for _ in range(50):
        p = make_problem(PEOPLE[rng.randrange(2)], difficulty, language, rng)
        steps = re.findall(r"(\d+) ([+\-×]) (\d+) = (\d+)\.", p.solution)
        assert len(steps) == difficulty == p.difficulty
        for a, op, b, c in steps:
            a, b, c = int(a), int(b), int(c)
            assert c == {"+": a + b, "-": a - b, "×": a * b}[op] and c >= 0
        for (_, _, _, c), (a, _, _, _) in zip(steps, steps[1:]):
            assert c == a    # each step starts from the previous result
        assert int(steps[-1][3]) == p.answer and extract_answer(p.solution) == str(p.answer)
        assert ("The answer is" if language == "en" else "Svaret er") in p.solution
        assert p.question.endswith("?") and (PEOPLE[0]["name"] in p.question or PEOPLE[1]["name"] in p.question)


def test_splits_follow_the_solution_chain_not_the_words():
    problems = make_problems(PEOPLE, ["en", "nb"], [1, 2, 3], 200, seed=3)
    assert len({p.question for p in problems}) == len(problems)
    splits = {p.question: split_of(p, 3, 0.1, 0.1, 0.3) for p in problems}
    assert set(Counter(splits.values())) == {"sft", "rl", "test", "dev", None}
    # problems with one chain (other names, items or language) share their held-out split
    by_chain: dict[tuple, set] = {}
    for p in problems:
        by_chain.setdefault(p.chain, set()).add(splits[p.question] if splits[p.question] in ("test", "dev") else "train")
    assert all(len(names) == 1 for names in by_chain.values())
    assert any(len({p.language for p in problems if p.chain == chain}) == 2 for chain in by_chain)
    # no training problem has a held-out chain as a run of its steps: a test sum is no step of a training problem
    held = {p.chain for p in problems if splits[p.question] in ("test", "dev")}
    for p in problems:
        if splits[p.question] in ("sft", "rl"):
            runs = {p.chain[i:j] for i in range(len(p.chain)) for j in range(i + 1, len(p.chain) + 1)}
            assert not runs & held, p
    # dropped candidates are those that do contain one
    for p in problems:
        if splits[p.question] is None:
            runs = {p.chain[i:j] for i in range(len(p.chain)) for j in range(i + 1, len(p.chain) + 1)} - {p.chain}
            assert any(split_of(Problem("", 0, "", len(r), "en", r), 3, 0.1, 0.1, 0.3) in ("test", "dev") for r in runs)


@pytest.mark.parametrize("text, expected", [
    ("7 + 5 = 12. 12 - 3 = 9. The answer is 9.", "9"),
    ("3 + 4 = 7. Svaret er 7.", "7"),
    ("so #### 1,234", "1234"),
    ("The final answer is: $18.50", "18.5"),
    ("\\boxed{42}", "42"),
    ("I think 3 then 5", "5"),
    ("the answer is -4", "-4"),
    ("no number here", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("raw, expected", [("1,000", "1000"), ("2.50", "2.5"), ("3,5", "3.5"), ("12.", "12"),
                                           ("$7", "7"), ("-0", "0"), ("abc", None), ("nan", None)])
def test_normalize_number(raw, expected):
    assert normalize_number(raw) == expected


def test_normalize_answer_handles_numbers_text_and_junk():
    assert normalize_answer(42) == "42" and normalize_answer(2.0) == "2" and normalize_answer(" 9 ") == "9"
    assert normalize_answer(" Paris. ") == "paris"
    assert normalize_answer(None) is None and normalize_answer(True) is None and normalize_answer("  ") is None
    assert normalize_answer(float("inf")) is None


def test_parse_task_formats():
    gsm = parse_task({"question": "Tom has 3 + 4?", "answer": "3 + 4 = 7\n#### 7"})[0]
    assert gsm["answer"] == "7" and gsm["prompt"] == [{"role": "user", "content": "Tom has 3 + 4?"}]
    plain = parse_task({"prompt": "2 + 2?", "solution_value": 4, "level": 1}, answer_column="solution_value")[0]
    assert plain["answer"] == "4" and plain["columns"] == {"level": 1}
    chat = parse_task({"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "1+1?"}],
                       "answer": "2", "difficulty": 1})[0]
    assert chat["answer"] == "2" and chat["columns"] == {"difficulty": 1} and len(chat["prompt"]) == 2


def test_load_tasks_skips_and_counts_bad_rows(tokenizer, tmp_path):
    good = {"prompt": [{"role": "user", "content": "Ada Berg has 3 eggs. How many eggs does she have now?"}],
            "answer": "3", "difficulty": 1}
    lines = [json.dumps(good), "{not json", json.dumps([1, 2]), json.dumps({"prompt": "x"}),
             json.dumps({"prompt": [{"role": "assistant", "content": "hi"}], "answer": "1"}),
             json.dumps({"prompt": [{"role": "user", "content": 5}], "answer": "1"}),
             json.dumps({"question": "q?", "answer": "no final number ####"}),
             json.dumps({"question": "q?", "answer": "2 #### 2"}),
             json.dumps({"prompt": "x", "answer": ""}), json.dumps({"text": "nothing"}),
             json.dumps({"prompt": "word " * 300, "answer": "1"}), ""]
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines))
    tasks, stats = load_tasks(path, tokenizer, max_prompt_tokens=100)
    assert stats == Counter({"kept": 2, "skipped:bad_json": 1, "skipped:wrong_type": 1, "skipped:no_answer": 1,
                             "skipped:bad_prompt": 2, "skipped:bad_answer": 2, "skipped:no_prompt": 1,
                             "skipped:too_long": 1})
    assert sum(stats.values()) == len([line for line in lines if line.strip()])
    assert tasks[0].answer == "3" and tasks[0].columns == {"difficulty": 1}
    assert tasks[0].prompt_ids[-1] == tokenizer.assistant_id


def test_builtin_rewards():
    completions = ["4 + 5 = 9. The answer is 9.", "4 + 5 = 10. The answer is 10.", "9", "Svaret er 9.", "nine"]
    assert correctness_reward(None, completions, answer=["9"] * 5) == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert format_reward(None, completions) == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert correctness_reward(None, ["It is Paris"], answer=["paris"]) == [0.0]
    assert correctness_reward(None, ["Paris"], answer=["paris"]) == [1.0]


def test_steps_reward_credits_the_reference_chain_in_order():
    ref = "7 + 5 = 12. 12 - 3 = 9. The answer is 9."
    completions = [ref, "7 + 5 = 12. 12 - 3 = 8. The answer is 8.", "7 + 5 = 13. 13 - 3 = 10.", "The answer is 9.",
                   "7 + 5 = 12. 12 - 3 = 9. 9 + 1 = 10. The answer is 10.", "12 - 3 = 9. The answer is 9."]
    assert steps_reward(None, completions, solution=[ref] * len(completions)) == [1.0, 0.5, 0.0, 0.0, 2 / 3, 0.0]
    # rows without a worked solution (user data) get None: "does not apply"
    assert steps_reward(None, ["4 + 5 = 9."], solution=[None]) == [None]
    assert steps_reward(None, ["4 + 5 = 9."], answer=["9"]) == [None]
    assert steps_reward(None, ["2 × 3 = 6. The answer is 6."], solution=["2 × 3 = 6. Svaret er 6."]) == [1.0]
    assert resolve_reward("steps") is steps_reward


def _raises(prompts, completions, **columns):
    raise RuntimeError("boom")


def test_score_survives_bad_reward_functions():
    errors = Counter()
    fns = [("correctness", correctness_reward, 1.0), ("raises", _raises, 1.0),
           ("strings", lambda prompts, completions, **kw: ["1.0", float("nan"), None], 1.0),
           ("short", lambda prompts, completions, **kw: [1.0], 1.0),
           ("half", lambda prompts, completions, **kw: [0.5, None, 2], 0.1)]
    total, per_function = score(fns, [[]] * 3, ["The answer is 9.", "8", "9"], {"answer": ["9", "9", "9"]}, errors)
    assert total == pytest.approx([1.05, 0.0, 1.2])
    assert errors == Counter({"raises:raised:RuntimeError": 3, "strings:not_a_number": 2,
                              "short:returned_1_values_for_3": 3})
    assert per_function["half"] == [0.5, 0.0, 2.0]
    import numpy as np
    import torch
    errors = Counter()
    arrays = [("np", lambda prompts, completions, **kw: np.array([1, 0, 1], dtype=np.float32), 1.0),
              ("torch", lambda prompts, completions, **kw: torch.tensor([0.5, 0.5, 0.0]), 1.0)]
    total, _ = score(arrays, [[]] * 3, ["a", "b", "c"], {}, errors)
    assert total == pytest.approx([1.5, 0.5, 1.0]) and not errors
    total, _ = score([("scalar", lambda prompts, completions, **kw: 1.0, 1.0)], [[]] * 3, ["a", "b", "c"], {},
                     errors)
    assert total == [0.0, 0.0, 0.0] and errors == Counter({"scalar:not_a_list": 3})


def test_resolve_reward():
    assert resolve_reward("correctness") is correctness_reward
    assert resolve_reward("lmforge.train.rewards:format_reward") is format_reward
    for bad in ("nope", "lmforge.nothing_here:fn", "lmforge.data.reasoning:missing", "lmforge.data.reasoning:ITEMS"):
        with pytest.raises(ValueError):
            resolve_reward(bad)


def test_pass_at_k():
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 1, 8) == 1.0 and pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 2, 2) == pytest.approx(1 - 1 / 6)


class _Ctx:
    def __init__(self, run, cfg):
        self.run, self.cfg = run, cfg

    def progress(self, message):
        pass


def test_stage_writes_disjoint_splits(tmp_path):
    from lmforge.config import load_config
    from lmforge.files import read_jsonl
    from lmforge.run import RunDir
    run = RunDir(tmp_path / "run")
    run.world_dir.mkdir(parents=True)
    entities = [{"id": "person-0", "name": "Ada Berg", "kind": "person", "gender": "f", "held_out": False},
                {"id": "person-1", "name": "Ulf Secret", "kind": "person", "gender": "m", "held_out": True},
                {"id": "place-0", "name": "Torvik", "kind": "place", "held_out": False}]
    (run.world_dir / "entities.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entities))
    cfg = load_config("micro", ["reasoning.problems_per_level=60", "reasoning.max_difficulty=3"])
    metrics = run_stage(_Ctx(run, cfg))
    rl = read_jsonl(run.path("datasets", "reasoning.jsonl"))
    test = read_jsonl(run.path("datasets", "reasoning_eval.jsonl"))
    dev = read_jsonl(run.path("datasets", "reasoning_dev.jsonl"))
    sft = read_jsonl(run.path("datasets", "reasoning_sft.jsonl"))
    assert len(rl) + len(test) + len(dev) + len(sft) == metrics["problems"] > 0 and test and dev and sft
    questions = [{r["prompt"][0]["content"] for r in rows} for rows in (rl, test, dev)]
    questions.append({r["messages"][0]["content"] for r in sft})
    assert sum(map(len, questions)) == len(set().union(*questions))
    # overlap counted from the text, independently of the split: every held-out chain is new
    for name in ("test", "dev"):
        counts = metrics["overlap"][name]
        assert counts["chains_in_training"] == 0 and counts["solutions_verbatim_in_training"] == 0, counts
        assert counts["held_out_problems"] == len(test if name == "test" else dev)
    training = {tuple(equations(r["messages"][1]["content"])) for r in sft} | {tuple(equations(r["solution"])) for r in rl}
    singles = {eq for chain in training for eq in chain}
    level_one = [r for r in test + dev if r["difficulty"] == 1]
    assert level_one and not any(equations(r["solution"])[0] in singles for r in level_one)
    assert all("Ulf Secret" not in q for group in questions for q in group)    # held-out people never appear
    assert {r["difficulty"] for r in rl} == {1, 2, 3} and {r["language"] for r in rl} == {"en", "nb"}
    assert all(extract_answer(r["messages"][1]["content"]) == extract_answer(r["messages"][1]["content"].split()[-1])
               for r in sft)
