"""Tests of the collect readers (lmforge/data/sources.py): every kind of bad input ends up as an
UnreadableInput with a reason, never an exception and never a silent loss.

    python -m pytest tests/test_data_sources.py -q
"""
from __future__ import annotations

import gzip
import io
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmforge.config import ConfigError
from lmforge.config.sources import SourceSpec, parse_sources
from lmforge.data.sources import (SourceError, UnreadableInput, decode_bytes, read_folder, read_hub, read_jsonl,
                                  read_parquet, read_warc)


def split(records):
    docs = [r for r in records if not isinstance(r, UnreadableInput)]
    bad = {r.location: r.reason for r in records if isinstance(r, UnreadableInput)}
    return docs, bad


def test_parse_sources_strings_and_mappings():
    specs = parse_sources(["site@0.6", "books=folder:/data/books@0.16", "jsonl:/x/a.jsonl#content",
                           "crawl:https://a.example/|https://b.example/@0.1",
                           {"kind": "hub", "path": "org/ds", "weight": 0.3, "split": "validation"}])
    assert [(s.name, s.kind, s.weight) for s in specs] == [
        ("site", "site", 0.6), ("books", "folder", 0.16), ("jsonl", "jsonl", 1.0), ("crawl", "crawl", 0.1),
        ("hub", "hub", 0.3)]
    assert specs[1].location == "/data/books" and specs[2].text_column == "content" and specs[0].text_column == "text"
    assert specs[4].options == {"split": "validation"}
    for bad, words in [(["nope:/x"], "unknown source kind"), (["folder"], "needs a location"),
                       (["site@0"], "weight must be > 0"), (["site", "site"], "used twice"), ([], "at least one")]:
        with pytest.raises(ConfigError, match=words):
            parse_sources(bad)


def test_decode_bytes_reasons():
    assert decode_bytes(b"caf\xc3\xa9")[0] == "café"
    assert decode_bytes(b"   \n")[1] == "empty"
    assert decode_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")[1] == "binary"
    assert decode_bytes(b"caf\xe9 au lait")[1] == "invalid_utf8"
    assert decode_bytes(b"caf\xe9", "cp1252")[0] == "café"
    assert decode_bytes(b"x", "no-such-charset")[1] == "unknown_charset"


def test_folder_reader_counts_every_bad_file(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("A plain text document.\n", encoding="utf-8")
    (root / "b.md").write_text("# Title\n\nSome *markdown* text.\n", encoding="utf-8")
    (root / "sub" / "c.html").write_bytes('<html><head><meta charset="utf-8"></head><body><p>Blåbær</p></body></html>'
                                          .encode())
    (root / "sub" / "latin.html").write_bytes(b'<html><head><meta charset="iso-8859-1"></head><p>Bl\xe5b\xe6r</p></html>')
    (root / "binary.txt").write_bytes(bytes(range(256)) * 2)
    (root / "invalid.txt").write_bytes(b"caf\xe9 \xff\xfe broken")
    (root / "empty.txt").write_bytes(b"")
    (root / "big.txt").write_text("x" * 5000)
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / "ok.txt.gz").write_bytes(gzip.compress(b"Gzipped text is fine."))
    (root / "cut.txt.gz").write_bytes(gzip.compress(random.Random(0).randbytes(600).hex().encode())[:200])
    docs, bad = split(list(read_folder(SourceSpec("books", "folder", str(root)), max_bytes=2000)))
    assert sorted(d["meta"]["path"] for d in docs) == ["a.txt", "b.md", "ok.txt.gz", "sub/c.html", "sub/latin.html"]
    formats = {d["meta"]["path"]: d["meta"]["format"] for d in docs}
    assert formats["b.md"] == "markdown" and formats["sub/c.html"] == "html"
    assert any("Blåbær" in d["text"] for d in docs if d["meta"]["path"] == "sub/latin.html")
    assert bad == {"binary.txt": "binary", "invalid.txt": "invalid_utf8", "empty.txt": "empty", "big.txt": "too_large",
                   "image.png": "unsupported_type", "cut.txt.gz": "truncated_gzip"}
    assert len({d["id"] for d in docs}) == len(docs)
    with pytest.raises(SourceError):
        list(read_folder(SourceSpec("x", "folder", str(tmp_path / "missing")), 1000))


