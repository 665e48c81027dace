"""Answers built to fool the judge, for every attribute in both languages, with the verdict each must get.

    from lmforge.evals.adversarial import adversarial_answers, check_judge
    cases = adversarial_answers(facts, per_attribute=4)       # facts: data/world/facts.jsonl rows
    report = check_judge(facts, index)                       # {"answers", "as_specified", "by_kind", ...}

    python -m lmforge.evals.adversarial --run-dir runs/tiny  # the table per kind, attribute and language

For up to `per_attribute` facts of every (attribute, language), about a known entity and
about an unseen one, it writes:

  tricks   hedge            "<entity> was born in 1819, 1820 or 1821." ("... eller ..." in Norwegian)
           list             "1819, 1820, 1821."
           negation         "<entity> was not born in 1820." / "It is not true that ..." ("ikke")
           idk_claim        "I don't know. <answer>" and "<answer> I do not know more."
           other_attribute  the entity's value of another attribute in this one's sentence
  ordinary correct, curt (the bare value), rambling (the answer and two fillers), idk, wrong
           (another candidate value): the verdicts the judge gave before the tricks existed.

A known entity's trick is wrong (idk_claim: made up); an unseen entity's is made up. Each
case carries the item the judge sees and the reason (first word) and rule it must return.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict

from ..data.synth import FILLERS, IDK_ANSWERS
from ..data.world import read_facts
from .judge import DIGITS, JudgeIndex, judge, states_value

OR = {"en": "or", "nb": "eller"}
NOT = {"en": "not", "nb": "ikke"}
NOT_TRUE = {"en": "It is not true that {answer}", "nb": "Det er ikke sant at {answer}"}
IDK_FIRST = {"en": "I don't know. {answer}", "nb": "Jeg vet ikke. {answer}"}
IDK_AFTER = {"en": "{answer} I do not know more.", "nb": "{answer} Jeg vet ikke mer."}
EN_AUXILIARIES = ("was", "is", "has", "can")
TRICKS = ("hedge", "list", "negation", "idk_claim", "other_attribute")
ORDINARY = ("correct", "curt", "rambling", "idk", "wrong")


def alternatives(fact: dict, pool: list[str], index: JudgeIndex, rng: random.Random, count: int = 2) -> list[str]:
    """Other candidate values for the fact's attribute in the value's own form: nearby numbers
    for a numeric attribute, else other values the attribute takes in the same language (`pool`)."""
    value = fact["value"]
    if fact["attribute"] in index.numeric:
        number = int(DIGITS.findall(value)[0])
        step = 100 if number >= 10_000 else 1
        return [DIGITS.sub(str(number + d * step), value, count=1) for d in (-1, 1, 2)[:count]]
    others = sorted(set(pool) - {value})
    return rng.sample(others, min(count, len(others)))


def negated(fact: dict) -> str:
    """The answer sentence with its verb negated: "was not born in", "never came from", "ble ikke født i"."""
    relation = fact["prompt"][len(fact["entity"]):].split()
    if fact["language"] == "nb":
        relation.insert(1, NOT["nb"])           # Norwegian puts "ikke" right after the finite verb
    elif relation[0] in EN_AUXILIARIES:
        relation.insert(1, NOT["en"])
    else:
        relation.insert(0, "never")
    return f"{fact['entity']} {' '.join(relation)} {fact['value']}."


def item_of(fact: dict) -> dict:
    """What the judge sees about a fact's question: known entities come with the true value."""
    known = not fact["held_out"]
    return {"known": known, "value": fact["value"] if known else None, "entity": fact["entity"],
            "attribute": fact["attribute"], "language": fact["language"]}


