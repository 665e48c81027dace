"""Step 2 of cleaning: keep documents in the configured languages (py3langid, fully offline).

    from lmforge.data.language import LanguageFilter, identify
    identify("Ada Berg ble født i 1843.")       # [("nb", 0.97), ("da", 0.02), ...]

A document is kept when the identifier's probability for one of `languages` reaches
`threshold` (FineWeb keeps English at 0.65 with fastText; we use the same bar). The model's
labels for Norwegian are "no" and "nn", and on short text it splits its belief between them,
so a configured language counts the probability of all its labels (nb = no + nn + nb).
The kept document's `meta.language` is the configured code, `meta.language_score` its score.
"""
from __future__ import annotations

from .quality import EQUATION
from .steps import Drop, Step

ALIASES = {"nb": ("nb", "no", "nn"), "no": ("no", "nb", "nn"), "nn": ("nn", "no", "nb")}
_IDENTIFIER = None


def _identifier():
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _IDENTIFIER


def identify(text: str, max_chars: int = 10_000) -> list[tuple[str, float]]:
    """Every language the model knows, most likely first, with probabilities that sum to 1."""
    return [(lang, float(p)) for lang, p in _identifier().rank(text[:max_chars])]


class LanguageFilter(Step):
    name = "language"

    def __init__(self, languages=("en", "nb"), threshold: float = 0.65, max_chars: int = 10_000):
        self.languages = list(languages)
        self.threshold, self.max_chars = threshold, max_chars
        self.labels = {lang: ALIASES.get(lang, (lang,)) for lang in self.languages}

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
