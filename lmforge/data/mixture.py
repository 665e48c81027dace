"""The training mixture: each source's share of the kept text, set by its weight.

GPT-3 trained on 60 % Common Crawl, 22 % WebText2, 8 % + 8 % books and 3 % Wikipedia by
weight, not by size: small, good sources were seen several times, the large web crawl less
than once. We do the same after cleaning, in characters: the kept total stays the same, each
source gets weight / sum(weights) of it, so a source is sampled at rate
target / kept_characters, capped at `max_repeats`. A rate below 1 keeps a deterministic subset
(by a hash of the document id), a rate above 1 writes whole copies plus a subset for the
fraction. One source, or weights that match the sizes, change nothing.

    from lmforge.data.mixture import mixture_rates, copies
    rates = mixture_rates({"web": 9e6, "books": 1e6}, {"web": 0.6, "books": 0.4})   # web 0.67, books 4.0
    copies("books/abc", rates["books"], seed=1)                                       # 4 (or 5)
"""
from __future__ import annotations

import hashlib
import math


def mixture_rates(kept_chars: dict[str, int], weights: dict[str, float], max_repeats: float = 4.0) -> dict[str, float]:
    sources = [s for s in kept_chars if kept_chars[s] > 0]
    if len(sources) <= 1:
        return {s: 1.0 for s in kept_chars}
    total_chars = sum(kept_chars[s] for s in sources)
    total_weight = sum(weights.get(s, 1.0) for s in sources)
    rates = {}
    for source in kept_chars:
        if kept_chars[source] <= 0:
            rates[source] = 1.0
            continue
        target = total_chars * weights.get(source, 1.0) / total_weight
        rates[source] = min(max_repeats, target / kept_chars[source])
    return rates


def unit_hash(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by the text and the seed."""
    digest = hashlib.blake2b(f"{seed}:{text}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2 ** 64


def copies(doc_id: str, rate: float, seed: int = 0) -> int:
    """How many times a document goes into the mixture at this rate (0 = left out)."""
    if abs(rate - 1.0) < 1e-9:
        return 1
    whole = math.floor(rate)
    return whole + (1 if unit_hash(doc_id, seed) < rate - whole else 0)
