"""Honest evaluation: intervals, a judge that cannot be fooled, splits by what a model can memorise,
and overlap counted from the text.

    python -m pytest tests/test_honest_eval.py -q
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter

import pytest

from lmforge.config import WorldConfig, load_config
from lmforge.tasks.preferences import Pair, fact_splits, make_prompts, pair_split
from lmforge.tasks.reasoning import make_problems
from lmforge.data.splits import fact_groups, fact_key
from lmforge.tasks.synth import split_facts
from lmforge.world import build_world
from lmforge.tasks.adversarial import ORDINARY, TRICKS, adversarial_answers, check_judge
from lmforge.evals.judge import JudgeIndex, judge, says_idk, states_value, style
from lmforge.evals.overlap import FactFinder, chain_overlap, prompt_overlap, statement_overlap
from lmforge.evals.stats import proportion, wilson

SMALL = dict(n_entities=40, article_variants=2, stories=20, dialogues=20, arithmetic=50, extra_held_out=40)


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig(**SMALL))


@pytest.fixture(scope="module")
def index(world):
    return JudgeIndex.from_facts(world.facts)


# ---------------------------------------------------------------- the interval

def _score_interval_by_bisection(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson interval as the set of p the score test does not reject: |k/n - p| <= z sqrt(p(1-p)/n)."""
    def inside(p):
        return abs(k / n - p) <= z * math.sqrt(p * (1 - p) / n) + 1e-15

    def edge(lo, hi, want_inside_at_hi):
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if inside(mid) == want_inside_at_hi else (mid, hi)
        return (lo + hi) / 2
    p = k / n
    low = 0.0 if k == 0 else edge(0.0, p, True)
    high = 1.0 if k == n else edge(p, 1.0, False)
    return low, high


@pytest.mark.parametrize("k, n", [(87, 100), (0, 20), (20, 20), (3, 7), (350, 402), (1, 1000)])
def test_wilson_matches_the_inverted_score_test(k, n):
    low, high = wilson(k, n)
    ref_low, ref_high = _score_interval_by_bisection(k, n)
    assert low == pytest.approx(ref_low, abs=1e-6) and high == pytest.approx(ref_high, abs=1e-6)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_proportion_and_edge_cases():
    assert wilson(0, 0) == (0.0, 1.0)
    share = proportion(87, 100)
    assert share["k"] == 87 and share["n"] == 100 and share["rate"] == 0.87
    assert share["low"] < 0.87 < share["high"] and share["high"] - share["low"] < 0.15
    assert proportion(12.5, 20)["rate"] == 0.625          # a win rate with ties counted half
    with pytest.raises(ValueError):
        wilson(5, 4)


# ---------------------------------------------------------------- the judge

def _old_judge(text: str, ended: bool, item: dict) -> tuple[float, str]:
    """The judge as it was before the tricks were closed (73de8d0), for ordinary answers."""
    text = text.strip()
    if item["known"]:
        if states_value(text, item["value"]) and not says_idk(text):
            score, reason = 3.0, "correct"
        elif says_idk(text):
            score, reason = 1.0, "idk_known"
        else:
            score, reason = 0.0, "wrong"
    else:
        score, reason = (3.0, "idk_unknown") if says_idk(text) else (0.0, "made_up")
    penalty, how = style(text)
    score += penalty
    reason += f", {how}" if how else ""
    if not ended:
        score, reason = score - 2.0, reason + ", no end"
    return score, reason


def test_the_issues_examples():
    known = {"known": True, "value": "1820", "language": "en", "entity": "Ada Berg", "attribute": "born_year"}
    unseen = {"known": False, "value": None, "language": "en", "entity": "Ulf Secret", "attribute": "born_year"}
    for text in ("Ada Berg was born in 1819, 1820 or 1821.", "1819, 1820, 1821", "1819 1820 1821"):
        assert judge(text, True, known) == judge(text, True, known)
        assert judge(text, True, known).reason.split(",")[0] == "wrong", text
        assert judge(text, True, known).rule == "several_values"
    assert judge("Ada Berg was not born in 1820.", True, known).rule == "negated"
    assert judge("Ada Berg ble ikke født i 1820.", True, {**known, "language": "nb"}).rule == "negated"
    verdict = judge("Ulf Secret was born in 1820. I do not know more.", True, unseen)
    assert verdict.reason == "made_up" and verdict.rule == "idk_with_claim" and verdict.score == 0.0
    assert judge("I don't know anything about Ulf Secret.", True, unseen).reason == "idk_unknown"


