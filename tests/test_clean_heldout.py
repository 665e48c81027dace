"""Dirt the cleaner never saw: the held-out unwanted generators share nothing with the word
lists or the classifier's training slice (checked structurally), the classifier is scored on
those generators only, and personal data in unseen formats is masked and found again by the
independent detector.

    python -m pytest tests/test_clean_heldout.py -q
"""
from __future__ import annotations

import random
import re

import pytest

from lmforge.config import CleanConfig
from lmforge.world import unwanted_text as ut
from lmforge.data.classifier import UnwantedClassifier, model_for, read_slice, train_model
from lmforge.data.pii import PiiReplacer
from lmforge.data.pii_audit import audit
from lmforge.data.pipeline import unwanted_lists
from lmforge.world.site_pii import UNSEEN_KINDS, seen_pii, unseen_line, unseen_pii
from lmforge.data.steps import Drop

NAMES = ["Ada Berg", "Tor Lund", "Vellag"]


@pytest.fixture(scope="module")
def model():
    return model_for("<site>", 48, 18)


def words_of(texts) -> set[str]:
    return {w for t in texts for w in re.findall(r"\w+", t.lower())}


def test_held_out_generators_share_nothing_with_the_lists_or_the_slice():
    held = {w for words in ut.HELD_OUT_WORDS.values() for w in words}
    _, url_words, listed = unwanted_lists(CleanConfig())
    assert not held & {w for words in listed.values() for w in words} and not held & set(url_words)
    slice_texts = [t for t, _ in ut.training_slice()]
    assert not held & words_of(slice_texts)
    assert not set(ut.HELD_OUT_TAILS) & set(ut.SEEN_TAILS)
    assert not set(ut.BENIGN_SITE) & words_of(slice_texts)        # the site's hard negatives are new too
    # No held-out template (its fixed words) appears in the slice, and no seen one on held-out pages.
    held_templates = ut.HELD_OUT_PARAPHRASE + [t for _, ts in ut.HELD_OUT_PAGES.values() for t in ts] \
        + ut.HELD_OUT_COMMUNITY
    joined = "\n".join(slice_texts)
    for template in held_templates:
        fixed = max(re.split(r"\{\w+\}", template), key=len).strip()
        assert fixed not in joined, template
    rng = random.Random(0)
    for family in ut.FAMILIES:
        _, sentences = ut.held_out_page(family, "adult", "Ada Berg", rng)
        page = " ".join(sentences)
        assert not any(max(re.split(r"\{\w+\}", t), key=len).strip() in page for t in ut.SEEN_FORUM + ut.SEEN_CLUB)


def test_classifier_scored_on_held_out_generators_only(model):
    rng = random.Random(11)
    positives = {family: [" ".join(ut.held_out_page(family, sorted(ut.HELD_OUT_WORDS)[i % 3], rng.choice(NAMES), rng)[1])
                          for i in range(60)] for family in ut.FAMILIES}
    negatives = [" ".join(ut.benign_page(rng.choice(NAMES), rng)[1]) for _ in range(120)]
    caught = {family: sum(model.score(t) >= 0.5 for t in texts) for family, texts in positives.items()}
    false = sum(model.score(t) >= 0.5 for t in negatives)
    recall = sum(caught.values()) / 180
    assert recall >= 0.85, caught
    assert sum(caught.values()) / (sum(caught.values()) + false) >= 0.95, false


def test_classifier_step_keeps_its_score_and_drops_a_page_with_a_passage(model):
    step = UnwantedClassifier(model, 0.5)
    kept = step.process({"id": "a", "text": "The river runs from the hills to the sea. " * 20, "meta": {}})
    assert 0.0 <= kept["meta"]["unwanted_score"] < 0.5
    benign = " ".join(ut.community_sentences(ut.BENIGN_SITE, "Vellag", random.Random(1)))
    passage = " ".join(s.format(a="velvetsin", b="gorehammer", name="Vellag") for s in ut.SEEN_FORUM[:3])
    out = step.process({"id": "b", "text": benign + " " + passage + " " + benign, "meta": {}})
    assert isinstance(out, Drop) and out.reason == "unwanted" and out.detail.startswith("score ")


def test_a_user_slice_trains_the_classifier(tmp_path):
    path = tmp_path / "slice.jsonl"
    rows = [{"text": f"buy cheap glorbix pills now {i}", "label": 1} for i in range(30)] + \
        [{"text": f"the weather in the valley was mild on day {i}", "label": 0} for i in range(30)]
    path.write_text("\n".join(__import__("json").dumps(r) for r in rows) + "\n")
    model = train_model(read_slice(str(path)), window=16, hash_bits=14)
    assert model.score("cheap glorbix pills") > 0.5 > model.score("the weather was mild")
    path.write_text('{"text": "x", "label": 3}\n')
    with pytest.raises(Exception, match="label must be 0 or 1"):
        read_slice(str(path))


def test_unseen_pii_formats_are_masked_and_the_detector_is_independent():
    step = PiiReplacer()
    kinds = set()
    for i in range(400):
        items = unseen_pii("Ada Berg", random.Random(i))
        kinds.update(item["kind"] for item in items)
        line = unseen_line(items, ("en", "nb")[i % 2])
        assert {kind for kind, _ in audit(line)} == {"phone", "ip", "email"}, line   # the detector sees them all
        out = step.process({"id": "p", "text": "Some text. " + line, "meta": {}})["text"]
        assert not any(item["value"] in out for item in items), out
        assert audit(out) == [], out
    assert kinds == set(UNSEEN_KINDS)
    seen = seen_pii("Ada Berg", random.Random(5))
    assert {k for k, _ in audit(f"Write to {seen['email']} or call {seen['phone']} from {seen['ip']}.")} == \
        {"phone", "ip", "email"}
    harmless = ("Ada Berg (1843–1901) lived in Torvik, population 219700, for 58 years. 12 + 5 = 17, 6 × 7 = 42. "
                "The meeting is at 12:30 on 2024-05-01. We arrived at home at night. Version 1.2.3 is out.")
    assert audit(harmless) == [] and step.process({"id": "h", "text": harmless, "meta": {}})["text"] == harmless


def test_test_generators_are_new_to_the_slice_the_lists_and_the_dev_generators():
    """The test generators (written after the classifier was fixed) share no word, tail or
    template with the slice, the word lists or the held-out (dev) generators."""
    test_words = {w for words in ut.TEST_WORDS.values() for w in words}
    dev_words = {w for words in ut.HELD_OUT_WORDS.values() for w in words} | set(ut.BENIGN_SITE)
    _, url_words, listed = unwanted_lists(CleanConfig())
    slice_words = words_of(t for t, _ in ut.training_slice())
    assert not test_words & (slice_words | dev_words | {w for ws in listed.values() for w in ws} | set(url_words))
    assert not set(ut.BENIGN_TEST) & (slice_words | dev_words)
    assert not set(ut.TEST_TAILS) & (set(ut.SEEN_TAILS) | set(ut.HELD_OUT_TAILS))
    joined = "\n".join(t for t, _ in ut.training_slice())
    for template in [t for ts in ut.TEST_PAGES.values() for t in ts]:
        fixed = max(re.split(r"\{\w+\}", template), key=len).strip()
        assert fixed not in joined, template
    page = ut.fresh_page("mixed", ut.TEST_WORDS["adult"], "Vellag", random.Random(0))
    assert any(w in page for w in ut.TEST_WORDS["adult"]) and ut.TEST_HOST[-1] in page
