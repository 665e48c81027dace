"""Token shards for corpora that do not fit in memory: tokenized in parallel processes into
memory-mapped parts, read back as one array of windows.

    meta = write_token_parts(tokenizer_dir, parquet_files, out_dir, val_fraction=0.02, seed=1, workers=8)
    train = open_parts(out_dir, "train", meta, on_corrupt="stop")    # TokenShards: len(), [a:b]

Writing. Each document file (a cleaned Parquet shard) is one task for the clean stage's
executor (lmforge/data/executors.py: local processes, or Ray): the worker streams the file in
row groups through `write_token_shards` (shards.py) into `part-<k>/{train,val}.bin` (uint16 when
the vocabulary fits, else uint32, each document led by <|bos|>), so a worker holds one batch
of documents, never the corpus. The train / validation split is a hash of each document's
text, so it does not depend on the number of workers or on file order; parts are numbered by
input file, so the concatenation is the same for any worker count. `meta.json`, written last
and atomically, is the commit point: it lists every part with its token counts.

Reading. `TokenShards` maps every part (np.memmap: pages come from the OS cache and go back to
it, so reading does not grow the process) and presents them as one array: `len()` is the
total and `tokens[a:b]` may span two parts. Pretraining draws window offsets uniformly over
that total from a generator seeded by (seed, step), so each batch mixes windows from all
parts (a shuffle across shards with no shuffle buffer) and a resumed run draws exactly the
batches it would have: resume needs nothing but the step.

A part whose file is missing, not a whole number of tokens, or not the size meta.json
recorded is corrupt: `on_corrupt="stop"` raises one line naming the file; "skip" leaves it
out, names it in a warning and counts it (`skipped` on the TokenShards, in the manifest).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..data.executors import make_executor
from ..files import atomic_write_json, read_documents
from .bpe import Tokenizer, TokenizerError
from .shards import load_tokens, write_token_shards

PART = "part-{:05d}"


class CorruptShardError(ValueError):
    """A token shard that does not match meta.json, in one line naming the file."""


def _tokenize_file(task: dict) -> dict:
    """Worker: one document file -> part-<k>/{train,val}.bin + meta.json."""
    started = time.process_time()
    tokenizer = Tokenizer.load(task["tokenizer_dir"])
    texts = (doc["text"] for doc in read_documents(task["file"], columns=("text",)))
    meta = write_token_shards(tokenizer, texts, Path(task["out_dir"]), task["val_fraction"], task["seed"])
    return {"part": Path(task["out_dir"]).name, **meta, "cpu_seconds": time.process_time() - started}


@contextlib.contextmanager
def _quiet_fork():
    # the BPE trainer's Rust threads ran in this process; tokenizers then disables them in a
    # forked child and says so once per worker. Saying it explicitly keeps the log clean.
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def write_token_parts(tokenizer_dir: Path, files: list[Path], out_dir: Path, val_fraction: float, seed: int,
                      workers: int = 0, executor: str = "local", ray_address: str = "") -> dict:
    """Tokenize every file in parallel into out_dir/part-<k>/; returns (and writes) meta.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "meta.json").unlink(missing_ok=True)          # the old shards stop being valid now
    for old in list(out_dir.glob("part-*")) + [out_dir / "train.bin", out_dir / "val.bin"]:
        shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
    tasks = [{"tokenizer_dir": str(tokenizer_dir), "file": str(f), "out_dir": str(out_dir / PART.format(i)),
              "val_fraction": val_fraction, "seed": seed} for i, f in enumerate(files)]
    pool = make_executor(executor, workers, ray_address)
    try:
        with _quiet_fork():
            parts = pool.map(_tokenize_file, tasks)
    finally:
        pool.close()
    for part in parts:
        (out_dir / part["part"] / "meta.json").unlink(missing_ok=True)    # the top meta.json lists them all
    first = parts[0] if parts else {"dtype": "uint16", "vocab_size": 0, "bos_id": 0}
    total = lambda key: sum(p[key] for p in parts)  # noqa: E731
    val_text_tokens = total("val_tokens") - total("val_documents")
    val_bytes = sum(p["bytes_per_token_val"] * (p["val_tokens"] - p["val_documents"]) for p in parts)
    meta = {"dtype": first["dtype"], "vocab_size": first["vocab_size"], "bos_id": first["bos_id"],
            "train_tokens": total("train_tokens"), "val_tokens": total("val_tokens"),
            "train_documents": total("train_documents"), "val_documents": total("val_documents"),
            "skipped_documents": total("skipped_documents"),
            "bytes_per_token_val": val_bytes / val_text_tokens if val_text_tokens else 0.0,
            "val_fraction": val_fraction, "seed": seed,
            # CPU seconds of the workers: documents per CPU-second is a per-core rate whatever else runs
            "cpu_seconds": round(total("cpu_seconds"), 2),
            "documents_per_cpu_second": round((total("train_documents") + total("val_documents"))
                                              / max(total("cpu_seconds"), 1e-9), 1),
            "parts": [{"dir": p["part"], "train_tokens": p["train_tokens"], "val_tokens": p["val_tokens"]}
                      for p in parts]}
    atomic_write_json(out_dir / "meta.json", meta)
    return meta


