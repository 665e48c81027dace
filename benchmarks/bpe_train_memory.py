"""The BPE trainer's memory against the number of distinct words it sees. A benchmark, never a test.

    python benchmarks/bpe_train_memory.py                     # 0, 250k, 1M and 2M distinct words
    python benchmarks/bpe_train_memory.py --distinct 500000

The `tokenizers` trainer counts every distinct pre-tokenized word of its input, then keeps
each one as a list of symbols with an index of where every pair occurs, so its memory grows
with the vocabulary of the text, not with the text's length. Real text keeps meeting new
words (Heaps' law: a corpus of n words has about K n^b distinct ones, b near 0.5 to 0.6), so
training on a whole large corpus has no memory bound; `tokenizer.train_chars` is the bound.
Each point trains a 32,768-token BPE in a fresh process on text where every word is a distinct
six-letter string (letters only, so the split regex keeps it whole) and reports that
process's peak resident memory; the slope is the cost of one distinct word.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def word(i: int) -> str:
    """The i-th distinct six-letter word (a bijection scattered over the 26^5 .. 26^6 range)."""
    i = (i * 2654435761) % (26 ** 6 - 26 ** 5) + 26 ** 5
    letters = []
    while i:
        i, r = divmod(i, 26)
        letters.append(chr(97 + r))
    return "".join(letters)


def train(distinct: int, vocab_size: int) -> dict:
    from lmforge.config import TokenizerConfig
    from lmforge.tokenizer import Tokenizer
    texts = (" ".join(word(i) for i in range(start, min(start + 2000, distinct)))
             for start in range(0, max(distinct, 1), 2000))
    Tokenizer.train(texts, TokenizerConfig(vocab_size=vocab_size))
    return {"distinct_words": distinct, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distinct", type=int, nargs="*", default=[0, 250_000, 1_000_000, 2_000_000])
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)      # a single point, in this process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(train(args.one, args.vocab_size)))
        return
    rows = []
    for distinct in args.distinct:     # a fresh process each, so each peak is its own
        out = subprocess.run([sys.executable, __file__, "--one", str(distinct), "--vocab-size", str(args.vocab_size)],
                             check=True, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
        rows.append(json.loads(out))
        print(json.dumps(rows[-1]), flush=True)
    if len(rows) > 1 and rows[-1]["distinct_words"] > rows[0]["distinct_words"]:
        slope = (rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]) / (rows[-1]["distinct_words"] - rows[0]["distinct_words"])
        print(f"about {slope * 1024:.2f} KB per distinct word")


if __name__ == "__main__":
    main()
