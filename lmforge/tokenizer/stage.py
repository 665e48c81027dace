"""The tokenizer stage: train the BPE on the run's documents, then write the token shards in parallel.

    lmforge tokenizer --run-dir runs/tiny          # or as part of `lmforge run`
"""
from __future__ import annotations

from ..files import read_documents
from ..rundir import StageContext
from .bpe import Tokenizer
from .parts import write_token_parts


def run_stage(ctx: StageContext) -> dict:
    """The tokenizer stage: train the BPE on the run's documents, then write the token shards."""
    run, cfg = ctx.run, ctx.cfg
    docs_dir = run.documents_dir()

    def texts():
        for doc in read_documents(docs_dir, columns=("text",)):
            yield doc["text"]

    tokenizer = Tokenizer.train(texts(), cfg.tokenizer)
    tokenizer.save(run.tokenizer_dir, model_max_length=cfg.model.seq_len)
    files = sorted(docs_dir.glob("*.parquet"))
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
        "documents_per_cpu_second": meta["documents_per_cpu_second"],
        "dtype": meta["dtype"],
        "source": str(docs_dir.relative_to(run.root)),
    }
