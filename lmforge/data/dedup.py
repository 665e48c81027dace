"""Steps 8 and 9 of cleaning: exact and near (MinHash-LSH) deduplication, with bounded memory.

Deduplication is the one part of cleaning that must see the whole corpus, so it runs in
two halves, the way datatrove does it:

  per shard (in parallel)  hash every surviving document: a 64-bit hash of its normalised text,
                           and a MinHash signature of its word 5-grams (datasketch, 14 bands x 8
                           rows = 112 permutations) cut into 14 band hashes; write both, sorted,
                           next to the shard (numpy .npy files)
  once (streaming merge)   merge the sorted files of all shards (heapq.merge over memory-mapped
                           arrays, so memory does not grow with the corpus): equal exact hashes
                           are exact duplicates; equal band hashes in any band link two
                           documents, and linked documents form clusters (union-find)

Of each group the first document in corpus order (shard, then row) is kept, so the result does
not depend on how many workers ran. Only documents that collide are held in memory.

With b = 14 bands of r = 8 rows, two documents of word-5-gram Jaccard similarity s share a band
with probability 1 - (1 - s^8)^14: 0.05 at s = 0.5, 0.5 at s = 0.72, 0.92 at s = 0.8, 0.99 at
s = 0.85 (the FineWeb setting: about 75 % similar or more is a duplicate).

    python -m lmforge.data.dedup a.txt b.txt      # Jaccard and band collisions of two files
"""
from __future__ import annotations

import hashlib
import heapq
import re
import sys
import unicodedata
from pathlib import Path
from typing import Iterator

import numpy as np

from .steps import Step

EXACT_DTYPE = np.dtype([("hash", "<u8"), ("key", "<u8")])
BAND_DTYPE = np.dtype([("band", "<u2"), ("hash", "<u8"), ("key", "<u8")])
WORD = re.compile(r"\w+")


def normalize_words(text: str) -> list[str]:
    """Lower-cased words without punctuation: what 'the same text' means for dedup."""
    return WORD.findall(unicodedata.normalize("NFKC", text).lower())


def hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def exact_hash(words: list[str]) -> int:
    return hash64(" ".join(words).encode("utf-8"))


def doc_key(shard: int, row: int) -> int:
    """A document's place in corpus order, as one integer."""
    return (shard << 32) | row


class MinHasher:
    """Band hashes of a document's word n-gram MinHash signature."""

    def __init__(self, ngram: int = 5, bands: int = 14, rows: int = 8, seed: int = 1):
        from datasketch import MinHash
        self.ngram, self.bands, self.rows = ngram, bands, rows
        template = MinHash(num_perm=bands * rows, seed=seed)
        self._make = lambda: MinHash(num_perm=bands * rows, seed=seed, permutations=template.permutations,
                                     scheme=template.scheme)

    def shingles(self, words: list[str]) -> list[bytes]:
        n = self.ngram
        if len(words) < n:
            return [" ".join(words).encode("utf-8")]
        return list({" ".join(words[i:i + n]).encode("utf-8") for i in range(len(words) - n + 1)})

    def signature(self, words: list[str]) -> np.ndarray:
        minhash = self._make()
        minhash.update_batch(self.shingles(words))
        return minhash.hashvalues

    def band_hashes(self, words: list[str]) -> list[int]:
        values = np.ascontiguousarray(self.signature(words))
        r = self.rows
        return [hash64(values[b * r:(b + 1) * r].tobytes()) for b in range(self.bands)]


class DedupKeys(Step):
    """Per-shard half: remembers each kept document's exact hash and band hashes (changes nothing)."""
    name = "dedup_keys"

    def __init__(self, exact: bool = True, near: bool = True, ngram: int = 5, bands: int = 14, rows: int = 8,
                 seed: int = 1):
        self.exact, self.near = exact, near
        self.hasher = MinHasher(ngram, bands, rows, seed) if near else None
        self.exact_rows: list[tuple[int, int]] = []
        self.band_rows: list[tuple[int, int, int]] = []

    def add(self, doc: dict, key: int) -> None:
        words = normalize_words(doc["text"])
        if self.exact:
            self.exact_rows.append((exact_hash(words), key))
        if self.near:
            for band, value in enumerate(self.hasher.band_hashes(words)):
                self.band_rows.append((band, value, key))

    def process(self, doc: dict) -> dict:
        return doc

    def save(self, exact_path: Path, bands_path: Path) -> None:
        exact = np.array(self.exact_rows, dtype=EXACT_DTYPE)
        exact.sort(order=["hash", "key"])
        bands = np.array(self.band_rows, dtype=BAND_DTYPE)
        bands.sort(order=["band", "hash", "key"])
        np.save(exact_path, exact)
        np.save(bands_path, bands)


def _sorted_pairs(path: Path, band: int | None = None, chunk: int = 65536) -> Iterator[tuple[int, int]]:
    """(hash, key) pairs of one sorted file, read in chunks from a memory map."""
    array = np.load(path, mmap_mode="r")
    lo, hi = 0, len(array)
    if band is not None:
        lo, hi = (int(x) for x in np.searchsorted(array["band"], [band, band + 1]))
    for start in range(lo, hi, chunk):
        part = array[start:min(hi, start + chunk)]
        yield from zip(part["hash"].tolist(), part["key"].tolist())


def find_exact_duplicates(paths: list[Path]) -> dict[int, int]:
    """key -> key of the first document with the same normalised text."""
    duplicate_of: dict[int, int] = {}
    current_hash, first_key = None, None
    for value, key in heapq.merge(*(_sorted_pairs(p) for p in paths)):
        if value == current_hash:
            duplicate_of[key] = first_key
        else:
            current_hash, first_key = value, key
    return duplicate_of


def find_near_duplicates(paths: list[Path], bands: int, skip: set[int] | dict | None = None) -> dict[int, int]:
    """key -> key of the first document of its cluster, for every document that is not first."""
    skip = skip or {}
    parent: dict[int, int] = {}

    def find(key: int) -> int:
        root = key
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(key, key) != root:       # path compression
            parent[key], key = root, parent[key]
        return root

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            low, high = min(ra, rb), max(ra, rb)   # the earliest document becomes the root
            parent[high] = low
            parent.setdefault(low, low)

    for band in range(bands):
        current_hash, first_key = None, None
        for value, key in heapq.merge(*(_sorted_pairs(p, band) for p in paths)):
            if key in skip:
                continue
            if value == current_hash:
                union(first_key, key)
            else:
                current_hash, first_key = value, key
    return {key: root for key in list(parent) if (root := find(key)) != key}


def main() -> None:
    a, b = (Path(p).read_text(encoding="utf-8") for p in sys.argv[1:3])
    hasher = MinHasher()
    wa, wb = normalize_words(a), normalize_words(b)
    sa, sb = set(hasher.shingles(wa)), set(hasher.shingles(wb))
    shared = sum(x == y for x, y in zip(hasher.band_hashes(wa), hasher.band_hashes(wb)))
    print(f"exact duplicate: {exact_hash(wa) == exact_hash(wb)}; word 5-gram Jaccard "
          f"{len(sa & sb) / max(1, len(sa | sb)):.3f}; bands shared {shared}/{hasher.bands}")


if __name__ == "__main__":
    main()
