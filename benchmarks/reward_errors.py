"""Where a trained reward model disagrees with the truth, by kind of pair:

    python benchmarks/reward_errors.py --run-dir runs/tiny [--reward-dir DIR] [--threads 2] [--out F]
        [--show "idk_unknown > made_up"]      # also print the pairs of that kind it ranks wrong

Takes the reward stage's test pairs (the same split, by fact) and groups them by the ground-truth judge's verdicts on the better and the
worse answer ("correct, rambling > wrong" is a right but long answer against a short wrong
one). For each group: how many pairs, and how many the reward model ranks like the truth
(flipped labels reversed), worst groups first. Then the same pairs split by whether the
SFT model's own greedy answer to the prompt is right: a reward model that starts from SFT
can hardly know a fact the SFT model gets wrong, so those errors are out of its reach.
It also prints the label ceiling (the share of held-out labels the annotator did not flip).

Needs preferences and reward done (the automatic annotator's labels). An analysis, never a test.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.config import load_config  # noqa: E402
from lmforge.tasks.preferences import load_items  # noqa: E402
from lmforge.evals.alignment import sample_answers  # noqa: E402
from lmforge.evals.judge import judge, load_index  # noqa: E402
from lmforge.checkpoints import load_model  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402
from lmforge.tokenizer import Tokenizer  # noqa: E402
from lmforge.train.pairs import collate_pairs, load_pair_rows  # noqa: E402
from lmforge.evals.reward_model import load_reward_model  # noqa: E402
from lmforge.train.reward import pair_rewards  # noqa: E402


def held_out_pairs(run, cfg, tokenizer, items: dict) -> list[dict]:
    """The reward stage's test pairs (its own split, by fact) with their row and the judge's verdicts."""
    rcfg = cfg.reward
    rows = load_pair_rows(run.path("datasets", "preferences.jsonl"), tokenizer, rcfg.seq_len, rcfg.val_fraction,
                          rcfg.test_fraction, cfg.run.seed, {key: item.get("split", "") for key, item in items.items()})
    index = load_index(run.world_dir / "facts.jsonl")
    out = []
    for pair, row in zip(rows.pairs["test"], rows.test):
        if pair.key not in items:
            continue
        item = items[pair.key]
        verdicts = (judge(pair.chosen, pair.chosen_ended, item, index),
                    judge(pair.rejected, pair.rejected_ended, item, index))
        better, worse = sorted(verdicts, key=lambda v: -v.score)
        out.append({"row": row, "item": pair.key, "flipped": pair.flipped,
                    "texts": (pair.chosen, pair.rejected) if verdicts[0] is better else (pair.rejected, pair.chosen),
                    "kind": f"{better.reason} > {worse.reason}",
                    "fact_pair": better.reason.split(",")[0] != worse.reason.split(",")[0]})
    return out


@torch.no_grad()
def agrees_with_truth(model, pairs: list[dict], pad_id: int) -> list[bool]:
    agree = []
    for start in range(0, len(pairs), 32):
        chunk = pairs[start:start + 32]
        chosen, rejected = pair_rewards(model, collate_pairs([p["row"] for p in chunk], pad_id, "cpu"))
        agree += [bool(c > r) != p["flipped"] for c, r, p in zip(chosen.tolist(), rejected.tolist(), chunk)]
    return agree


def sft_knows(run, cfg, tokenizer, items: dict, keys: set) -> dict:
    """item id -> whether the SFT model's greedy answer is the judge's best kind (correct for
    a known entity, "I don't know" for an unseen one)."""
    sft = load_model(run.model_dir("sft")).eval()
    asked = [items[k] for k in sorted(keys)]
    answers = sample_answers(sft, tokenizer, asked, 0.0, cfg.run.seed, cfg.preferences.max_new_tokens)
    best = ("correct", "idk_unknown")
    index = load_index(run.world_dir / "facts.jsonl")
    return {item["id"]: judge(a["text"], a["ended"], item, index).reason.split(",")[0] in best
            for item, a in zip(asked, answers)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--reward-dir", default=None, help="a reward model other than the run's models/reward")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--show", default=None, help="print the truth-wrong pairs of this kind (better > worse)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = RunDir(args.run_dir)
    cfg = run.load_config() if run.config_path.exists() else load_config("tiny")
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    items = {item["id"]: item for item in load_items(run, "label_items.jsonl")}
    pairs = held_out_pairs(run, cfg, tokenizer, items)
    model = load_reward_model(args.reward_dir or run.model_dir("reward")).eval()
    agree = agrees_with_truth(model, pairs, tokenizer.pad_id)
    knows = sft_knows(run, cfg, tokenizer, items, {p["item"] for p in pairs})

    by_kind = defaultdict(lambda: [0, 0])
    by_knowledge = defaultdict(lambda: [0, 0])
    for pair, ok in zip(pairs, agree):
        by_kind[pair["kind"]][0] += 1
        by_kind[pair["kind"]][1] += ok
        key = (f"{'known' if items[pair['item']]['known'] else 'unseen'} entity, "
               f"{'fact' if pair['fact_pair'] else 'style'} pair, SFT greedy {'right' if knows[pair['item']] else 'wrong'}")
        by_knowledge[key][0] += 1
        by_knowledge[key][1] += ok
    n = len(pairs)
    result = {
        "run": str(run.root), "held_out_pairs": n,
        "accuracy_vs_truth": round(sum(agree) / max(n, 1), 4),
        "label_ceiling": round(1 - sum(p["flipped"] for p in pairs) / max(n, 1), 4),
        "by_kind": [{"kind": k, "pairs": c, "wrong": c - g} for k, (c, g) in
                    sorted(by_kind.items(), key=lambda kv: -(kv[1][0] - kv[1][1]))],
        "by_sft_knowledge": [{"pairs": k, "count": c, "wrong": c - g} for k, (c, g) in sorted(by_knowledge.items())],
    }
    print(f"{n} test pairs: {result['accuracy_vs_truth']:.1%} ranked like the truth; "
          f"label ceiling {result['label_ceiling']:.1%}")
    for row in result["by_kind"]:
        if row["wrong"]:
            print(f"  {row['wrong']:4d} wrong of {row['pairs']:4d}  {row['kind']}")
    print("by whether the SFT model answers the prompt right (greedy):")
    for row in result["by_sft_knowledge"]:
        print(f"  {row['wrong']:4d} wrong of {row['count']:4d}  {row['pairs']}")
    if args.show:
        print(f"ranked against the truth, {args.show} (better answer first):")
        for pair, ok in zip(pairs, agree):
            if pair["kind"] == args.show and not ok:
                print(f"  {items[pair['item']]['prompt'][-1]['content']!r}\n"
                      f"      {pair['texts'][0]!r}\n    < {pair['texts'][1]!r}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
