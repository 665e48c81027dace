"""Atomic file writes and document (Parquet) I/O shared by every stage.

A killed process must never leave a half-written artifact that a later stage would
trust, so every write goes to a temporary name in the same folder, is fsynced, and is
then renamed over the target (rename is atomic on POSIX file systems).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; on success fsync it and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets us open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def atomic_write_jsonl(path, rows: Iterable[dict]) -> int:
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_jsonl_lenient(path) -> tuple[list, int]:
    """Every line of a JSONL file that parses (any JSON value; callers check the shape), and
    how many did not: a torn last line after a crash or a bad hand edit is counted, not fatal.
    Blank lines are ignored."""
    values, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                values.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    return values, bad


# ---------------------------------------------------------------- documents as Parquet

DOC_COLUMNS = ("id", "text", "source", "url", "meta")


def read_documents(folder_or_file, columns=DOC_COLUMNS) -> Iterator[dict]:
    """Stream documents from one Parquet file or every *.parquet in a folder (sorted)."""
    import pyarrow.parquet as pq

    target = Path(folder_or_file)
    files = sorted(target.glob("*.parquet")) if target.is_dir() else [target]
    for file in files:
        parquet = pq.ParquetFile(file)
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=list(columns))
            for row in table.to_pylist():
                if "meta" in row:
                    row["meta"] = json.loads(row["meta"] or "{}")
                yield row
