"""Preference pairs as training batches, shared by the reward and dpo stages.

    from lmforge.train.pairs import load_pair_rows, collate_pairs
    rows = load_pair_rows(path, tokenizer, max_tokens=256, dev_fraction=0.1, test_fraction=0.1, seed=0)
    rows.train, rows.dev, rows.test, rows.flipped["test"]
    data = stage_pairs(ctx, ctx.cfg.reward)   # the same, plus tokenizer and device, for a stage

A pair row is (chosen_ids, chosen_mask, rejected_ids, rejected_mask): the prompt plus
one answer rendered like SFT (lmforge/tokenizer.render_chat), the mask marking the
answer's tokens. A batch of B pairs stacks the B chosen rows and then the B rejected
rows into one right-padded (2B, T) tensor, so one forward pass scores both sides.

Pairs are train, dev or test as the preferences stage split them, by fact
(data/preferences.pair_split): train pairs are trained on, dev pairs choose the checkpoint,
test pairs give the headline figures and nothing else. `PairRows.overlap` counts, from the
text, what the dev and test prompts share with the training pairs (lmforge/evals/overlap.py).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.preferences import SPLITS, encode_answer, load_pairs, pair_split
from ..data.world import read_facts
from ..device import all_reduce_sums, pick_device, set_threads
from ..evals.overlap import FactFinder, prompt_overlap
from ..files import read_jsonl
from ..run import StageError
from ..tokenizer import Tokenizer


def encoded_pairs(pairs: list, tokenizer, max_tokens: int, splitter, stats: Counter):
    """Yield (pair, row, split) for each pair, split by splitter(pair); a pair whose prompt
    leaves no room for an answer is counted in stats ("prompt too long") and left out."""
    for pair in pairs:
        chosen = encode_answer(tokenizer, pair.prompt, pair.chosen, pair.chosen_ended, max_tokens)
        rejected = encode_answer(tokenizer, pair.prompt, pair.rejected, pair.rejected_ended, max_tokens)
        if sum(chosen[1]) == 0 or sum(rejected[1]) == 0:
            stats["prompt too long"] += 1
            continue
        stats["kept"] += 1
        yield pair, (*chosen, *rejected), splitter(pair)


@dataclass
class PairRows:
    """Encoded pair rows per split, whether each dev / test label was a deliberate flip of the
    automatic annotator, the pairs themselves, and counts of kept / skipped-by-reason rows."""
    train: list = field(default_factory=list)
    dev: list = field(default_factory=list)
    test: list = field(default_factory=list)
    flipped: dict = field(default_factory=lambda: {"dev": [], "test": []})
    pairs: dict = field(default_factory=lambda: {name: [] for name in SPLITS})
    stats: Counter = field(default_factory=Counter)
    split_by: Counter = field(default_factory=Counter)    # row | label item | prompt hash

    def overlap(self, facts: list[dict] | None) -> dict:
        """Dev and test prompts against the training pairs' prompts and answers, from the text."""
        finder = FactFinder(facts or [])
        train = [m["content"] for p in self.pairs["train"] for m in p.prompt] + \
            [text for p in self.pairs["train"] for text in (p.chosen, p.rejected)]
        return {name: prompt_overlap(train, sorted({p.prompt[-1]["content"] for p in self.pairs[name]}), finder)
                for name in ("dev", "test")}


def item_splits(path: Path) -> dict[str, str]:
    """label item id -> split, from datasets/label_items.jsonl (empty when it does not exist)."""
    return {row["id"]: row["split"] for row in read_jsonl(path) if row.get("id") and row.get("split")} \
        if path.exists() else {}


