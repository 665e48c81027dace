"""The `lookup` tool: BM25 search (bm25s) over the run's cleaned corpus, the world's reference shelf
and documents of your own; and the `index` stage that builds it.

    lmforge index --run-dir runs/tiny        # data/index/{shelf.jsonl, practice.jsonl, passages.jsonl, bm25/}
    lmforge index --run-dir runs/tiny "tools.lookup_sources=[folder:/data/notes, jsonl:/data/faq.jsonl#answer]"

    from lmforge.tools.lookup import LookupIndex
    index = LookupIndex.load(run)
    index("When was Ada Berg born?")
    # [1] score 14.2: Ada Berg: was born in 1820; came from Torvik; worked as a baker; ...
    # [2] score 9.8: Ada Berg was born in 1820.

Passages are the lines of every document (a longer line is cut at sentence ends into
pieces of at most PASSAGE_CHARS), exact repeats once, plus one passage per shelf card
(lmforge/world/shelf.py: every entity in every language, unseen ones included, and the
`tools.lookup_practice` practice entities that exist only there, whose fact rows go to
data/index/practice.jsonl for the lookup training conversations) and per
line of your own documents (`tools.lookup_sources`, the collect source specs `folder:`,
`jsonl:` and `parquet:`). Words are lower-cased, English and Norwegian stop words dropped,
and scored with BM25 (Lucene's variant, k1 1.5, b 0.75). A search returns the top
`tools.lookup_k` passages with a score above 0, each cut to `tools.lookup_chars`
characters and shown with its BM25 score, so the model and the report card can tell a
strong match from a passage that only shares a first name; no passage scoring above 0 is
"no results". The index is saved with bm25s's own format (numpy arrays and JSON, no
pickles) and memory-mapped when loaded.
"""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

PASSAGE_CHARS = 300
INDEX_DIR = ("data", "index")
PRACTICE_FILE = "practice.jsonl"      # the practice entities' fact rows (lmforge/world/shelf.py)


def _stopwords() -> list[str]:
    # bm25s's longer English list: its short one keeps "where", "does", ..., and three such
    # words of a question outscored the one rare name that matters ("Where does the zebracorn
    # live?" found "Ben: Where does Hulbjørn live?" first)
    import bm25s.stopwords as sw
    return sorted(set(sw.STOPWORDS_EN_PLUS) | set(sw.STOPWORDS_NORWEGIAN))


def passages_of(text: str, max_chars: int = PASSAGE_CHARS) -> list[str]:
    """A document's lines, a long one cut at sentence ends into pieces of at most max_chars."""
    out = []
    for line in text.split("\n"):
        line = " ".join(line.split())
        if not line:
            continue
        if len(line) <= max_chars:
            out.append(line)
            continue
        piece = ""
        for sentence in re.split(r"(?<=[.!?])\s+", line):
            if piece and len(piece) + 1 + len(sentence) > max_chars:
                out.append(piece)
                piece = ""
            piece = f"{piece} {sentence}".strip()
            while len(piece) > max_chars:          # one sentence longer than a passage
                out.append(piece[:max_chars])
                piece = piece[max_chars:]
        if piece:
            out.append(piece)
    return out


def truncate(text: str, chars: int) -> str:
    if len(text) <= chars:
        return text
    cut = text[:chars].rsplit(" ", 1)[0] if " " in text[:chars] else text[:chars]
    return cut + " …"


class LookupIndex:
    """A loaded BM25 index and its passages; calling it with a query gives the tool's text."""

    def __init__(self, retriever, passages: list[str], k: int = 2, chars: int = 160):
        self.retriever, self.passages, self.k, self.chars = retriever, passages, k, chars
        self.stopwords = _stopwords()
        self.lock = threading.Lock()     # bm25s keeps per-call state; one search at a time (each takes ~ms)
        self.parameters = {"type": "object", "properties": {
            "query": {"type": "string", "description": "what to look for, e.g. the question or a name"}},
            "required": ["query"]}

    @classmethod
    def build(cls, passages: list[str], k: int = 2, chars: int = 160) -> "LookupIndex":
        import bm25s
        retriever = bm25s.BM25()
        tokens = bm25s.tokenize(passages, stopwords=_stopwords(), show_progress=False)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, passages, k, chars)

    def save(self, folder: Path) -> None:
        from ..files import atomic_write_jsonl
        folder = Path(folder)
        (folder / "bm25").mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(folder / "bm25"), show_progress=False)
        atomic_write_jsonl(folder / "passages.jsonl", ({"text": text} for text in self.passages))

    @classmethod
    def load(cls, where, k: int = 2, chars: int = 160) -> "LookupIndex":
        """From a run (RunDir) or a folder written by save(); a missing index is a one-line error."""
        import bm25s
        folder = where.path(*INDEX_DIR) if hasattr(where, "path") else Path(where)
        if not (folder / "bm25" / "params.index.json").exists():
            raise FileNotFoundError(f"no lookup index in {folder}; run `lmforge index` (the index stage) first")
        retriever = bm25s.BM25.load(str(folder / "bm25"), mmap=True, show_progress=False)
        with open(folder / "passages.jsonl", encoding="utf-8") as handle:
            passages = [json.loads(line)["text"] for line in handle if line.strip()]
        return cls(retriever, passages, k, chars)

    def search(self, query: str, k: int | None = None) -> list[tuple[float, str]]:
        """[(BM25 score, passage)] of the best k passages that score above 0."""
        import bm25s
        from bm25s.selection import topk
        if not isinstance(query, str) or not query.strip():
            return []
        tokens = bm25s.tokenize([query[:1000]], stopwords=self.stopwords, show_progress=False, return_ids=False)
        if not tokens or not tokens[0]:
            return []
        k = min(k or self.k, len(self.passages))
        # Scores and bm25s's own top-k, not retrieve(): that starts and joins a thread pool on
        # every call, which cost more than the search itself (3x on an idle machine, and far
        # more while a rollout keeps both cores busy); the results are the same, ties included.
        with self.lock:
            scores = self.retriever.get_scores(tokens[0])
        top, docs = topk(scores, k, backend="auto", sorted=True)
        return [(float(score), self.passages[int(doc)]) for doc, score in zip(docs, top) if score > 0]

    def __call__(self, query: str = "") -> str:
        """Search the run's documents and the reference shelf; the best passages with their BM25 scores."""
        hits = self.search(query)
        if not hits:
            return f"no results for {query!r}"
        return "\n".join(f"[{i}] score {score:.1f}: {truncate(text, self.chars)}"
                         for i, (score, text) in enumerate(hits, 1))


