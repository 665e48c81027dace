"""The tokenizer stage: train the BPE on the run's documents, then write the token shards in parallel.

    lmforge tokenizer --run-dir runs/tiny          # or as part of `lmforge run`
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from ..files import read_documents
from ..rundir import StageContext
from .bpe import Tokenizer
from .parts import write_token_parts


def training_sample(files: list[Path], train_chars: int = 0) -> Iterator[str]:
    """The texts the BPE trainer reads: every document, or with a budget of `train_chars`, the
    first documents of each file up to an equal share of what is left of the budget, so the
    sample spans the whole corpus and a file too short for its share passes the rest on. The
    trainer keeps a count of every distinct word it sees (about 0.7 KB each,
    benchmarks/bpe_train_memory.py), and real text keeps meeting new words, so the budget is
    what bounds its memory on a large corpus."""
    left = train_chars
    for index, file in enumerate(files):
        share = left / (len(files) - index)
        for doc in read_documents(file, columns=("text",)):
            if train_chars and share <= 0:
                break
            share -= len(doc["text"])
            left -= len(doc["text"])
            yield doc["text"]


def run_stage(ctx: StageContext) -> dict:
    """The tokenizer stage: train the BPE on the run's documents, then write the token shards."""
    run, cfg = ctx.run, ctx.cfg
    docs_dir = run.documents_dir()

    files = sorted(docs_dir.glob("*.parquet"))
    read = [0, 0]        # documents and characters the trainer reads

    def texts():
        for text in training_sample(files, cfg.tokenizer.train_chars):
            read[0] += 1
            read[1] += len(text)
            yield text

    # CPU seconds of this process, the trainer's Rust threads included: a per-core rate like the shards'
    started = time.process_time()
    tokenizer = Tokenizer.train(texts(), cfg.tokenizer)
    bpe_cpu_seconds = time.process_time() - started
    tokenizer.save(run.tokenizer_dir, model_max_length=cfg.model.seq_len)
    ctx.progress(f"trained a {tokenizer.vocab_size}-token BPE on {docs_dir}; tokenizing {len(files)} files "
                 f"into token shards")
    # one part per document file, in parallel processes (parts.py)
    meta = write_token_parts(run.tokenizer_dir, files, run.tokens_dir, cfg.tokenizer.val_fraction, cfg.run.seed,
                             workers=cfg.tokenizer.workers, executor=cfg.clean.executor,
                             ray_address=cfg.clean.ray_address)
    ctx.progress(f"{meta['train_tokens']:,} train / {meta['val_tokens']:,} val tokens, "
                 f"{meta['bytes_per_token_val']:.2f} bytes per token")
    return {
        "vocab_size": tokenizer.vocab_size,
        "train_tokens": meta["train_tokens"],
        "val_tokens": meta["val_tokens"],
        "train_documents": meta["train_documents"],
        "val_documents": meta["val_documents"],
        "skipped_documents": meta["skipped_documents"],
        "bytes_per_token": round(meta["bytes_per_token_val"], 3),
        "parts": len(meta["parts"]),
        "bpe_documents": read[0],
        "bpe_chars": read[1],
        "bpe_cpu_seconds": round(bpe_cpu_seconds, 2),
        "bpe_documents_per_cpu_second": round(read[0] / max(bpe_cpu_seconds, 1e-9), 1),
        "documents_per_cpu_second": meta["documents_per_cpu_second"],
        "dtype": meta["dtype"],
        "source": str(docs_dir.relative_to(run.root)),
    }