class TokenShards:
    """Several memory-mapped token files read as one array (len and [a:b] slices)."""

    def __init__(self, arrays: list[np.ndarray], dtype, skipped: list[str] | None = None):
        self.arrays = [a for a in arrays if len(a)]
        self.dtype = np.dtype(dtype)
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])
        self.skipped = skipped or []

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("TokenShards supports [a:b] slices only")
        start, stop, _ = key.indices(len(self))
        if stop <= start:
            return np.zeros(0, dtype=self.dtype)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        pieces = []
        while start < stop:
            array, base = self.arrays[first], int(self.starts[first])
            end = min(stop, base + len(array))
            pieces.append(np.asarray(array[start - base:end - base]))
            start, first = end, first + 1
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def __array__(self, dtype=None, copy=None):     # np.asarray(shards): the whole thing, for small corpora
        whole = np.concatenate([np.asarray(a) for a in self.arrays]) if self.arrays else np.zeros(0, self.dtype)
        return whole.astype(dtype) if dtype is not None else whole


def open_parts(out_dir: Path, split: str, meta: dict, on_corrupt: str = "stop", warn=None) -> TokenShards:
    """The split's parts as one TokenShards; corrupt parts stop with one line or are skipped."""
    dtype = np.dtype(meta["dtype"])
    arrays, skipped = [], []
    for part in meta["parts"]:
        path = Path(out_dir) / part["dir"] / f"{split}.bin"
        expected = part[f"{split}_tokens"] * dtype.itemsize
        problem = None
        if not path.is_file():
            problem = "missing"
        elif path.stat().st_size != expected:
            problem = f"{path.stat().st_size} bytes, meta.json recorded {expected}"
        if problem:
            message = f"token shard {path} is corrupt ({problem})"
            if on_corrupt == "stop":
                raise CorruptShardError(message + "; rerun the tokenizer stage, or run.corrupt_shards=skip to "
                                                  "train without it")
            skipped.append(str(path))
            if warn:
                warn(message + "; skipped (run.corrupt_shards=skip)")
            continue
        if expected:
            arrays.append(np.memmap(path, dtype=dtype, mode="r"))
    return TokenShards(arrays, dtype, skipped)


def load_split(tokens_dir: str | os.PathLike, split: str, on_corrupt: str = "stop", warn=None):
    """The tokenizer stage's train or val tokens of a run (tokens_dir = RunDir.tokens_dir),
    memory-mapped: one array, or a TokenShards over the parallel tokenizer's parts (len() and
    [a:b] slices alike). on_corrupt ("stop" | "skip") is what a corrupt part does."""
    tokens_dir = Path(tokens_dir)
    meta_path = tokens_dir / "meta.json"
    if not meta_path.is_file():
        raise TokenizerError(f"{meta_path} is missing; run the tokenizer stage first")
    meta = json.loads(meta_path.read_text())
    if "parts" in meta:
        try:
            return open_parts(tokens_dir, split, meta, on_corrupt, warn)
        except CorruptShardError as err:
            raise TokenizerError(str(err)) from None
    return load_tokens(tokens_dir / f"{split}.bin", meta["dtype"])
