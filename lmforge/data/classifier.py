"""Step 6b of cleaning: a learned unwanted-content classifier, next to the word lists.

    from lmforge.data.classifier import train_model, UnwantedClassifier
    model = train_model([("text of a passage", 1), ("another passage", 0), ...])
    model.score("a whole page")             # the highest passage probability, 0..1
    step = UnwantedClassifier(model, threshold=0.5)

Real pipelines put a model next to their lists (FineWeb-Edu's classifier, NSFW filters),
because a list only knows the words on it. This one is fastText's shape, fitted with
scikit-learn: a passage is the mean of its words' hashed features (their character 4- and
5-grams with word edges marked, `FeatureHasher`, 2^18 buckets), and a logistic regression
(C = 100, balanced classes) scores it. Character n-grams are what let it recognise a word it
was never shown that is built from roots it was (`velvetnook` after `velvetsin`).

A page is scored passage by passage, windows of `window` words every eighth of a window, and
its score is its highest passage's: an unwanted passage of thirty words in a long page is not
diluted by the rest. The page then goes as a whole, not just the passage: a page that hosts
such a passage is one a pipeline should not trust (comment sections, pasted spam), cutting a
passage out leaves a page with a hole in it, and the passage's edges are a guess. The score is
kept in `meta.unwanted_score` of every kept document.

Because the model is linear in the mean of word features, a word's contribution is one number
(its features times the weights), cached per distinct word: scoring a 64 KB document is a
regex, a few thousand dictionary lookups and a cumulative sum.

The training slice is `clean.classifier_train`: `<site>` for the built-in stand-in generators'
slice (lmforge/world/unwanted_text.py; never the held-out ones), or a JSONL file of
`{"text": ..., "label": 0 or 1}` rows for real data.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..files import atomic_path
from ..world.unwanted_text import score_test_generators, training_slice
from .steps import Drop, Step

TOKEN = re.compile(r"\w+")
SITE_SLICE = "<site>"
CACHE_LIMIT = 500_000


def word_features(word: str) -> list[str]:
    """A word's character 4- and 5-grams, with "<" and ">" marking its edges (fastText's
    subwords). Measured on the built-in site: a whole-word feature lowered recall on held-out
    words; 3-grams ("<ve", "<bl") made invented names (Velform, Marsel) look unwanted."""
    marked = f"<{word}>"
    return [marked[i:i + n] for n in (4, 5) for i in range(len(marked) - n + 1)]


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def windows(n: int, size: int, step: int = 0) -> list[tuple[int, int]]:
    """[start, end) windows of `size` tokens every `step` (default an eighth of a window)
    covering n tokens; one window when n <= size."""
    if n <= size:
        return [(0, n)]
    step = step or max(1, size // 8)
    starts = list(range(0, n - size + 1, step))
    if starts[-1] != n - size:
        starts.append(n - size)
    return [(s, s + size) for s in starts]


class UnwantedModel:
    """Weights over hashed features, and the per-word scores they imply."""

    step = 0            # window stride; 0 = an eighth of a window

    def __init__(self, coef: np.ndarray, intercept: float, window: int = 48, hash_bits: int = 18,
                 info: dict | None = None):
        from sklearn.feature_extraction import FeatureHasher
        self.coef, self.intercept = np.asarray(coef, dtype=np.float64), float(intercept)
        self.window, self.hash_bits, self.info = window, hash_bits, info or {}
        self.hasher = FeatureHasher(n_features=2 ** hash_bits, input_type="string", alternate_sign=False)
        self._word_score: dict[str, float] = {}

    def word_scores(self, words: list[str]) -> np.ndarray:
        cache = self._word_score
        missing = [w for w in set(words) if w not in cache]
        if missing:
            if len(cache) + len(missing) > CACHE_LIMIT:
                cache.clear()
            rows = self.hasher.transform(word_features(w) for w in missing)
            for w, value in zip(missing, (rows @ self.coef).tolist()):
                cache[w] = value
        return np.fromiter((cache[w] for w in words), dtype=np.float64, count=len(words))

    def passage_probabilities(self, text: str) -> np.ndarray:
        words = tokens(text)
        if not words:
            return np.array([1.0 / (1.0 + math.exp(-self.intercept))])
        cum = np.concatenate(([0.0], np.cumsum(self.word_scores(words))))
        spans = np.array(windows(len(words), self.window, self.step))
        z = self.intercept + (cum[spans[:, 1]] - cum[spans[:, 0]]) / (spans[:, 1] - spans[:, 0])
        return 1.0 / (1.0 + np.exp(-z))

    def score(self, text: str) -> float:
        return float(self.passage_probabilities(text).max())

    def save(self, path: Path) -> None:
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, coef=self.coef.astype(np.float32), intercept=self.intercept, window=self.window,
                     hash_bits=self.hash_bits, info=json.dumps(self.info))

    @classmethod
    def load(cls, path: Path) -> "UnwantedModel":
        data = np.load(path)
        return cls(data["coef"], float(data["intercept"]), int(data["window"]), int(data["hash_bits"]),
                   json.loads(str(data["info"])))


def _design(passages: list[list[str]], hasher):
    """Rows = mean hashed features of each passage's words (sparse)."""
    from scipy import sparse
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for r, words in enumerate(passages):
        weight = 1.0 / max(1, len(words))
        for w in words:
            rows.append(r)
            cols.append(vocab.setdefault(w, len(vocab)))
            vals.append(weight)
    incidence = sparse.csr_matrix((vals, (rows, cols)), shape=(len(passages), max(1, len(vocab))))
    features = hasher.transform(word_features(w) for w in sorted(vocab, key=vocab.get)) if vocab else None
    if features is None:
        return sparse.csr_matrix((len(passages), hasher.n_features))
    return (incidence @ features).tocsr()