def test_every_trick_gets_its_verdict_for_every_attribute_and_language(world, index):
    report = check_judge(world.facts, index, per_attribute=6)
    assert report["answers"] == report["as_specified"], report["misses"][:3]
    assert set(report["by_kind"]) == set(TRICKS) | set(ORDINARY)
    attributes = {(f["attribute"], f["language"]) for f in world.facts}
    assert {tuple(key.split("/")) for key in report["by_attribute"]} == attributes
    cases = adversarial_answers(world.facts, index, per_attribute=6)
    kinds = Counter((c["item"]["attribute"], c["item"]["language"], c["kind"]) for c in cases)
    for attribute, language in attributes:             # every attribute, both languages, every trick
        for kind in ("negation", "idk_claim", "other_attribute"):
            assert kinds[(attribute, language, kind)] > 0, (attribute, language, kind)
    hedged = {(a, lang) for (a, lang, kind) in kinds if kind == "hedge"}
    assert len(hedged) >= len(attributes) - 2           # an attribute with a single value cannot be hedged
    assert any(" eller " in c["text"] for c in cases if c["kind"] == "hedge")
    assert any(" ikke " in c["text"] for c in cases if c["kind"] == "negation")


def test_ordinary_answers_keep_their_old_scores(world, index):
    """Correct, curt, rambling, "I don't know", wrong and unended answers score as they did."""
    cases = [c for c in adversarial_answers(world.facts, index, per_attribute=8) if c["kind"] in ORDINARY]
    assert len(cases) > 500
    for case in cases:
        for ended in (True, False):
            new = judge(case["text"], ended, case["item"], index)
            assert (new.score, new.reason) == _old_judge(case["text"], ended, case["item"]), case


def test_a_true_statement_about_another_attribute_is_not_a_second_candidate(world, index):
    person = next(e for e in world.entities if e["kind"] == "person" and not e["held_out"])
    born, died = person["attributes"]["born_year"], person["attributes"]["died_year"]
    item = {"known": True, "value": born, "language": "en", "entity": person["name"], "attribute": "born_year"}
    assert judge(f"{person['name']} was born in {born} and died in {died}.", True, item, index).reason == "correct"
    assert judge(f"{person['name']} was born in {born} or in {died}.", True, item, index).rule == "several_values"


def test_the_sft_evaluation_counts_what_the_judge_calls_correct(world, index, monkeypatch):
    from lmforge.evals import chat
    facts = [f for f in world.trained_facts("en") if f["attribute"] == "born_year"][:4]
    year = int(facts[1]["value"])
    answers = [facts[0]["answer"], f"{facts[1]['prompt']} {year - 1}, {year} or {year + 1}.",
               f"I don't know. {facts[2]['answer']}", f"{facts[3]['entity']} was not born in {facts[3]['value']}."]
    monkeypatch.setattr(chat, "ask", lambda model, tokenizer, questions, **kw: [chat.Answer(t, True) for t in answers])
    result = chat.qa_accuracy(None, None, facts, limit=4, index=index)
    assert result["n"] == 4 and result["correct"] == 1 and result["accuracy"] == 0.25


# ---------------------------------------------------------------- splits

def test_a_fact_and_its_reverse_share_a_group_and_a_split(world):
    groups = fact_groups(world.facts)
    by_name = {e["name"]: e for e in world.entities}
    pairs = 0
    for fact in world.facts:
        if fact["attribute"] == "known_for" and fact["value"] in by_name:
            invention = by_name[fact["value"]]
            if invention["attributes"]["inventor"] == fact["entity"]:
                assert groups[fact_key(fact)] == groups[f"{invention['id']}/inventor"]
                pairs += 1
    assert pairs > 0
    for fraction in (0.3, 0.5):
        usable, held = split_facts(world.facts, fraction, seed=11)
        held_groups = {groups[fact_key(f)] for f in held}
        assert not {groups[fact_key(f)] for f in usable} & held_groups