def test_jsonl_reader_bad_lines_and_a_huge_line(tmp_path):
    path = tmp_path / "data.jsonl"
    lines = [json.dumps({"text": "first good document", "id": "a1", "url": "https://x/1"}),
             "{not json",
             json.dumps({"body": "no text field"}),
             json.dumps({"text": 42}),
             json.dumps({"text": "   "}),
             json.dumps(["a", "list"]),
             "",
             json.dumps({"text": "y" * 50_000}),        # a single line far past the limit
             json.dumps({"text": "last good document"})]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "bad \xff bytes"}\n')
    docs, bad = split(list(read_jsonl(SourceSpec("j", "jsonl", str(path), text_column="text"), max_bytes=4096)))
    assert [d["text"] for d in docs] == ["first good document", "last good document"]
    assert docs[0]["url"] == "https://x/1" and docs[0]["meta"]["source_id"] == "a1"
    assert bad == {"data.jsonl:2": "bad_json", "data.jsonl:3": "missing_column", "data.jsonl:4": "bad_type",
                   "data.jsonl:5": "empty", "data.jsonl:6": "bad_json", "data.jsonl:8": "too_large",
                   "data.jsonl:10": "invalid_utf8"}


def test_jsonl_truncated_gzip_keeps_what_came_before(tmp_path):
    rng = random.Random(0)
    payload = "".join(json.dumps({"text": rng.randbytes(100).hex()}) + "\n" for i in range(200)).encode()
    path = tmp_path / "cut.jsonl.gz"
    compressed = gzip.compress(payload)
    path.write_bytes(compressed[:len(compressed) // 2])
    docs, bad = split(list(read_jsonl(SourceSpec("j", "jsonl", str(path)), 1_000_000)))
    assert docs and list(bad.values()) == ["truncated_gzip"]


def test_parquet_reader(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"content": ["one document", None, "two documents"], "id": ["a", "b", "c"]}), good)
    nocol = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"other": ["x"]}), nocol)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(good.read_bytes()[:40])
    docs, bad = split(list(read_parquet(SourceSpec("p", "parquet", str(tmp_path / "*.parquet"), text_column="content"),
                                        1000)))
    assert [d["text"] for d in docs] == ["one document", "two documents"]
    assert sorted(bad.values()) == ["bad_parquet", "empty", "missing_column"]


def _warc_bytes(records: list[tuple[str, int, str, bytes]], gzip_records: bool = True) -> bytes:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=gzip_records)
    for url, status, content_type, body in records:
        headers = StatusAndHeaders(f"{status} X", [("Content-Type", content_type)], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))
    return out.getvalue()


@pytest.mark.parametrize("gzipped", [True, False])
def test_warc_reader(tmp_path, gzipped):
    records = [("https://a.example/1", 200, "text/html; charset=utf-8", b"<html><p>Hello</p></html>"),
               ("https://a.example/2", 404, "text/html", b"gone"),
               ("https://a.example/3", 200, "image/png", b"\x89PNG\x00\x00"),
               ("https://a.example/4", 200, "text/plain; charset=utf-8", b"plain \xff text"),
               ("https://a.example/5", 200, "text/plain; charset=utf-8", b"z" * 3000),
               ("https://a.example/6", 200, "text/plain", b"fine text")]
    path = tmp_path / ("x.warc.gz" if gzipped else "x.warc")
    path.write_bytes(_warc_bytes(records, gzipped))
    docs, bad = split(list(read_warc(SourceSpec("w", "warc", str(path)), max_bytes=2000)))
    assert [(d["url"], d["meta"]["format"]) for d in docs] == [("https://a.example/1", "html"),
                                                               ("https://a.example/6", "text")]
    assert bad == {"https://a.example/2": "http_404", "https://a.example/3": "content_type",
                   "https://a.example/4": "invalid_utf8", "https://a.example/5": "too_large"}


def test_truncated_warc_is_counted(tmp_path):
    records = [(f"https://a.example/{i}", 200, "text/plain", f"document {i} ".encode() * 100) for i in range(20)]
    for gzipped in (True, False):
        data = _warc_bytes(records, gzipped)
        path = tmp_path / ("cut.warc.gz" if gzipped else "cut.warc")
        path.write_bytes(data[:len(data) // 2 + 37])      # cut inside a record
        docs, bad = split(list(read_warc(SourceSpec("w", "warc", str(path)), 1_000_000)))
        assert 0 < len(docs) < 20
        assert list(bad.values()) == ["truncated_warc"], gzipped
    garbage = tmp_path / "garbage.warc"
    garbage.write_bytes(b"this is not a warc file at all\n" * 10)
    docs, bad = split(list(read_warc(SourceSpec("w", "warc", str(garbage)), 1000)))
    assert not docs and bad          # warcio reads it as a broken ARC record: counted, never a document


def test_hub_offline_is_one_clear_line(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError) as err:
        list(read_hub(SourceSpec("fw", "hub", "HuggingFaceFW/fineweb-edu"), 1000))
    assert "needs the network" in str(err.value) and "\n" not in str(err.value)


def test_hub_reader_streams_local_files(tmp_path):
    pytest.importorskip("datasets")
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"content": f"row {i}"}) for i in range(5)) + "\n")
    spec = SourceSpec("h", "hub", "json", text_column="content", options={"data_files": str(path)})
    docs, bad = split(list(read_hub(spec, 1000)))
    assert [d["text"] for d in docs] == [f"row {i}" for i in range(5)] and not bad
