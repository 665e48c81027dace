"""Pretraining: next-token prediction on the run's token shards, for the planned steps or until
validation loss stops improving.

    lmforge pretrain --run-dir runs/tiny                  # one stage
    torchrun --nproc_per_node 2 -m lmforge.cli pretrain --run-dir runs/tiny   # DDP

Reads data/tokens/{train,val}.bin (memory-mapped), writes models/pretrain/ (the best
weights by validation loss, config.json, trainer_state.pt to resume) and
logs/pretrain.jsonl. Batches are random windows whose offsets are a pure function of
(seed, step), which is what makes resume exact and DDP equal to one process.

Validation reports the mean next-token loss (nats per token, what early stopping watches) and
bits per byte: the same losses summed over the text's UTF-8 bytes instead of its tokens,
which does not depend on the vocabulary, so runs with different tokenizers compare.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ..world import read_facts
from ..device import pick_device, set_threads
from ..evals.facts import fact_accuracy
from ..evals.likelihood import window_eval_fn, windows_to_batch
from ..checkpoints import load_model, save_model
from ..model import GPT
from ..errors import StageError
from ..rundir import StageContext
from ..tokenizer import Tokenizer, TokenizerError, load_split
from .loop import Trainer, budget_line, budget_metrics


def window_offsets(n_tokens: int, seq_len: int, count: int, seed: int, step: int) -> np.ndarray:
    high = n_tokens - seq_len - 1
    if high <= 0:
        raise StageError(f"only {n_tokens} tokens: not enough for one window of seq_len={seq_len}")
    return np.random.default_rng([seed, step]).integers(0, high, size=count)


def window_batch_fn(tokens: np.ndarray, batch_size: int, grad_accum: int, seq_len: int, seed: int, device):
    """batch_fn for Trainer.fit: random windows of the token stream, their offsets a pure function
    of (seed, step)."""
    def batch_fn(step: int, micro: int, rank: int, world_size: int) -> dict:
        # The global batch of this step, then this process's slice of it.
        offsets = window_offsets(len(tokens), seq_len, batch_size * grad_accum * world_size, seed, step)
        start = (micro * world_size + rank) * batch_size
        return windows_to_batch(tokens, offsets[start:start + batch_size], seq_len, device)
    return batch_fn


def next_token_loss_sum(model, batch) -> torch.Tensor:
    _, loss = model(batch["x"], targets=batch["y"], need_logits=False)
    return loss * batch["n_items"]


def planned_steps(tcfg, parameters: int, world_size: int) -> int:
    """max_steps, or with tokens_per_param > 0 the steps that feed ratio x parameters tokens
    (every parameter counted; a step is batch_size x grad_accum x seq_len tokens per process)."""
    if not tcfg.tokens_per_param:
        return tcfg.max_steps
    per_step = tcfg.batch_size * tcfg.grad_accum * tcfg.seq_len * world_size
    return max(1, math.ceil(tcfg.tokens_per_param * parameters / per_step))


def run_stage(ctx: StageContext) -> dict:
    cfg, run = ctx.cfg, ctx.run
    tcfg = cfg.pretrain
    try:
        train_tokens, val_tokens = (load_split(run.tokens_dir, split, cfg.run.corrupt_shards, ctx.progress)
                                    for split in ("train", "val"))
    except TokenizerError as e:
        raise StageError(str(e)) from None
    skipped_shards = getattr(train_tokens, "skipped", []) + getattr(val_tokens, "skipped", [])
    tokenizer = Tokenizer.load(run.tokenizer_dir)

    set_threads(cfg.run.threads)
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
    batch_fn = window_batch_fn(train_tokens, tcfg.batch_size, tcfg.grad_accum, tcfg.seq_len, cfg.run.seed,
                               trainer.device)
    # eval_batches counts global batches, so the validation set does not change with the process count
    windows = tcfg.eval_batches * tcfg.batch_size * tcfg.grad_accum * trainer.world_size
    eval_fn = window_eval_fn(val_tokens, windows, tcfg.batch_size, tcfg.seq_len, trainer.device,
                             trainer.rank, trainer.world_size, byte_lengths=tokenizer.byte_lengths())
    ctx.progress(f"precision: {trainer.precision.record()['compute']} ({trainer.precision.reason})")
    total_steps = planned_steps(tcfg, model.num_params(), trainer.world_size)
    if tcfg.tokens_per_param:
        ctx.progress(f"{tcfg.tokens_per_param:g} tokens per parameter: {total_steps:,} steps of "
                     f"{tcfg.batch_size * tcfg.grad_accum * tcfg.seq_len * trainer.world_size:,} tokens")
    result = trainer.fit(batch_fn, next_token_loss_sum, eval_fn, resume=ctx.resume, total_steps=total_steps)
    if not trainer.is_main:
        return {}

    best = load_model(out_dir, device=trainer.device)
    facts = read_facts(run.world_dir / "facts.jsonl")
    facts_eval = fact_accuracy(best, tokenizer, facts, limit=cfg.report.fact_eval_limit)
    ctx.progress(f"val loss {result.best_val_loss:.3f}, {result.best_eval['bpb']:.3f} bits per byte, fact completion "
                 f"{facts_eval['accuracy']:.1%}; {budget_line(result)}")
    return {
        "val_loss": round(result.best_val_loss, 4),
        "val_bpb": round(result.best_eval["bpb"], 4),
        "val_tokens": int(windows * tcfg.seq_len),
        "fact_accuracy": facts_eval["accuracy"],
        "fact_accuracy_by_language": facts_eval["by_language"],
        "facts_checked": facts_eval["n"],
        **budget_metrics(result),
        "tokens_seen": result.items_seen,
        "tokens_per_second": result.items_per_second,
        "mfu": result.mfu,
        "parameters": model.num_params(),
        "parameters_without_embedding": model.num_params(exclude_embedding=True),
        "flops_per_token": model.flops_per_token(tcfg.seq_len),
        "device": str(trainer.device),
        "parallel": tcfg.parallel if trainer.world_size > 1 else "none",
        "world_size": trainer.world_size,
        "tokens_per_param": round(result.items_seen / model.num_params(), 3),
        "skipped_shards": skipped_shards,
    }