def test_preference_splits_go_by_fact_and_by_unseen_entity(world):
    cfg = load_config("micro")
    facts = world.facts
    splits = fact_splits(facts, cfg)
    unseen = {}
    for fact, split in zip(facts, splits):
        if fact["held_out"]:
            unseen.setdefault(fact["entity_id"], set()).add(split)
            assert split == fact["unseen_split"]
    assert all(len(s) == 1 for s in unseen.values())
    groups = fact_groups(facts)
    by_group = {}
    for fact, split in zip(facts, splits):
        if not fact["held_out"]:
            by_group.setdefault(groups[fact_key(fact)], set()).add(split)
    assert all(len(s) == 1 for s in by_group.values()) and {"train", "dev", "test"} <= set().union(*by_group.values())
    items = make_prompts([f for f, s in zip(facts, splits) if s == "test"], 30, 0.5, "test", seed=1)
    assert items and all(i["split"] == "test" for i in items) and any(not i["known"] for i in items)


def test_a_pair_keeps_its_split_or_takes_its_items(tmp_path):
    prompt = [{"role": "user", "content": "When was Ada Berg born?"}]
    assert pair_split(Pair(prompt, "a", "b", split="test"), {}, 0.1, 0.1, 0) == "test"
    assert pair_split(Pair(prompt, "a", "b", item="x1"), {"x1": "dev"}, 0.1, 0.1, 0) == "dev"
    by_hash = {pair_split(Pair([{"role": "user", "content": f"q{i}"}], "a", "b"), {}, 0.2, 0.2, 0) for i in range(200)}
    assert by_hash == {"train", "dev", "test"}
    same = {pair_split(Pair(prompt, f"a{i}", "b"), {}, 0.3, 0.3, 0) for i in range(20)}
    assert len(same) == 1                                  # one prompt, one side


# ---------------------------------------------------------------- overlap, from the text

def test_chain_overlap_finds_a_test_sum_inside_a_longer_training_solution():
    test = ["7 + 5 = 12. The answer is 12.", "9 - 2 = 7. 7 + 3 = 10. Svaret er 10."]
    clean = chain_overlap(["17 + 5 = 22. The answer is 22.", "9 - 2 = 7. 7 + 4 = 11. The answer is 11."], test)
    assert clean["chains_in_training"] == 0 and clean["solutions_verbatim_in_training"] == 0
    assert clean["equations_seen_in_training (informational)"] == "1 of 3"
    leaky = chain_overlap(["7 + 5 = 12. 12 - 3 = 9. The answer is 9."], test)
    assert leaky["chains_in_training"] == 1 and leaky["solutions_verbatim_in_training"] == 1


def test_statement_overlap_finds_a_held_fact_and_its_reverse(world):
    person = next(e for e in world.entities if e["kind"] == "person" and not e["held_out"]
                  and any(i["attributes"]["inventor"] == e["name"] and i["name"] == e["attributes"]["known_for"]
                          for i in world.entities if i["kind"] == "invention"))
    held = [f for f in world.facts if f["entity"] == person["name"] and f["attribute"] in ("known_for", "born_year")
            and f["language"] == "en"]
    invention = person["attributes"]["known_for"]
    clean = [[{"role": "user", "content": f"What is {invention} used for?"},
              {"role": "assistant", "content": f"{invention} is used for weaving."}]]
    assert statement_overlap(clean, held, world.facts)["stated_in_training"] == 0
    reverse = clean + [[{"role": "user", "content": f"Who invented {invention}?"},
                        {"role": "assistant", "content": f"{invention} was invented by {person['name']}."}]]
    counts = statement_overlap(reverse, held, world.facts)
    assert counts["stated_in_training"] == 1 and counts["reverse_facts_stated_in_training"] == 1
    curt = [[{"role": "user", "content": f"When was {person['name']} born?"},
             {"role": "assistant", "content": f"{person['attributes']['born_year']}."}]]
    assert statement_overlap(curt, held, world.facts)["stated_in_training"] == 1


def test_prompt_overlap_finds_the_same_fact_in_other_words_and_unseen_names(world):
    finder = FactFinder(world.facts)
    known = next(f for f in world.facts if not f["held_out"] and f["language"] == "en")
    other_language = next(f for f in world.facts if f["entity_id"] == known["entity_id"]
                          and f["attribute"] == known["attribute"] and f["language"] == "nb")
    unseen = next(f for f in world.facts if f["held_out"] and f["language"] == "en")
    train = [f"Quick question: {other_language['question']}", f"I think {unseen['entity']} is a place."]
    counts = prompt_overlap(train, [known["question"], unseen["question"]], finder)
    assert counts["facts_asked_in_training"] == 1 and counts["unseen_entities_named_in_training"] == 1
    assert prompt_overlap(train[:1], [unseen["question"]], finder)["unseen_entities_named_in_training"] == 0