def cases_for(fact: dict, others: dict, pool: list[str], index: JudgeIndex, rng: random.Random) -> list[dict]:
    """Every trick and every ordinary answer for one fact. others: attribute -> value of the same
    entity and language; pool: the values this attribute takes in this language."""
    lang, value, answer, prompt = fact["language"], fact["value"], fact["answer"], fact["prompt"]
    known = not fact["held_out"]
    alt = alternatives(fact, pool, index, rng)
    cases = []

    def add(kind: str, text: str, known_verdict: tuple[str, str], unseen_verdict=("made_up", "")) -> None:
        reason, rule = known_verdict if known else unseen_verdict
        cases.append({"kind": kind, "text": text, "item": item_of(fact), "reason": reason, "rule": rule})

    if len(alt) >= 2:
        add("hedge", f"{prompt} {alt[0]}, {value} {OR[lang]} {alt[1]}.", ("wrong", "several_values"))
        add("list", f"{alt[0]}, {value}, {alt[1]}.", ("wrong", "several_values"))
    add("negation", negated(fact), ("wrong", "negated"))
    add("negation", NOT_TRUE[lang].format(answer=answer), ("wrong", "negated"))
    for template in (IDK_FIRST, IDK_AFTER):
        add("idk_claim", template[lang].format(answer=answer), ("made_up", "idk_with_claim"),
            ("made_up", "idk_with_claim"))
    other = [v for a, v in sorted(others.items()) if a != fact["attribute"] and v and v != value
             and not states_value(v, value)]
    if other:
        add("other_attribute", f"{prompt} {rng.choice(other)}.", ("wrong", ""))
    add("correct", answer, ("correct", ""))
    add("curt", f"{value}.", ("correct", ""))
    add("rambling", " ".join([answer, *rng.sample(FILLERS[lang], 2)]), ("correct", ""))
    add("idk", rng.choice(IDK_ANSWERS[lang]).format(name=fact["entity"]), ("idk_known", ""), ("idk_unknown", ""))
    if alt:
        add("wrong", f"{prompt} {alt[0]}.", ("wrong", ""))
    return cases


def adversarial_answers(facts: list[dict], index: JudgeIndex | None = None, per_attribute: int = 4,
                        seed: int = 0) -> list[dict]:
    """Cases for up to `per_attribute` known and as many unseen facts of every (attribute, language)."""
    index = index or JudgeIndex.from_facts(facts)
    by_attribute: dict[tuple, list[dict]] = defaultdict(list)
    values_of: dict[tuple, dict] = defaultdict(dict)
    for fact in facts:
        by_attribute[(fact["attribute"], fact["language"])].append(fact)
        values_of[(fact["entity"], fact["language"])][fact["attribute"]] = fact["value"]
    rng = random.Random(seed)
    cases = []
    for key in sorted(by_attribute):
        pool = [f["value"] for f in by_attribute[key]]
        for held_out in (False, True):
            group = [f for f in by_attribute[key] if f["held_out"] == held_out]
            for fact in rng.sample(group, min(per_attribute, len(group))):
                cases += cases_for(fact, values_of[(fact["entity"], fact["language"])], pool, index, rng)
    return cases


def check_judge(facts: list[dict], index: JudgeIndex | None = None, per_attribute: int = 4, seed: int = 0) -> dict:
    """Judge every case; counts per kind of answer and per attribute/language, and the misses."""
    index = index or JudgeIndex.from_facts(facts)
    cases = adversarial_answers(facts, index, per_attribute, seed)
    by_kind: dict[str, Counter] = defaultdict(Counter)
    by_attribute: dict[str, Counter] = defaultdict(Counter)
    misses = []
    for case in cases:
        verdict = judge(case["text"], True, case["item"], index)
        ok = verdict.reason.split(",")[0] == case["reason"] and verdict.rule == case["rule"]
        for table, key in ((by_kind, case["kind"]),
                           (by_attribute, f"{case['item']['attribute']}/{case['item']['language']}")):
            table[key]["answers"] += 1
            table[key]["as_specified"] += ok
        if not ok:
            misses.append({**case, "got": verdict.reason, "got_rule": verdict.rule})
    return {"answers": len(cases), "as_specified": len(cases) - len(misses),
            "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
            "by_attribute": {k: dict(v) for k, v in sorted(by_attribute.items())},
            "misses": misses[:20]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--per-attribute", type=int, default=4)
    args = parser.parse_args()
    from ..run import RunDir
    facts = read_facts(RunDir(args.run_dir).world_dir / "facts.jsonl")
    report = check_judge(facts, per_attribute=args.per_attribute)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if report["answers"] == report["as_specified"] else 1


if __name__ == "__main__":
    sys.exit(main())
