"""Preference pairs as training batches, shared by the reward and dpo stages.

    from lmforge.train.pairs import load_pair_rows, collate_pairs
    train_rows, val_rows, stats, val_flipped = load_pair_rows(path, tokenizer, max_tokens=256, val_fraction=0.1, seed=0)
    data = stage_pairs(ctx, ctx.cfg.reward)   # the same, plus tokenizer and device, for a stage

A pair row is (chosen_ids, chosen_mask, rejected_ids, rejected_mask): the prompt plus
one answer rendered like SFT (lmforge/tokenizer.render_chat), the mask marking the
answer's tokens. A batch of B pairs stacks the B chosen rows and then the B rejected
rows into one right-padded (2B, T) tensor, so one forward pass scores both sides.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.preferences import encode_answer, is_validation, load_pairs
from ..run import StageError


def encoded_pairs(pairs: list, tokenizer, max_tokens: int, val_fraction: float, seed: int, stats: Counter):
    """Yield (pair, row, is_validation) for each pair, split by prompt; a pair whose prompt
    leaves no room for an answer is counted in stats ("prompt too long") and left out."""
    for pair in pairs:
        chosen = encode_answer(tokenizer, pair.prompt, pair.chosen, pair.chosen_ended, max_tokens)
        rejected = encode_answer(tokenizer, pair.prompt, pair.rejected, pair.rejected_ended, max_tokens)
        if sum(chosen[1]) == 0 or sum(rejected[1]) == 0:
            stats["prompt too long"] += 1
            continue
        stats["kept"] += 1
        yield pair, (*chosen, *rejected), is_validation(pair, val_fraction, seed)


def load_pair_rows(path: Path, tokenizer, max_tokens: int, val_fraction: float, seed: int):
    """(train rows, validation rows, Counter of kept / skipped-by-reason, and for each
    validation row whether its label was one the automatic annotator flipped); split by prompt."""
    if not path.exists():
        raise StageError(f"{path} does not exist; run `lmforge preferences` (or `lmforge label`) first")
    pairs, stats = load_pairs(path)
    train, val, val_flipped = [], [], []
    for pair, row, held_out in encoded_pairs(pairs, tokenizer, max_tokens, val_fraction, seed, stats):
        if held_out:
            val.append(row)
            val_flipped.append(pair.flipped)
        else:
            train.append(row)
    if not train:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "the file is empty"
        raise StageError(f"no usable preference pairs in {path} ({reasons})")
    if not val:
        val, val_flipped = train[:1], [False]
    return train, val, stats, val_flipped


@dataclass
class StagePairs:
    """What a preference-pair stage (reward, dpo) starts from."""
    tokenizer: object
    path: Path
    train: list
    val: list
    stats: Counter
    val_flipped: list
    device: torch.device


def stage_pairs(ctx, scfg) -> StagePairs:
    """Load the run's tokenizer and the stage's pairs file (`scfg.data_path`, else
    datasets/preferences.jsonl) split into rows, apply the run's thread count, pick the device."""
    from ..device import pick_device, set_threads
    from ..tokenizer import Tokenizer
    cfg, run = ctx.cfg, ctx.run
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    path = Path(scfg.data_path) if scfg.data_path else run.path("datasets", "preferences.jsonl")
    train, val, stats, val_flipped = load_pair_rows(path, tokenizer, scfg.seq_len, scfg.val_fraction, cfg.run.seed)
    set_threads(cfg.run.threads)
    return StagePairs(tokenizer, path, train, val, stats, val_flipped, pick_device(cfg.run.device))


def mean_pair_loss_fn(rows: list, loss_fn, collate_fn, batch_size: int, pad_id: int, trainer):
    """eval_fn(model) for Trainer.fit: loss_fn's mean per pair over the validation rows, each
    rank taking its share and the sums reduced across ranks."""
    from ..device import all_reduce_sums
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


def answer_logprob_sums(model, ids: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Sum of log p(answer token) per row: the sequence log-likelihood DPO compares."""
    logits = model(ids[:, :-1])
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return (logp * loss_mask[:, 1:]).sum(-1)


def split_stats(stats: Counter) -> dict:
    return {"kept": stats.get("kept", 0), "skipped": {k: v for k, v in sorted(stats.items()) if k != "kept"}}