def load_pair_rows(path: Path, tokenizer, max_tokens: int, dev_fraction: float, test_fraction: float, seed: int,
                   items: dict[str, str] | None = None) -> PairRows:
    """Every usable pair of `path`, encoded, in its split (data/preferences.pair_split; `items`:
    label item id -> split for rows that do not carry one)."""
    if not path.exists():
        raise StageError(f"{path} does not exist; run `lmforge preferences` (or `lmforge label`) first")
    pairs, stats = load_pairs(path)
    result = PairRows(stats=stats)
    items = items or {}

    def splitter(pair) -> str:
        result.split_by["row" if pair.split else "label item" if pair.item in items else "prompt hash"] += 1
        return pair_split(pair, items, dev_fraction, test_fraction, seed)
    for pair, row, split in encoded_pairs(pairs, tokenizer, max_tokens, splitter, stats):
        getattr(result, split).append(row)
        result.pairs[split].append(pair)
        if split != "train":
            result.flipped[split].append(pair.flipped)
    if not result.train:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "the file is empty"
        raise StageError(f"no usable training preference pairs in {path} ({reasons})")
    if not result.test:
        raise StageError(f"no test preference pairs in {path}: raise label.test_prompts (or, for pairs of "
                         f"your own, the stage's test_fraction)")
    if not result.dev:      # a checkpoint still has to be chosen on something that is not the test set
        result.dev, result.flipped["dev"] = result.train[:1], [False]
        stats["dev: none, one training pair used"] += 1
    return result


@dataclass
class StagePairs:
    """What a preference-pair stage (reward, dpo) starts from."""
    tokenizer: object
    path: Path
    rows: PairRows
    device: torch.device


def stage_pairs(ctx, scfg) -> StagePairs:
    """Load the run's tokenizer and the stage's pairs file (`scfg.data_path`, else
    datasets/preferences.jsonl) split into rows, apply the run's thread count, pick the device."""
    cfg, run = ctx.cfg, ctx.run
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    path = Path(scfg.data_path) if scfg.data_path else run.path("datasets", "preferences.jsonl")
    rows = load_pair_rows(path, tokenizer, scfg.seq_len, scfg.val_fraction, scfg.test_fraction, cfg.run.seed,
                          item_splits(run.path("datasets", "label_items.jsonl")))
    set_threads(cfg.run.threads)
    return StagePairs(tokenizer, path, rows, pick_device(cfg.run.device))


def stage_overlap(run, rows: PairRows) -> dict:
    """PairRows.overlap with the run's fact table, when the world wrote one."""
    facts_path = run.world_dir / "facts.jsonl"
    return rows.overlap(read_facts(facts_path) if facts_path.exists() else None)


def mean_pair_loss_fn(rows: list, loss_fn, collate_fn, batch_size: int, pad_id: int, trainer):
    """eval_fn(model) for Trainer.fit: loss_fn's mean per pair over the validation rows, each
    rank taking its share and the sums reduced across ranks."""
    mine = rows[trainer.rank::trainer.world_size]

    def eval_fn(model) -> float:
        total, items = 0.0, 0
        for start in range(0, len(mine), batch_size):
            batch = collate_fn(mine[start:start + batch_size], pad_id, trainer.device)
            total += float(loss_fn(model, batch))
            items += batch["n_items"]
        total, items = all_reduce_sums(total, items)
        return total / max(items, 1)
    return eval_fn


def collate_pairs(rows: list, pad_id: int, device) -> dict:
    """ids (2B, T), loss_mask (2B, T) on answer tokens, lengths (2B,); chosen rows first."""
    seqs = [(r[0], r[1]) for r in rows] + [(r[2], r[3]) for r in rows]
    length = max(len(ids) for ids, _ in seqs)
    ids = np.full((len(seqs), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), length), dtype=np.int64)
    for i, (row_ids, row_mask) in enumerate(seqs):
        ids[i, :len(row_ids)], mask[i, :len(row_mask)] = row_ids, row_mask
    return {"ids": torch.from_numpy(ids).to(device), "loss_mask": torch.from_numpy(mask).to(device),
            "lengths": torch.tensor([len(s[0]) for s in seqs], device=device), "n_items": len(rows)}


def split_stats(rows: PairRows) -> dict:
    stats = rows.stats
    return {"kept": stats.get("kept", 0), "skipped": {k: v for k, v in sorted(stats.items()) if k != "kept"},
            "by_split": {"train": len(rows.train), "dev": len(rows.dev), "test": len(rows.test)},
            "split_decided_by": dict(sorted(rows.split_by.items()))}