def train_model(examples: list[tuple[str, int]], window: int = 48, hash_bits: int = 18, c: float = 100.0,
                seed: int = 0) -> UnwantedModel:
    """Fit on labelled texts; each text is cut into the same windows the model scores."""
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.linear_model import LogisticRegression
    passages, labels = [], []
    for text, label in examples:
        words = tokens(text)
        for start, end in windows(len(words), window, window):
            passages.append(words[start:end])
            labels.append(int(label))
    if len(set(labels)) < 2:
        raise ValueError("the classifier's training slice needs both labels (0 and 1)")
    hasher = FeatureHasher(n_features=2 ** hash_bits, input_type="string", alternate_sign=False)
    x = _design(passages, hasher)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(x, np.array(labels))
    info = {"passages": len(labels), "positive": int(sum(labels)), "c": c,
            "train_accuracy": round(float(model.score(x, np.array(labels))), 4)}
    return UnwantedModel(model.coef_[0], model.intercept_[0], window, hash_bits, info)


def read_slice(path: str) -> list[tuple[str, int]]:
    """A JSONL file of {"text", "label"} rows; a bad row stops with one line naming it."""
    out = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text, label = row["text"], int(row["label"])
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"clean.classifier_train: {path}:{number} is not a {{text, label}} row") from None
            if label not in (0, 1) or not isinstance(text, str):
                raise ConfigError(f"clean.classifier_train: {path}:{number}: label must be 0 or 1 and text a string")
            out.append((text, label))
    return out


_TRAINED: dict[tuple, UnwantedModel] = {}


def model_for(train: str, window: int, hash_bits: int) -> UnwantedModel:
    """The model for `clean.classifier_train`, trained once per process."""
    key = (train, window, hash_bits)
    if key not in _TRAINED:
        if train == SITE_SLICE:
            examples = training_slice()
        else:
            examples = read_slice(train)
        model = train_model(examples, window, hash_bits)
        model.info["slice"] = train
        _TRAINED[key] = model
    return _TRAINED[key]


class UnwantedClassifier(Step):
    name = "classifier"

    def __init__(self, model: UnwantedModel, threshold: float = 0.5):
        self.model, self.threshold = model, threshold

    def process(self, doc: dict) -> dict | Drop:
        score = self.model.score(doc["text"])
        if score >= self.threshold:
            return Drop("unwanted", f"score {score:.3f}")
        return {**doc, "meta": {**(doc.get("meta") or {}), "unwanted_score": round(score, 4)}}


if __name__ == "__main__":    # the <site> classifier on the test generators of lmforge/world/unwanted_text.py
    print(json.dumps(score_test_generators(model_for("<site>", 48, 18)), indent=2))
