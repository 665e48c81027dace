"""Token shards written by one process: a document stream -> {train,val}.bin + meta.json, and a .bin read back.

    from lmforge.tokenizer import write_token_shards, load_tokens
    meta = write_token_shards(tok, docs, Path("runs/tiny/data/tokens"), val_fraction=0.02, seed=1337)
    train = load_tokens("runs/tiny/data/tokens/train.bin", meta["dtype"])

The tokenizer stage runs this once per document file, in parallel processes (parts.py).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..files import atomic_write_bytes
from .bpe import Tokenizer, TokenizerError


def _val_score(text: str, seed: int) -> float:
    """A uniform number in [0, 1) from the document's text and the seed.

    Hashing the text (not the position) keeps the split stable when documents are
    reordered, and sends exact duplicates to the same side, so a val document never
    has a copy in train.
    """
    digest = hashlib.blake2b(text.encode("utf-8", errors="surrogatepass"), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big") / 2**64


def write_token_shards(
    tokenizer: Tokenizer,
    documents: Iterable[str],
    out_dir: Path,
    val_fraction: float,
    seed: int,
    batch_size: int = 1000,
) -> dict:
    """Encode documents into out_dir/{train,val}.bin (one flat id array each) + meta.json.

    Every document starts with <|bos|>. Documents stream through in batches of
    `batch_size`, so memory stays bounded whatever the corpus size. Empty or
    non-string documents are skipped and counted in meta["skipped_documents"].
    Returns the meta dict.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32
    paths = {split: out_dir / f"{split}.bin" for split in ("train", "val")}
    tmp_paths = {split: path.with_name(path.name + ".tmp") for split, path in paths.items()}
    files = {split: open(tmp, "wb") for split, tmp in tmp_paths.items()}
    tokens = {"train": 0, "val": 0}
    doc_counts = {"train": 0, "val": 0}
    val_bytes = 0
    skipped = 0
    pending = {"train": [], "val": []}

    def flush(split):
        nonlocal val_bytes
        texts = pending[split]
        if not texts:
            return
        flat = []
        for ids in tokenizer.encode_batch(texts):
            flat.append(tokenizer.bos_id)
            flat.extend(ids)
        np.asarray(flat, dtype=dtype).tofile(files[split])
        tokens[split] += len(flat)
        doc_counts[split] += len(texts)
        if split == "val":
            val_bytes += sum(len(text.encode("utf-8")) for text in texts)
        pending[split] = []

    # The first document of each split is held back until the end: if the hash sent
    # every document to one side, the held-back one from that side moves over, so
    # with two or more documents both train and val get at least one.
    held = {"train": None, "val": None}
    try:
        for text in documents:
            if not isinstance(text, str) or not text:
                skipped += 1
                continue
            split = "val" if _val_score(text, seed) < val_fraction else "train"
            if held[split] is None:
                held[split] = text
                continue
            pending[split].append(text)
            if len(pending[split]) >= batch_size:
                flush(split)

        total = doc_counts["train"] + doc_counts["val"] + len(pending["train"]) + len(pending["val"])
        total += (held["train"] is not None) + (held["val"] is not None)
        if held["val"] is None and total >= 2:
            held["val"], held["train"] = held["train"], None
        elif held["train"] is None and total >= 2:
            held["train"], held["val"] = held["val"], None
        for split in ("train", "val"):
            if held[split] is not None:
                pending[split].append(held[split])
            flush(split)

        for split, f in files.items():
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(tmp_paths[split], paths[split])
    finally:
        for split, f in files.items():
            f.close()
            if tmp_paths[split].exists():
                tmp_paths[split].unlink()

    val_content_tokens = tokens["val"] - doc_counts["val"]  # <|bos|> is not text
    meta = {
        "dtype": np.dtype(dtype).name,
        "vocab_size": tokenizer.vocab_size,
        "bos_id": tokenizer.bos_id,
        "train_tokens": tokens["train"],
        "val_tokens": tokens["val"],
        "train_documents": doc_counts["train"],
        "val_documents": doc_counts["val"],
        "skipped_documents": skipped,
        "bytes_per_token_val": val_bytes / val_content_tokens if val_content_tokens else 0.0,
        "val_fraction": val_fraction,
        "seed": seed,
    }
    atomic_write_bytes(out_dir / "meta.json", json.dumps(meta, indent=2).encode("utf-8"))
    return meta


def load_tokens(path: str | os.PathLike, dtype) -> np.ndarray:
    """A read-only memory map of a .bin shard (an empty in-memory array for an empty shard)."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerError(f"{path}: missing (run the tokenizer stage first)")
    dtype = np.dtype(dtype)
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise TokenizerError(f"{path}: {size} bytes is not a whole number of {dtype.name} tokens")
    if size == 0:
        return np.zeros(0, dtype=dtype)  # numpy cannot map an empty file
    return np.memmap(path, dtype=dtype, mode="r")
