"""Step 2 of cleaning: keep documents in the configured languages (py3langid, fully offline).

    from lmforge.data.language import LanguageFilter, identify
    identify("Ada Berg ble født i 1843.")       # [("nb", 0.97), ("da", 0.02), ...]

A document is kept when the identifier's probability for one of `languages` reaches
`threshold` (FineWeb keeps English at 0.65 with fastText; we use the same bar). The model's
labels for Norwegian are "no" and "nn", and on short text it splits its belief between them,
so a configured language counts the probability of all its labels (nb = no + nn + nb).
The kept document's `meta.language` is the configured code, `meta.language_score` its score.

Long documents are identified from a bounded sample (`sample_chars`, spread over the start,
middle and end, so a book's front matter alone does not decide), so the cost per document is
bounded. py3langid walks a byte automaton in a Python loop, slow on long text; the walk
here is the same automaton run on every byte position at once with numpy, which gives the
same feature counts in the same order, hence the same probabilities (tests compare them).
"""
from __future__ import annotations

import numpy as np

from .quality import EQUATION
from .steps import Drop, Step

ALIASES = {"nb": ("nb", "no", "nn"), "no": ("no", "nb", "nn"), "nn": ("nn", "no", "nb")}
_IDENTIFIER = None


def _identifier():
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        class VectorIdentifier(LanguageIdentifier):
            """py3langid's identifier with its byte-automaton walk vectorised (same counts)."""

            def _raw_score(self, text: bytes):
                found = feature_counts(self, text)
                if found is None:
                    return super()._raw_score(text)
                features, counts = found
                # py3langid's own scoring formula, on the same features in the same order
                return np.log1p(counts) @ self.nb_ptc[features] + self.nb_pc

        ident = VectorIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        ident._np_tables = _tables(ident)
        _IDENTIFIER = ident
    return _IDENTIFIER


def _tables(ident):
    """numpy forms of the automaton, or None when this py3langid keeps it in another shape."""
    try:
        nextmove = np.frombuffer(ident.tk_nextmove, dtype=np.uint32)
        rowbase = np.asarray(ident._rowbase, dtype=np.uint32)
        output = np.asarray(ident.tk_output, dtype=np.int64)
        if nextmove[rowbase[0]] != 0:
            return None         # byte 0 must keep the start state (it pads the first windows)
        depth = _depth(nextmove, rowbase)
    except (AttributeError, TypeError, ValueError, IndexError):
        return None
    # next_row[i] = the row offset of the state nextmove[i] leads to: the walk needs only row
    # offsets until its last step, so each step is one gather instead of two.
    return nextmove, rowbase[nextmove], int(rowbase[0]), output, depth


def _depth(nextmove: np.ndarray, rowbase: np.ndarray) -> int:
    """Deepest state of the automaton (breadth-first from the start state)."""
    depth = {0: 0}
    frontier = [0]
    level = 0
    while frontier:
        level += 1
        reached = [np.unique(nextmove[(rowbase[frontier[i:i + 4096]].astype(np.int64)[:, None]
                                       + np.arange(256)).ravel()])
                   for i in range(0, len(frontier), 4096)]
        frontier = [s for s in np.unique(np.concatenate(reached)).tolist() if s not in depth]
        for s in frontier:
            depth[s] = level
    return max(depth.values())


def feature_counts(ident, data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, counts) in first-seen order, as py3langid's `visit_counts` finds them; None to fall back."""
    tables = getattr(ident, "_np_tables", None)
    if tables is None or not data:
        return None
    nextmove, next_row, start_row, output, depth = tables
    n = len(data)
    # The state after byte i depends only on the last `depth` bytes (no state is deeper), so
    # walk every window from the start state at once: `depth` vectorised steps, not n Python
    # ones. Windows before the first byte read padding zeros, which keep the start state.
    padded = np.frombuffer(bytes(depth - 1) + data, dtype=np.uint8)
    row = np.full(n, start_row, dtype=np.uint32)
    for k in range(depth - 1):
        row = next_row[row + padded[k:k + n]]
    features = output[nextmove[row + padded[depth - 1:]]]
    features = features[features >= 0]
    if not len(features):
        return None
    values, first, counts = np.unique(features, return_index=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    return values[order], counts[order].astype(np.float32)


def sample(text: str, max_chars: int) -> str:
    """The whole text when short; otherwise three spans from its start, middle and end."""
    if len(text) <= max_chars:
        return text
    part = max_chars // 3
    middle = (len(text) - part) // 2
    return "\n".join((text[:part], text[middle:middle + part], text[len(text) - part:]))


def identify(text: str, max_chars: int = 10_000) -> list[tuple[str, float]]:
    """Every language the model knows, most likely first, with probabilities that sum to 1."""
    return [(lang, float(p)) for lang, p in _identifier().rank(sample(text, max_chars))]


class LanguageFilter(Step):
    name = "language"

    def __init__(self, languages=("en", "nb"), threshold: float = 0.65, max_chars: int = 10_000):
        self.languages = list(languages)
        self.threshold, self.max_chars = threshold, max_chars
        self.labels = {lang: ALIASES.get(lang, (lang,)) for lang in self.languages}
        # Load the model now, not in the first document's step time: the stage builds its steps
        # before forking workers, which then share the loaded model.
        _identifier()

    def process(self, doc: dict) -> dict | Drop:
        text = doc["text"]
        if (doc.get("meta") or {}).get("domain") == "math":
            # Digits and symbols say nothing about the language and drown the few words of a
            # worksheet: identify the language of its prose lines only.
            prose = "\n".join(line for line in text.split("\n") if not EQUATION.match(line.strip()))
            text = prose if prose.strip() else text
        ranked = identify(text, self.max_chars)
        probs = dict(ranked)
        scores = {lang: sum(probs.get(label, 0.0) for label in labels) for lang, labels in self.labels.items()}
        best = max(scores, key=scores.get) if scores else None
        if best is not None and scores[best] >= self.threshold:
            return {**doc, "meta": {**doc.get("meta", {}), "language": best, "language_score": round(scores[best], 4)}}
        top, top_p = ranked[0]
        if best is not None and any(top in labels for labels in self.labels.values()):
            return Drop("low_confidence", f"{top} {top_p:.2f}")
        return Drop("other_language", f"{top} {top_p:.2f}")
