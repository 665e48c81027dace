"""Pretraining: next-token prediction on the run's token shards, until validation loss stops improving.

    lmforge pretrain --run-dir runs/tiny                  # one stage
    torchrun --nproc_per_node 2 -m lmforge.cli pretrain --run-dir runs/tiny   # DDP

Reads data/tokens/{train,val}.bin (memory-mapped), writes models/pretrain/ (the best
weights by validation loss, config.json, trainer_state.pt to resume) and
logs/pretrain.jsonl. Batches are random windows whose offsets are a pure function of
(seed, step), which is what makes resume exact and DDP equal to one process.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..model import GPT, load_model, save_model
from ..run import StageContext, StageError
from ..tokenizer import Tokenizer, TokenizerError, load_split
from .loop import Trainer, all_reduce_sums, pick_device


def window_offsets(n_tokens: int, seq_len: int, count: int, seed: int, step: int) -> np.ndarray:
    high = n_tokens - seq_len - 1
    if high <= 0:
        raise StageError(f"only {n_tokens} tokens: not enough for one window of seq_len={seq_len}")
    return np.random.default_rng([seed, step]).integers(0, high, size=count)


def windows_to_batch(tokens: np.ndarray, offsets: np.ndarray, seq_len: int, device) -> dict:
    rows = np.stack([tokens[o:o + seq_len + 1] for o in offsets]).astype(np.int64)
    data = torch.from_numpy(rows)
    x, y = data[:, :-1], data[:, 1:]
    if device.type == "cuda":
        x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    else:
        x, y = x.to(device), y.to(device)
    return {"x": x, "y": y, "n_items": x.numel()}


def make_batch_fn(tokens: np.ndarray, batch_size: int, grad_accum: int, seq_len: int, seed: int, device):
    def batch_fn(step: int, micro: int, rank: int, world_size: int) -> dict:
        # The global batch of this step, then this process's slice of it.
        offsets = window_offsets(len(tokens), seq_len, batch_size * grad_accum * world_size, seed, step)
        start = (micro * world_size + rank) * batch_size
        return windows_to_batch(tokens, offsets[start:start + batch_size], seq_len, device)
    return batch_fn


def next_token_loss_sum(model, batch) -> torch.Tensor:
    _, loss = model(batch["x"], targets=batch["y"])
    return loss * batch["n_items"]


def make_eval_fn(tokens: np.ndarray, windows: int, batch_size: int, seq_len: int, device,
                 rank: int = 0, world_size: int = 1):
    """Mean next-token loss on `windows` fixed, evenly spaced validation windows (the same
    every eval and however many processes share the work: each takes a slice, then sums)."""
    high = len(tokens) - seq_len - 1
    if high <= 0:
        raise StageError(f"validation split has {len(tokens)} tokens: fewer than seq_len={seq_len}+1")
    offsets = np.linspace(0, high, num=windows).astype(np.int64)[rank::world_size]

    def eval_fn(model) -> float:
        total, items = 0.0, 0
        for i in range(0, len(offsets), batch_size):
            batch = windows_to_batch(tokens, offsets[i:i + batch_size], seq_len, device)
            total += float(next_token_loss_sum(model, batch))
            items += batch["n_items"]
        total, items = all_reduce_sums(total, items)
        return total / items
    return eval_fn


def run_stage(ctx: StageContext) -> dict:
    cfg, run = ctx.cfg, ctx.run
    tcfg = cfg.pretrain
    try:
        train_tokens, val_tokens = load_split(run.tokens_dir, "train"), load_split(run.tokens_dir, "val")
    except TokenizerError as e:
        raise StageError(str(e)) from None
    tokenizer = Tokenizer.load(run.tokenizer_dir)

    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = pick_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    model_cfg = dataclasses.replace(cfg.model, vocab_size=cfg.model.vocab_size or tokenizer.vocab_size)
    if model_cfg.vocab_size < tokenizer.vocab_size:
        raise StageError(f"model.vocab_size={model_cfg.vocab_size} is smaller than the tokenizer's "
                         f"{tokenizer.vocab_size}")
    model = GPT(model_cfg)
    out_dir = run.model_dir("pretrain")
    trainer = Trainer(model, tcfg, out_dir=out_dir, log_path=run.log_path("pretrain"), seed=cfg.run.seed,
                      device=device, flops_per_item=model.flops_per_token(tcfg.seq_len),
                      save_fn=save_model, stage="pretrain")
    ctx.progress(f"{model.num_params():,} parameters ({model.num_params(exclude_embedding=True):,} without "
                 f"embeddings), {len(train_tokens):,} train tokens, device {trainer.device}")
    batch_fn = make_batch_fn(train_tokens, tcfg.batch_size, tcfg.grad_accum, tcfg.seq_len, cfg.run.seed,
                             trainer.device)
    # eval_batches counts global batches, so the validation set does not change with the process count
    windows = tcfg.eval_batches * tcfg.batch_size * tcfg.grad_accum * trainer.world_size
    eval_fn = make_eval_fn(val_tokens, windows, tcfg.batch_size, tcfg.seq_len, trainer.device,
                           trainer.rank, trainer.world_size)
    result = trainer.fit(batch_fn, next_token_loss_sum, eval_fn, resume=ctx.resume)
    if not trainer.is_main:
        return {}

    from ..data.world import read_facts
    from ..evals.facts import fact_accuracy
    best = load_model(out_dir, device=trainer.device)
    facts = read_facts(run.world_dir / "facts.jsonl")
    facts_eval = fact_accuracy(best, tokenizer, facts, limit=cfg.report.fact_eval_limit)
    ctx.progress(f"val loss {result.best_val_loss:.3f}, fact completion {facts_eval['accuracy']:.1%} "
                 f"after {result.steps} steps ({result.stop_reason})")
    return {
        "val_loss": round(result.best_val_loss, 4),
        "fact_accuracy": facts_eval["accuracy"],
        "fact_accuracy_by_language": facts_eval["by_language"],
        "facts_checked": facts_eval["n"],
        "steps": result.steps,
        "tokens_seen": result.items_seen,
        "tokens_per_second": result.items_per_second,
        "mfu": result.mfu,
        "stop_reason": result.stop_reason,
        "train_seconds": result.wall_seconds,
        "parameters": model.num_params(),
        "parameters_without_embedding": model.num_params(exclude_embedding=True),
        "flops_per_token": model.flops_per_token(tcfg.seq_len),
        "device": str(trainer.device),
    }