# ---------------------------------------------------------------- the index stage

def practice_facts(run) -> list[dict]:
    """The fact rows of the shelf's practice entities (written by the index stage); [] before it ran."""
    from ..files import read_jsonl
    path = run.path(*INDEX_DIR, PRACTICE_FILE)
    return read_jsonl(path) if path.exists() else []


def source_passages(specs, max_bytes: int, counts: dict) -> list[str]:
    """Passages of your own documents (tools.lookup_sources); unreadable inputs are counted."""
    from ..data.sources import UnreadableInput, read_folder, read_jsonl, read_parquet
    readers = {"folder": read_folder, "jsonl": read_jsonl, "parquet": read_parquet}
    out = []
    for spec in specs:
        for doc in readers[spec.kind](spec, max_bytes):
            if isinstance(doc, UnreadableInput):
                counts[f"unreadable:{doc.reason}"] = counts.get(f"unreadable:{doc.reason}", 0) + 1
                continue
            out += passages_of(doc["text"])
    return out


def run_stage(ctx) -> dict:
    from ..world.shelf import PRACTICE_SPLIT, practice_entities, shelf_cards
    from ..config.sources import parse_sources
    from ..data.sources import SourceError
    from ..world import read_facts
    from ..files import atomic_write_jsonl, read_documents
    from ..errors import StageError
    cfg, run = ctx.cfg, ctx.run
    started = time.perf_counter()
    facts = [f for f in read_facts(run.world_dir / "facts.jsonl") if f["language"] in cfg.world.languages]
    practice = practice_entities(facts, cfg.tools.lookup_practice, mix=cfg.tools.lookup_practice_mix)
    cards = shelf_cards(facts) + shelf_cards(practice)
    folder = run.path(*INDEX_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(folder / PRACTICE_FILE, practice)
    atomic_write_jsonl(folder / "shelf.jsonl", cards)
    passages, seen = [], set()
    counts: dict = {}

    def add(texts, source):
        for text in texts:
            if text not in seen:
                seen.add(text)
                passages.append(text)
                counts[source] = counts.get(source, 0) + 1
    add((card["text"] for card in cards), "shelf")
    corpus_lines = set()
    if cfg.tools.lookup_corpus:
        for doc in read_documents(run.documents_dir(), columns=("text",)):
            pieces = passages_of(doc["text"])
            corpus_lines.update(pieces)
            add(pieces, "corpus")
    if cfg.tools.lookup_sources:
        try:
            specs = parse_sources(cfg.tools.lookup_sources, field="tools.lookup_sources")
        except ValueError as err:
            raise StageError(str(err)) from None
        bad = [s.kind for s in specs if s.kind not in ("folder", "jsonl", "parquet")]
        if bad:
            raise StageError(f"tools.lookup_sources: kinds folder, jsonl and parquet only, got {bad[0]!r}")
        try:
            add(source_passages(specs, cfg.collect.max_doc_bytes, counts), "yours")
        except SourceError as err:
            raise StageError(str(err)) from None
    ctx.progress(f"indexing {len(passages):,} passages ({counts})")
    index = LookupIndex.build(passages)
    index.save(folder)
    # the shelf must never be in the training text: count cards that are lines of a document
    shelf_in_corpus = sum(card["text"] in corpus_lines for card in cards)
    return {"passages": len(passages), "by_source": counts, "shelf_cards": len(cards),
            "unseen_cards": sum(card["held_out"] and card["unseen_split"] != PRACTICE_SPLIT for card in cards),
            "practice_cards": sum(card["unseen_split"] == PRACTICE_SPLIT for card in cards),
            "shelf_cards_in_corpus": shelf_in_corpus, "practice_entities": len({row["entity_id"] for row in practice}),
            "build_seconds": round(time.perf_counter() - started, 2)}
