"""Streaming, atomic Parquet writers for document shards.

    with DocWriter(run.raw_dir / "site-00000.parquet") as out:
        out.write(doc)

    with ShardedWriter(run.raw_dir, "site", docs_per_shard=1000) as out:   # site-00000, site-00001, ...
        for doc in docs:
            out.write(doc)

A DocWriter holds at most one row group in memory and renames its file into place only when
the block ends without an error, so a killed process never leaves a shard a later stage would
trust. Rows follow the document schema of lmforge/files.py ({id, text, source, url, meta}, meta
as a JSON string).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..files import DOC_COLUMNS, atomic_path


class DocWriter:
    def __init__(self, path: str | os.PathLike, rows_per_group: int = 2000):
        self.path = Path(path)
        self.rows_per_group = rows_per_group
        self.count = 0
        self._buffer: list[dict] = []

    def __enter__(self) -> "DocWriter":
        import pyarrow as pa
        import pyarrow.parquet as pq
        self._pa = pa
        self._schema = pa.schema([(name, pa.string()) for name in DOC_COLUMNS])
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd")
        return self

    def write(self, doc: dict) -> None:
        self._buffer.append({"id": str(doc["id"]), "text": doc["text"], "source": str(doc.get("source", "")),
                             "url": str(doc.get("url", "")),
                             "meta": json.dumps(doc.get("meta") or {}, ensure_ascii=False)})
        self.count += 1
        if len(self._buffer) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            columns = {name: [row[name] for row in self._buffer] for name in DOC_COLUMNS}
            self._writer.write_table(self._pa.table(columns, schema=self._schema))
            self._buffer.clear()

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
        finally:
            self._atomic.__exit__(exc_type, exc, tb)
        return False


class ShardedWriter:
    """Documents into <folder>/<prefix>-00000.parquet, -00001, ... of `docs_per_shard` each."""

    def __init__(self, folder: str | os.PathLike, prefix: str, docs_per_shard: int):
        self.folder, self.prefix, self.docs_per_shard = Path(folder), prefix, docs_per_shard
        self.paths: list[Path] = []
        self.count = 0
        self._current: DocWriter | None = None

    def __enter__(self) -> "ShardedWriter":
        return self

    def write(self, doc: dict) -> None:
        if self._current is None or self._current.count >= self.docs_per_shard:
            self._close_current()
            path = self.folder / f"{self.prefix}-{len(self.paths):05d}.parquet"
            self._current = DocWriter(path).__enter__()
            self.paths.append(path)
        self._current.write(doc)
        self.count += 1

    def _close_current(self, exc_type=None, exc=None, tb=None) -> None:
        if self._current is not None:
            current, self._current = self._current, None
            current.__exit__(exc_type, exc, tb)

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._close_current(exc_type, exc, tb)
        return False
