"""Where raw documents come from: one reader per kind of source (the spec grammar is lmforge/config/sources.py).

A source is named in `collect.sources` as `[name=]kind[:location][#text_column][~profile][@weight]`
or as a YAML mapping with the same fields (`profile:` included):

    site                              the built-in world as a web site, served on 127.0.0.1 and crawled
    site_warc                         the same site, read from the WARC file collect writes
    world                             the built-in world's clean text, without any web dirt
    books=folder:/data/books@0.16     .txt / .md / .html files under a folder (gzipped too)
    web=warc:/data/cc/*.warc.gz@0.6   WARC or ARC files, gzipped or not (a glob is fine)
    jsonl:/data/x.jsonl#content       JSON lines; the text sits in the "content" field
    parquet:/data/x.parquet           Parquet; the text column defaults to collect.text_column
    hub:HuggingFaceFW/fineweb-edu     a Hugging Face dataset, streamed (needs `datasets` and a network)
    crawl:https://example.org/        an HTTP crawl from this seed (several seeds: separate with |)
    books=folder:/data/books~curated  cleaned with the `curated` profile (lmforge/config/profiles.py)

The weight is the source's share of the training mixture (applied after cleaning, see
lmforge/data/mixture.py). Every reader yields either a document `{id, text, source, url, meta}`
or an `UnreadableInput` that says where and why; a reader never raises on bad data, only on a
source it cannot open at all (`SourceError`, one line for the user).
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..config.sources import SourceSpec

TEXT_SUFFIXES = {".txt": "text", ".text": "text", ".md": "markdown", ".markdown": "markdown",
                 ".html": "html", ".htm": "html", ".xhtml": "html"}
HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = HTML_TYPES + ("text/plain", "text/markdown")
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


class SourceError(RuntimeError):
    """A source that cannot be opened at all (missing path, offline hub, bad spec): one line."""


@dataclass
class UnreadableInput:
    """An input that could not be turned into a document, and why."""
    source: str
    location: str
    reason: str
    detail: str = ""
    preview: str = ""

    def to_row(self, stage: str = "collect") -> dict:
        key = hashlib.sha1(self.location.encode("utf-8", "replace")).hexdigest()[:16]
        return {"id": f"{self.source}/{key}", "text": self.preview[:2000], "source": self.source, "url": self.location,
                "meta": {"reason": self.reason, "detail": self.detail[:300], "stage": stage}}


# ---------------------------------------------------------------- bytes to text

def sniff_binary(data: bytes) -> bool:
    """NUL bytes, or many control characters, in the first 8 KB: not text."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    return controls > max(8, len(head) // 100)


def charset_of(content_type: str | None, data: bytes) -> str:
    """The declared charset: the Content-Type header's, else an HTML <meta>'s, else UTF-8."""
    if content_type:
        match = re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type, re.IGNORECASE)
        if match:
            return match.group(1).lower()
    match = META_CHARSET.search(data[:4096])
    return match.group(1).decode("ascii", "replace").lower() if match else "utf-8"


def decode_bytes(data: bytes, charset: str = "utf-8") -> tuple[str | None, str, str]:
    """(text, reason, detail): text is None when the bytes are unreadable, and reason says why.

    Decoding is strict on purpose: bytes that are not what they claim to be are counted as
    unreadable rather than guessed at, so no garbled text slips into training."""
    if not data.strip():
        return None, "empty", ""
    if sniff_binary(data):
        return None, "binary", ""
    if data.startswith(b"\xef\xbb\xbf"):
        data, charset = data[3:], "utf-8"
    try:
        return data.decode(charset), "", ""
    except LookupError:
        return None, "unknown_charset", charset
    except UnicodeDecodeError as err:
        reason = "invalid_utf8" if charset.replace("-", "").replace("_", "") in ("utf8", "utf8sig") else "invalid_encoding"
        return None, reason, f"{charset}: {err.reason} at byte {err.start}"


def _doc_id(source: str, key: str) -> str:
    return f"{source}/{hashlib.sha1(key.encode('utf-8', 'replace')).hexdigest()[:16]}"


def _preview(data: bytes) -> str:
    return data[:300].decode("utf-8", "replace")


