"""Two measurements behind the preference-tuning design, on one run's models:

    python benchmarks/preference_ceilings.py --run-dir runs/tiny [--threads 2]

1. How well the SFT model's own likelihood ranks the reward stage's held-out pairs, before
   any reward training: the answer's mean, minimum and summed token log-probability
   (higher = preferred), as accuracy against the labels and against the annotator's truth
   (flipped labels reversed), on the reward stage's test pairs (the same split, by fact).
   This is why the reward model reads likelihood features.
2. The win-rate ceiling of the alignment evaluation: SFT's temperature-1 answers to the
   test prompts (same sampling as lmforge/evals/alignment.py) judged by the ground-truth
   judge. A policy that always got the best score would win every imperfect one and tie
   the rest, so (imperfect + perfect / 2) / n bounds any PPO or DPO win rate.

Needs sft and preferences done. An analysis, never a test.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
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
from lmforge.train.pairs import collate_pairs, item_splits, load_pair_rows  # noqa: E402
from lmforge.evals.reward_model import answer_likelihood  # noqa: E402


@torch.no_grad()
def likelihood_ranking(run, cfg, tokenizer, sft) -> dict:
    rcfg = cfg.reward
    path = Path(rcfg.data_path) if rcfg.data_path else run.path("datasets", "preferences.jsonl")
    rows = load_pair_rows(path, tokenizer, rcfg.seq_len, rcfg.val_fraction, rcfg.test_fraction, cfg.run.seed,
                          item_splits(run.path("datasets", "label_items.jsonl")))
    val, flipped = rows.test, rows.flipped["test"]
    diffs = []
    for start in range(0, len(val), 32):
        batch = collate_pairs(val[start:start + 32], tokenizer.pad_id, "cpu")
        hidden = sft(batch["ids"], return_hidden=True)
        feats = answer_likelihood(sft, hidden, batch["ids"], batch["loss_mask"])      # (2B, 2): mean, min
        total = feats[:, 0] * batch["loss_mask"][:, 1:].sum(-1)                        # summed log-prob
        feats = torch.cat([feats, total[:, None]], dim=-1)
        half = feats.size(0) // 2
        diffs.append(feats[:half] - feats[half:])
    diffs = torch.cat(diffs)
    wrong_label = torch.tensor(flipped)
    result = {"held_out_pairs": len(val), "flipped_labels": int(wrong_label.sum())}
    for i, name in enumerate(("mean", "min", "sum")):
        right = diffs[:, i] > 0
        result[f"{name}_logprob_accuracy"] = round(float(right.float().mean()), 4)
        result[f"{name}_logprob_accuracy_vs_truth"] = round(float((right != wrong_label).float().mean()), 4)
    return result


def win_rate_ceiling(run, cfg, tokenizer, sft) -> dict:
    items = [r for r in load_items(run, "preferences_eval.jsonl") if r.get("split", "test") == "test"]
    answers = sample_answers(sft, tokenizer, items, 1.0, cfg.run.seed + 1, cfg.preferences.max_new_tokens)
    index = load_index(run.world_dir / "facts.jsonl")
    verdicts = [judge(a["text"], a["ended"], item, index) for item, a in zip(items, answers)]
    best = max(v.score for v in verdicts)
    perfect = sum(v.score == best for v in verdicts)
    n = len(verdicts)
    return {"eval_prompts": n, "sft_best_score": best, "sft_samples_at_best": perfect,
            "sft_reasons": dict(Counter(v.reason for v in verdicts).most_common()),
            "win_rate_ceiling": round((n - perfect + perfect / 2) / max(n, 1), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = RunDir(args.run_dir)
    cfg = run.load_config() if run.config_path.exists() else load_config("tiny")
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    sft = load_model(run.model_dir("sft")).eval()
    result = {"run": str(run.root), "likelihood_ranking": likelihood_ranking(run, cfg, tokenizer, sft),
              "win_rate_ceiling": win_rate_ceiling(run, cfg, tokenizer, sft)}
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
