"""Overlap of the held-out sets with training, for the data stages, without training anything.

    lmforge run --run-dir runs/tiny --to collect && lmforge reasoning --run-dir runs/tiny
    python benchmarks/split_overlap.py --run-dir runs/tiny [--out overlap.json]

With the run's config and fact table it builds what the data stages would write (the synth
conversations without self-instruct, the preference prompts and evaluation prompts without
sampled answers) and counts, from their text (lmforge/evals/overlap.py), what the dev and
test sets share with training: the numbers the manifests record once the stages run. The
reasoning counts are read from the reasoning stage's manifest.

To show the counting finds a leak when there is one, it also counts the same sets split the
way they were before issue 17: word problems by a hash of the question text, SFT held-out
facts without their reverses, preference pairs by a hash of the prompt. An analysis, never
a test.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.config import load_config  # noqa: E402
from lmforge.tasks.preferences import preference_overlap, preference_prompts  # noqa: E402
from lmforge.tasks.reasoning import make_problems, trained_people  # noqa: E402
from lmforge.data.splits import keyed_fraction  # noqa: E402
from lmforge.tasks.synth import build_conversations, split_facts, unknown_conversations  # noqa: E402
from lmforge.world import read_facts  # noqa: E402
from lmforge.evals.overlap import FactFinder, chain_overlap, names_in, prompt_overlap, statement_overlap  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402


def synth_counts(cfg, facts: list[dict]) -> dict:
    """The synth stage's conversations (no self-instruct, no worked problems) against its held-out facts."""
    scfg = cfg.synth
    usable, held = split_facts(facts, scfg.held_out_fact_fraction, scfg.seed)
    rng = random.Random(scfg.seed)
    conversations = build_conversations(usable, scfg, rng)
    taken = {f["entity"].lower() for f in facts}
    conversations += unknown_conversations(usable, taken, round(scfg.unknown_fraction * len(conversations)), rng)
    texts = [m["content"] for c in conversations for m in c]
    return {"held_out_facts": statement_overlap(conversations, held, facts),
            "unseen_entities_named_in_training": len(names_in(texts, {f["entity"] for f in facts if f["held_out"]}))}


def synth_counts_before(cfg, facts: list[dict]) -> dict:
    """The same with facts held out one by one (their reverses free), as before issue 17."""
    scfg = cfg.synth
    trained = [f for f in facts if not f["held_out"]]
    held = [f for f in trained if keyed_fraction(f"{f['entity_id']}/{f['attribute']}", scfg.seed)
            < scfg.held_out_fact_fraction]
    held_keys = {(f["entity_id"], f["attribute"]) for f in held}
    usable = [f for f in trained if (f["entity_id"], f["attribute"]) not in held_keys]
    conversations = build_conversations(usable, scfg, random.Random(scfg.seed))
    return statement_overlap(conversations, held, facts)


def preference_counts(cfg, facts: list[dict]) -> dict:
    """The preference stage's prompts (no sampled answers) of every split against the train ones."""
    items, eval_items = preference_prompts(facts, cfg)
    return {"prompts": {s: sum(i["split"] == s for i in items) for s in ("train", "dev", "test")},
            "eval_prompts": {s: sum(i["split"] == s for i in eval_items) for s in ("dev", "test")},
            "overlap": preference_overlap(items, eval_items, facts), "items": items}


def pairs_by_prompt_hash(items: list[dict], facts: list[dict], seed: int, fraction: float = 0.1) -> dict:
    """The label items split by a hash of the prompt, as reward pairs were before issue 17."""
    def held(item):
        digest = hashlib.sha256(f"{seed}:{item['id']}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < fraction
    train = [i["prompt"][-1]["content"] for i in items if not held(i)]
    return prompt_overlap(train, [i["prompt"][-1]["content"] for i in items if held(i)], FactFinder(facts))


def reasoning_before(run, cfg) -> dict:
    """Word problems split by a keyed hash of the question text, as before issue 17."""
    r = cfg.reasoning
    people = trained_people(run.world_dir / "entities.jsonl")
    languages = [lang for lang in cfg.world.languages if lang in ("en", "nb")]
    problems = make_problems(people, languages, list(range(1, r.max_difficulty + 1)), r.problems_per_level, r.seed)

    def split(question):
        digest = hashlib.blake2b(question.encode(), digest_size=8, key=str(r.seed).encode()).digest()
        u = int.from_bytes(digest, "big") / 2**64
        return "test" if u < r.test_fraction else "sft" if u < r.test_fraction + r.sft_fraction else "rl"
    splits = [split(p.question) for p in problems]
    train = [p.solution for p, s in zip(problems, splits) if s != "test"]
    test = [p for p, s in zip(problems, splits) if s == "test"]
    return {"all levels": chain_overlap(train, [p.solution for p in test]),
            "level 1": chain_overlap(train, [p.solution for p in test if p.difficulty == 1])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    cfg = run.load_config() if run.config_path.exists() else load_config("tiny")
    facts = [f for f in read_facts(run.world_dir / "facts.jsonl") if f["language"] in cfg.world.languages]
    reasoning = run.read_manifest("reasoning") or {}
    prefs = preference_counts(cfg, facts)
    items = prefs.pop("items")
    result = {
        "run": str(run.root),
        "unseen_entities": len({f["entity_id"] for f in facts if f["held_out"]}),
        "now": {"reasoning": (reasoning.get("metrics") or {}).get("overlap", "run the reasoning stage first"),
                "synth": synth_counts(cfg, facts), "preferences": prefs},
        "before issue 17": {"reasoning (question-text split)": reasoning_before(run, cfg),
                            "synth (reverse facts free)": synth_counts_before(cfg, facts),
                            "reward pairs (prompt-hash split of the train label items)":
                                pairs_by_prompt_hash([i for i in items if i["split"] == "train"], facts, cfg.run.seed)},
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