def read_file_bytes(path: Path, max_bytes: int) -> tuple[bytes | None, str, str]:
    """The file's bytes (gunzipped for .gz), or None with a reason: too large, truncated gzip..."""
    try:
        size = path.stat().st_size
        if path.suffix.lower() != ".gz":
            if size > max_bytes:
                return None, "too_large", f"{size} bytes > {max_bytes}"
            return path.read_bytes(), "", ""
        with gzip.open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            return None, "too_large", f"more than {max_bytes} bytes after gunzip"
        return data, "", ""
    except (EOFError, zlib.error) as err:
        return None, "truncated_gzip", str(err)[:200]
    except gzip.BadGzipFile as err:
        return None, "bad_gzip", str(err)[:200]
    except OSError as err:
        return None, "os_error", f"{type(err).__name__}: {err}"[:200]


# ---------------------------------------------------------------- readers

def read_folder(spec: SourceSpec, max_bytes: int) -> Iterator[dict | UnreadableInput]:
    root = Path(spec.location)
    if not root.is_dir():
        raise SourceError(f"source {spec.name}: folder {root} does not exist")
    for folder, subdirs, files in os.walk(root):
        subdirs.sort()
        for file_name in sorted(files):
            path = Path(folder) / file_name
            rel = str(path.relative_to(root))
            suffixes = [s.lower() for s in path.suffixes[-2:]]
            suffix = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) == 2 else \
                (suffixes[-1] if suffixes else "")
            fmt = TEXT_SUFFIXES.get(suffix)
            if fmt is None:
                yield UnreadableInput(spec.name, rel, "unsupported_type", path.suffix or "(no suffix)")
                continue
            data, reason, detail = read_file_bytes(path, max_bytes)
            if data is None:
                yield UnreadableInput(spec.name, rel, reason, detail)
                continue
            charset = charset_of(None, data) if fmt == "html" else "utf-8"
            text, reason, detail = decode_bytes(data, charset)
            if text is None:
                yield UnreadableInput(spec.name, rel, reason, detail, _preview(data) if reason != "binary" else "")
                continue
            yield {"id": _doc_id(spec.name, rel), "text": text, "source": spec.name, "url": f"file://{path.resolve()}",
                   "meta": {"format": fmt, "path": rel}}


def _expand(location: str) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(location)) if any(c in location for c in "*?[") else [Path(location)]
    if not paths or not all(p.exists() for p in paths):
        raise SourceError(f"no file matches {location}")
    return paths


def read_warc(spec: SourceSpec, max_bytes: int) -> Iterator[dict | UnreadableInput]:
    """Response (and resource) records of WARC or ARC files; other record types are not documents."""
    from warcio.archiveiterator import ArchiveIterator
    for path in _expand(spec.location):
        seen_urls: dict[str, int] = {}
        position = "start"
        try:
            with open(path, "rb") as handle:
                for index, record in enumerate(ArchiveIterator(handle, arc2warc=True)):
                    # (the iterator's get_record_offset() would consume the record's content)
                    position = f"record {index}"
                    if record.rec_type not in ("response", "resource"):
                        continue
                    url = record.rec_headers.get_header("WARC-Target-URI") or f"{path.name}@{position}"
                    seen_urls[url] = seen_urls.get(url, 0) + 1
                    key = url if seen_urls[url] == 1 else f"{url}~{seen_urls[url]}"
                    status, content_type = 200, record.rec_headers.get_header("Content-Type") or ""
                    if record.http_headers is not None:
                        try:
                            status = int(record.http_headers.get_statuscode() or 200)
                        except ValueError:
                            status = 0
                        content_type = record.http_headers.get_header("Content-Type") or ""
                    if status != 200:
                        yield UnreadableInput(spec.name, url, f"http_{status}")
                        continue
                    if content_type and not content_type.split(";")[0].strip().lower().startswith(TEXT_TYPES):
                        yield UnreadableInput(spec.name, url, "content_type", content_type[:100])
                        continue
                    data = record.content_stream().read(max_bytes + 1)
                    if len(data) > max_bytes:
                        yield UnreadableInput(spec.name, url, "too_large", f"more than {max_bytes} bytes")
                        continue
                    if getattr(record.raw_stream, "limit", 0):
                        # the file ended before the record's declared length: a cut-off WARC
                        yield UnreadableInput(spec.name, url, "truncated_warc", f"{record.raw_stream.limit} bytes missing")
                        continue
                    text, reason, detail = decode_bytes(data, charset_of(content_type, data))
                    if text is None:
                        yield UnreadableInput(spec.name, url, reason, detail)
                        continue
                    is_html = not content_type or content_type.lower().startswith(HTML_TYPES) or \
                        text.lstrip()[:200].lower().startswith(("<!doctype html", "<html"))
                    yield {"id": _doc_id(spec.name, key), "text": text, "source": spec.name, "url": url,
                           "meta": {"format": "html" if is_html else "text", "content_type": content_type}}
        except Exception as err:  # noqa: BLE001 - truncated gzip, cut records, garbage: the rest of the file is lost
            yield UnreadableInput(spec.name, f"{path}@{position}", "truncated_warc", f"{type(err).__name__}: {err}"[:300])
            continue
        if not _gzip_complete(path):
            # warcio stops quietly when the last gzip member is cut before any of it decompresses
            yield UnreadableInput(spec.name, f"{path}@end", "truncated_warc", "the last gzip member is incomplete")