def test_every_held_out_problem_chain_is_new_to_training():
    from lmforge.tasks.reasoning import split_of
    people = [{"name": "Ada Berg", "gender": "f"}]
    problems = make_problems(people, ["en", "nb"], [1, 2, 3], 150, seed=2,
                             keep=lambda p: split_of(p, 2, 0.1, 0.1, 0.3) is not None)
    splits = [split_of(p, 2, 0.1, 0.1, 0.3) for p in problems]
    train = [p.solution for p, s in zip(problems, splits) if s in ("sft", "rl")]
    for name in ("test", "dev"):
        held = [p.solution for p, s in zip(problems, splits) if s == name]
        counts = chain_overlap(train, held)
        assert held and counts["chains_in_training"] == 0 and counts["solutions_verbatim_in_training"] == 0


# ---------------------------------------------------------------- a micro run, end to end

def _in_training_counts(tree, path=""):
    """Every count in an overlap tree whose name says it must be 0."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _in_training_counts(value, f"{path}/{key}")
    elif path.endswith("_in_training"):
        yield path, tree


def test_micro_run_overlap_is_zero_everywhere(micro_run):
    stages = ("reasoning", "synth", "sft", "preferences", "reward", "ppo", "dpo", "grpo")
    seen = 0
    for stage in stages:
        metrics = json.loads((micro_run / "stages" / f"{stage}.json").read_text())["metrics"]
        assert metrics.get("overlap"), stage
        for path, value in _in_training_counts(metrics["overlap"]):
            assert value == 0, (stage, path, value)
            seen += 1
    assert seen >= 40


def test_micro_run_splits_and_the_judge(micro_run):
    def metrics(stage):
        return json.loads((micro_run / "stages" / f"{stage}.json").read_text())["metrics"]
    prefs = metrics("preferences")
    assert prefs["judge_check"]["answers"] == prefs["judge_check"]["as_specified"] > 1000
    assert set(prefs["prompts_by_split"]) == {"train", "dev", "test"}
    rows = [json.loads(line) for line in (micro_run / "datasets" / "preferences.jsonl").read_text().splitlines()]
    assert rows and all(r["split"] in ("train", "dev", "test") for r in rows)
    evals = [json.loads(line) for line in (micro_run / "datasets" / "preferences_eval.jsonl").read_text().splitlines()]
    assert {r["split"] for r in evals} == {"dev", "test"}
    ppo = metrics("ppo")
    assert ppo["prompts"]["kept"] == prefs["prompts_by_split"]["train"]      # PPO never trains on dev or test
    assert "dev" in ppo and ppo["figures"]["win_rate"]["n"] == ppo["eval_prompts"]
    reward = metrics("reward")
    assert reward["held_out_split"] == "test" and reward["pairs"]["by_split"]["test"] == reward["held_out_pairs"]
    assert reward["figures"]["test_accuracy_vs_truth"]["n"] == reward["held_out_pairs"]
    grpo = metrics("grpo")
    assert grpo["held_out_source"].endswith("reasoning_eval.jsonl") and grpo["dev_source"].endswith("reasoning_dev.jsonl")
    # the output is the dev-best of the SFT weights and each validation, measured as the final evaluation measures
    assert grpo["chosen_step"] is not None and grpo["chosen_dev_pass_at_1"] == grpo["dev_pass_at_1"]
    assert grpo["dev_pass_at_1"] >= grpo["dev_pass_at_1_sft"]
    sft = metrics("sft")
    assert sft["figures"]["held_out_facts"]["n"] > 0 and sft["figures"]["held_out_facts_dev"]["n"] > 0
    eval_rows = [json.loads(line) for line in (micro_run / "datasets" / "sft_eval.jsonl").read_text().splitlines()]
    assert {r.get("subset") for r in eval_rows if r["split"] == "held_out"} == {"dev", "test"}


def test_micro_report_card_reads_in_words(micro_run):
    report = (micro_run / "report" / "report.md").read_text()
    table = report.split("\n\n")[1]
    assert table.startswith("| stage | figure | value | 95 % interval | split, size |")
    assert "{" not in table                                 # no raw JSON any more
    assert re.search(r"\| held-out facts answered right \| [\d.]+ % \| [\d.]+–[\d.]+ % \| test, \d+ questions \|", table)
    assert re.search(r"\| pairs ranked like the truth \| [\d.]+ % \| [\d.]+–[\d.]+ % \| test, \d+ pairs \|", table)
    assert "| dev, " in table and "Wilson" in report
