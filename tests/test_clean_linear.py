"""The fast versions of the cleaning steps give exactly what the plain versions gave: Gopher's
n-gram statistics against their string-joining definitions, and the vectorised language
identifier against py3langid's own walk, on arbitrary text (timings are in benchmarks/).

    python -m pytest tests/test_clean_linear.py -q
"""
from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.data.language import LanguageFilter, _identifier, sample
from lmforge.data.ngrams import NGrams


def top_chars_by_strings(words: list[str], n: int) -> int:
    """Gopher's definition, as datatrove writes it."""
    if len(words) < n:
        return 0
    counts = Counter(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
    gram, count = counts.most_common(1)[0]
    return len(gram) * count if count > 1 else 0


def repeated_chars_by_strings(words: list[str], n: int) -> int:
    seen, chars, i = set(), 0, 0
    while i + n <= len(words):
        gram = " ".join(words[i:i + n])
        if gram in seen:
            chars += sum(len(w) for w in words[i:i + n])
            i += n
        else:
            seen.add(gram)
            i += 1
    return chars


# Few distinct words, so n-grams repeat, overlap and tie often.
word_lists = st.one_of(st.lists(st.sampled_from(["a", "bb", "the", "cat", "ccc", "Ø", "a b"]), max_size=120),
                       st.lists(st.text(min_size=1, max_size=4), max_size=60))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=word_lists)
def test_ngram_statistics_equal_their_string_definitions(words):
    words = [w for w in " ".join(words).split()]
    grams = NGrams(words)
    for n in (2, 3, 4):
        assert grams.top_chars(n) == top_chars_by_strings(words, n), n
    for n in range(5, 11):
        assert grams.repeated_chars(n) == repeated_chars_by_strings(words, n), n


def test_ngram_statistics_on_a_templated_text():
    words = ("Ada Berg was born in 1843 . Ada Berg came from Torvik . " * 30 + "The end of it all .").split()
    grams = NGrams(words)
    assert grams.top_chars(2) == top_chars_by_strings(words, 2) > 0
    assert all(grams.repeated_chars(n) == repeated_chars_by_strings(words, n) > 0 for n in range(5, 11))


texts = st.one_of(st.text(max_size=300),
                  st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=600),
                  st.lists(st.sampled_from(["Ada Berg ble født i 1843.", "The river runs to the sea.", "ÆØÅ", "\n",
                                            "Der Fluss fließt.", "12 + 5 = 17", "日本語"]), max_size=40).map(" ".join))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_vectorised_language_identifier_equals_py3langid(text):
    from py3langid.langid import MODEL_FILE, LanguageIdentifier
    global _PLAIN
    if "_PLAIN" not in globals():
        _PLAIN = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    fast = _identifier()
    assert fast._np_tables is not None           # the vectorised walk is in use, not the fallback
    assert fast.rank(text) == _PLAIN.rank(text)


def test_long_documents_are_identified_from_a_bounded_sample():
    head = "Der Fluss fließt von den Bergen zum Meer, und die Stadt wurde vor langer Zeit gebaut. " * 40
    body = "The river runs from the hills to the sea, and the town was built on its banks long ago. " * 2000
    text = head + body
    assert len(sample(text, 3000)) <= 3002 and sample("short", 3000) == "short"
    kept = LanguageFilter(["en"], 0.65, max_chars=3000).process({"id": "x", "text": text, "meta": {}})
    assert kept["meta"]["language"] == "en"     # the German front matter alone does not decide