def _gzip_complete(path: Path) -> bool:
    """False when a gzip file (of one or many members) ends inside a member; True for non-gzip files."""
    with open(path, "rb") as handle:
        if handle.read(2) != b"\x1f\x8b":
            return True
        handle.seek(0)
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        inside = False           # some of the current member has been read
        data = handle.read(1 << 16)
        try:
            while data:
                decompressor.decompress(data)
                inside = True
                if decompressor.eof:         # a member ended; the next may start in the same chunk
                    data = decompressor.unused_data
                    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    inside = False
                    if data:
                        continue
                data = handle.read(1 << 16)
        except zlib.error:
            return False
        return not inside


def _bounded_lines(handle, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) with lines longer than max_bytes given as None, never held whole."""
    number = 0
    while True:
        line = handle.readline(max_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while True:      # skip the rest of the long line, a megabyte at a time
                chunk = handle.readline(1 << 20)
                if not chunk or chunk.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, line


def _row_to_doc(spec: SourceSpec, row, location: str, max_bytes: int) -> dict | UnreadableInput:
    """One JSON/Parquet/hub row: its text column as a document, or why not."""
    if not isinstance(row, dict):
        return UnreadableInput(spec.name, location, "bad_json", f"a {type(row).__name__}, not an object")
    if spec.text_column not in row:
        return UnreadableInput(spec.name, location, "missing_column", f"no {spec.text_column!r} field")
    text = row[spec.text_column]
    if text is None or (isinstance(text, str) and not text.strip()):
        return UnreadableInput(spec.name, location, "empty")
    if not isinstance(text, str):
        return UnreadableInput(spec.name, location, "bad_type", f"{spec.text_column} is a {type(text).__name__}")
    if len(text) > max_bytes:
        return UnreadableInput(spec.name, location, "too_large", f"{len(text)} characters")
    id_column, url_column = spec.options.get("id_column", "id"), spec.options.get("url_column", "url")
    key = str(row.get(id_column) or location)
    meta = {"format": str(spec.options.get("format", "text"))}
    if row.get(id_column) is not None:
        meta["source_id"] = str(row[id_column])
    return {"id": _doc_id(spec.name, key if row.get(id_column) is not None else location), "text": text,
            "source": spec.name, "url": str(row.get(url_column) or location), "meta": meta}


def read_jsonl(spec: SourceSpec, max_bytes: int) -> Iterator[dict | UnreadableInput]:
    for path in _expand(spec.location):
        opener = gzip.open if path.suffix.lower() == ".gz" else open
        number = 0
        try:
            with opener(path, "rb") as handle:
                for number, line in _bounded_lines(handle, max_bytes):
                    location = f"{path.name}:{number}"
                    if line is None:
                        yield UnreadableInput(spec.name, location, "too_large", f"line longer than {max_bytes} bytes")
                        continue
                    if not line.strip():
                        continue            # a blank line holds no record
                    try:
                        row = json.loads(line)
                    except UnicodeDecodeError as err:
                        yield UnreadableInput(spec.name, location, "invalid_utf8", str(err)[:200])
                        continue
                    except ValueError as err:
                        yield UnreadableInput(spec.name, location, "bad_json", str(err)[:200],
                                              line[:300].decode("utf-8", "replace"))
                        continue
                    yield _row_to_doc(spec, row, location, max_bytes)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            yield UnreadableInput(spec.name, f"{path.name}:{number + 1}", "truncated_gzip", str(err)[:200])
        except OSError as err:
            yield UnreadableInput(spec.name, str(path), "os_error", f"{type(err).__name__}: {err}"[:200])


def read_parquet(spec: SourceSpec, max_bytes: int) -> Iterator[dict | UnreadableInput]:
    import pyarrow.parquet as pq
    for path in _expand(spec.location):
        try:
            parquet = pq.ParquetFile(path)
            names = set(parquet.schema_arrow.names)
        except Exception as err:  # noqa: BLE001 - not Parquet, cut short, unreadable footer
            yield UnreadableInput(spec.name, str(path), "bad_parquet", f"{type(err).__name__}: {err}"[:200])
            continue
        if spec.text_column not in names:
            yield UnreadableInput(spec.name, str(path), "missing_column", f"no column {spec.text_column!r}")
            continue
        columns = [c for c in (spec.text_column, spec.options.get("id_column", "id"),
                               spec.options.get("url_column", "url")) if c in names]
        row_number = 0
        try:
            for batch in parquet.iter_batches(batch_size=1000, columns=list(dict.fromkeys(columns))):
                for row in batch.to_pylist():
                    yield _row_to_doc(spec, row, f"{path.name}:{row_number}", max_bytes)
                    row_number += 1
        except Exception as err:  # noqa: BLE001 - a corrupt row group loses the rest of the file
            yield UnreadableInput(spec.name, f"{path.name}:{row_number}", "bad_parquet", f"{type(err).__name__}: {err}"[:200])


def read_hub(spec: SourceSpec, max_bytes: int) -> Iterator[dict | UnreadableInput]:
    """A Hugging Face dataset through `datasets` streaming: nothing is downloaded whole."""
    try:
        import datasets
    except ImportError:
        raise SourceError(f"source {spec.name}: hub datasets need the `datasets` package "
                          "(pip install 'lmforge[hf]')") from None
    data_files = spec.options.get("data_files")
    if not data_files and not Path(spec.location).exists():
        _check_online(spec)
    try:
        dataset = datasets.load_dataset(spec.location, spec.options.get("config"), split=spec.options.get("split", "train"),
                                        streaming=True, data_files=data_files)
        rows = iter(dataset)
    except Exception as err:  # noqa: BLE001 - every failure to open is one line for the user
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise SourceError(f"source {spec.name}: hub dataset {spec.location!r} could not be opened "
                          f"({type(err).__name__}: {first})") from None
    index = 0
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as err:  # noqa: BLE001 - a dropped connection ends the stream, counted
            yield UnreadableInput(spec.name, f"{spec.location}:{index}", "stream_error", f"{type(err).__name__}: {err}"[:200])
            return
        yield _row_to_doc(spec, row, f"{spec.location}:{index}", max_bytes)
        index += 1


def _check_online(spec: SourceSpec, host: str = "huggingface.co") -> None:
    """Fail in a second, with one line, when the hub cannot be reached (instead of long retries)."""
    import socket
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise SourceError(f"source {spec.name}: hub dataset {spec.location!r} needs the network, "
                          "and HF_HUB_OFFLINE is set")
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as err:
        raise SourceError(f"source {spec.name}: hub dataset {spec.location!r} needs the network, and {host} "
                          f"cannot be reached ({type(err).__name__}); use a local source or go online") from None


def read_world_text(world, spec: SourceSpec) -> Iterator[dict]:
    """The built-in world's documents as plain text (no web dirt): the cleanest possible source."""
    for doc in world.documents():
        yield {"id": f"{spec.name}/{doc['id']}", "text": doc["text"], "source": spec.name, "url": doc["url"],
               "meta": {**doc["meta"], "format": "text", "kind": doc["source"]}}
