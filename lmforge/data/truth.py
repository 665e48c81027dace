"""Score a run's cleaning against the built-in site's ground truth (data/world/site_truth.jsonl).

    from lmforge.data.truth import score_cleaning
    score_cleaning(RunDir("runs/tiny"))      # recall and precision per kind of dirt, and more

    python -m lmforge.data.truth runs/tiny   # the same, printed as JSON

Every page of the built-in site has a truth row: its kind, its dirt and what cleaning should
do with it (keep, remove, unreadable, skip). This module joins those rows with where each URL
ended up (data/clean, data/removed, data/unreadable) and measures:

  - per kind of dirt, recall: the share of such pages that did not reach data/clean (for
    personal data: the share of planted strings that are gone from the kept text), with
    unwanted content split into the seen generators and the held-out ones (by family), and
    personal data into the seen formats and the unseen ones (by format);
  - the classifier alone, on the held-out generators only: recall among held-out pages that
    reached it, and precision of its removals;
  - personal data an independent detector (pii_audit.py, not the replacer's patterns) finds
    in kept text, and how many benign community pages (hard negatives) were removed;
  - per family of removal reasons (duplicates, language, quality, unwanted, ...), precision:
    the share of pages removed for such a reason that had dirt of some kind (an original
    removed as a duplicate counts as right when a copy of it was kept instead);
  - clean pages wrongly removed, near-duplicate recall by Jaccard similarity, boilerplate left
    in kept text, planted and pattern-found personal data left, trained fact sentences still
    present, and held-out entity names (which must never appear).
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from ..files import read_documents, read_jsonl
from ..rundir import RunDir
from ..world.site_dirt import BOILERPLATE_SENTENCES
from .pii_audit import audit

ORIGINAL_KINDS = ("article", "story", "dialogue", "arithmetic")
DIRT_KINDS = ("exact_duplicate", "near_duplicate", "spam", "lorem_ipsum", "unwanted", "unwanted_held_out",
              "foreign_language", "broken_encoding", "navigation", "http_error", "pii")
# reason family -> how to recognise its reasons
FAMILIES = {
    "duplicates": lambda r: r.startswith(("exact_dedup:", "near_dedup:")),
    "language": lambda r: r.startswith("language:"),
    "quality": lambda r: r.startswith(("gopher_", "fineweb:", "c4:")),
    "unwanted": lambda r: r.startswith(("unwanted:", "classifier:")),
    "encoding": lambda r: r in ("extract:replacement_characters", "collect:invalid_utf8", "collect:invalid_encoding"),
    "extraction": lambda r: r.startswith("extract:") and r != "extract:replacement_characters",
    "mixture": lambda r: r.startswith("mixture:"),
}
SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


def _outcomes(run) -> tuple[dict[str, str], dict[str, dict]]:
    """url -> "kept" | "removed:<reason>" | "unreadable:<reason>", and url -> kept document."""
    outcome, kept = {}, {}
    for folder, status in (("unreadable", "unreadable"), ("removed", "removed")):
        path = run.path("data", folder)
        if path.exists():
            for doc in read_documents(path, columns=("url", "meta")):
                reason = doc["meta"].get("reason", "?")
                if status == "unreadable" and doc["meta"].get("stage") == "collect":
                    reason = f"collect:{reason}"
                outcome[doc["url"]] = f"{status}:{reason}"
    clean = run.path("data", "clean")
    if clean.exists():
        for doc in read_documents(clean):
            if "#r" in doc["id"]:
                continue      # a mixture copy, not a page of its own
            outcome[doc["url"]] = "kept"
            kept[doc["url"]] = doc
    return outcome, kept


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score_cleaning(run) -> dict:
    truth = {row["url"]: row for row in read_jsonl(run.world_dir / "site_truth.jsonl")}
    outcome, kept = _outcomes(run)
    seen = {url: row for url, row in truth.items() if url in outcome}
    groups: dict[str, list[str]] = defaultdict(list)
    for url, row in seen.items():
        if row.get("group"):
            groups[row["group"]].append(url)
    group_kept = {g: sum(outcome[u] == "kept" for u in urls) for g, urls in groups.items()}

    # recall per kind of dirt
    dirt = {}
    for kind in DIRT_KINDS:
        rows = [(url, row) for url, row in seen.items() if kind in row["dirt"]]
        if kind == "pii":
            continue
        caught = [url for url, _ in rows if outcome[url] != "kept"]
        how = Counter(outcome[url].split(":", 1)[1] if ":" in outcome[url] else outcome[url] for url in caught)
        dirt[kind] = {"pages": len(rows), "caught": len(caught), "recall": _ratio(len(caught), len(rows)),
                      "caught_by": dict(how.most_common(4))}

    dirt["pii"], dirt["pii_unseen"], detector = _personal_data(seen, truth, outcome, kept)
    held = [url for url, row in seen.items() if "unwanted_held_out" in row["dirt"]]
    by_family = {}
    for family in sorted({seen[u].get("family", "?") for u in held}):
        urls = [u for u in held if seen[u].get("family") == family]
        by_family[family] = {"pages": len(urls), "recall": _ratio(sum(outcome[u] != "kept" for u in urls), len(urls))}
    if "unwanted_held_out" in dirt:
        dirt["unwanted_held_out"]["by_family"] = by_family

    # precision per family of removal reasons: removed pages that deserved it (any dirt; for a
    # duplicate removal, an original whose copy was kept in its place counts as deserved too)
    families = {}
    for family, matches in FAMILIES.items():
        flagged = [url for url in seen if outcome[url] != "kept" and matches(outcome[url].split(":", 1)[1])]
        right, dirt_hit = 0, Counter()
        for url in flagged:
            row = seen[url]
            real = [d for d in row["dirt"] if d != "pii"]
            if real:
                right += 1
                dirt_hit[real[0]] += 1
            elif family == "duplicates" and group_kept.get(row.get("group"), 0) >= 1 and len(groups[row["group"]]) > 1:
                right += 1
                dirt_hit["original_of_kept_copy"] += 1
        if flagged:
            families[family] = {"removed": len(flagged), "deserved": right, "precision": _ratio(right, len(flagged)),
                                "dirt": dict(dirt_hit.most_common())}

    # clean pages
    originals = [(url, row) for url, row in seen.items() if row["kind"] in ORIGINAL_KINDS and row["expect"] == "keep"]
    lost = []
    for url, row in originals:
        if outcome[url] == "kept":
            continue
        if outcome[url].startswith("removed:exact_dedup") or outcome[url].startswith("removed:near_dedup"):
            if group_kept.get(row.get("group"), 0) >= 1 and len(groups[row["group"]]) > 1:
                continue       # its copy was kept: the text is in the training data once
        lost.append(url)
    lost_reasons = Counter(outcome[url].split(":", 1)[1] for url in lost)
    lost_by_kind = Counter(seen[url]["kind"] for url in lost)

    # near duplicates by similarity
    buckets = {"<0.80": [0, 0], "0.80-0.90": [0, 0], ">=0.90": [0, 0]}
    for url, row in seen.items():
        if "near_duplicate" in row["dirt"] and "jaccard" in row:
            j = row["jaccard"]
            name = "<0.80" if j < 0.8 else ("0.80-0.90" if j < 0.9 else ">=0.90")
            buckets[name][0] += 1
            buckets[name][1] += outcome[url] != "kept"
    near_by_jaccard = {k: {"pages": v[0], "recall": _ratio(v[1], v[0])} for k, v in buckets.items() if v[0]}

    # boilerplate, facts, held-out names
    boilerplate_pages = sum(any(s in doc["text"] for s in BOILERPLATE_SENTENCES) for doc in kept.values())
    sentences = set()
    for doc in kept.values():
        sentences.update(s.strip() for s in SENTENCE_SPLIT.split(doc["text"]) if s.strip())
    facts_path, entities_path = run.world_dir / "facts.jsonl", run.world_dir / "entities.jsonl"
    facts = read_jsonl(facts_path) if facts_path.exists() else []
    trained = [f for f in facts if not f["held_out"]]
    present = sum(f["answer"] in sentences for f in trained)
    held_names = [e["name"] for e in read_jsonl(entities_path) if e["held_out"]] if entities_path.exists() else []
    held_hits = 0
    if held_names:
        pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in sorted(held_names, key=len, reverse=True))
                             + r")(?!\w)")
        held_hits = sum(bool(pattern.search(doc["text"])) for doc in kept.values())

    community = [url for url, row in seen.items() if row["kind"] == "community"]
    community_lost = Counter(outcome[u].split(":", 1)[1] for u in community if outcome[u] != "kept")
    return {
        "pages": len(truth), "pages_seen": len(seen),
        "classifier": _classifier_scores(seen, outcome),
        "hard_negatives": {"pages": len(community), "removed": sum(community_lost.values()),
                           "removed_fraction": _ratio(sum(community_lost.values()), len(community)),
                           "by_reason": dict(community_lost.most_common())},
        "pii_detector": detector,
        "not_seen": dict(Counter(row["expect"] for url, row in truth.items() if url not in outcome)),
        "dirt": dirt, "reason_families": families,
        "clean_pages": {"pages": len(originals), "wrongly_removed": len(lost),
                        "wrongly_removed_fraction": _ratio(len(lost), len(originals)),
                        "by_reason": dict(lost_reasons.most_common()), "by_kind": dict(lost_by_kind),
                        "examples": sorted(lost)[:5]},
        "near_duplicate_recall_by_jaccard": near_by_jaccard,
        "kept_pages_with_boilerplate": boilerplate_pages,
        "trained_fact_sentences_present": _ratio(present, len(trained)),
        "kept_pages_naming_held_out_entities": held_hits,
    }


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _left(item: dict, text: str, digit_runs: list[str]) -> bool:
    """Whether a planted item is still in the text: its exact string, or enough of it to matter
    (a phone number's last 7 digits in any run of digits, an e-mail's name part, an IPv6
    address in either its short or its full form)."""
    value, kind = item["value"], item["kind"]
    if value in text:
        return True
    if kind.startswith("phone"):
        tail = _digits(value)[-7:]
        return any(tail in run for run in digit_runs)
    if kind.startswith("email"):
        return value.split()[0].split("(")[0].split("[")[0].lower() in text.lower()
    if kind == "ipv6":
        import ipaddress
        address = ipaddress.IPv6Address(value)
        return str(address) in text or address.exploded in text
    return False


def _personal_data(seen: dict, truth: dict, outcome: dict, kept: dict) -> tuple[dict, dict, dict]:
    """Seen formats (strings planted), unseen formats (by kind), and the independent detector."""
    planted = left = 0
    unseen, unseen_left = Counter(), Counter()
    for url, row in seen.items():
        if "pii" not in row["dirt"] or outcome[url] != "kept":
            continue
        text = kept[url]["text"]
        for value in row.get("pii", []):
            planted += 1
            left += value in text
        runs = [_digits(m) for m in re.findall(r"[\d][\d .()/+-]*\d", text)]
        for item in row.get("pii_unseen", []):
            unseen[item["kind"]] += 1
            unseen_left[item["kind"]] += _left(item, text, runs)
    pii_pages = sum("pii" in row["dirt"] for row in seen.values())
    replaced_without = sum(1 for url, doc in kept.items()
                           if doc["meta"].get("pii_replaced") and "pii" not in truth.get(url, {}).get("dirt", []))
    seen_row = {"pages": pii_pages, "planted_strings_on_kept_pages": planted, "left_in_kept_text": left,
                "recall": _ratio(planted - left, planted), "kept_pages_replaced_without_planted_pii": replaced_without}
    total, total_left = sum(unseen.values()), sum(unseen_left.values())
    unseen_row = {"pages": pii_pages if total else 0, "planted_items_on_kept_pages": total,
                  "left_in_kept_text": total_left, "left_fraction": _ratio(total_left, total),
                  "recall": _ratio(total - total_left, total),
                  "by_format": {k: {"planted": unseen[k], "left": unseen_left[k]} for k in sorted(unseen)}}
    hits, pages_hit, clean_hit = Counter(), 0, 0
    examples = []
    for url, doc in kept.items():
        found = audit(doc["text"])
        if found:
            pages_hit += 1
            clean_hit += "pii" not in truth.get(url, {}).get("dirt", [])
            hits.update(kind for kind, _ in found)
            examples += [f"{url}: {value}" for _, value in found][:max(0, 5 - len(examples))]
    detector = {"hits_in_kept_text": dict(hits), "kept_pages_with_hits": pages_hit,
                "hits_on_pages_without_planted_pii": clean_hit, "examples": examples}
    return seen_row, unseen_row, detector


def _classifier_scores(seen: dict, outcome: dict) -> dict:
    """The classifier on the held-out generators only: of held-out unwanted pages that reached
    it (not removed before), the share it removed; of the pages it removed, the share that were
    unwanted (held-out or seen)."""
    reached = [u for u, row in seen.items() if "unwanted_held_out" in row["dirt"]
               and (outcome[u] == "kept" or outcome[u].startswith(("removed:classifier:", "removed:pii:",
                                                                    "removed:exact_dedup", "removed:near_dedup")))]
    caught = [u for u in reached if outcome[u].startswith("removed:classifier:")]
    removed = [u for u in seen if outcome[u].startswith("removed:classifier:")]
    right = [u for u in removed if {"unwanted", "unwanted_held_out"} & set(seen[u]["dirt"])]
    return {"held_out_reached": len(reached), "held_out_caught": len(caught),
            "recall_held_out": _ratio(len(caught), len(reached)), "removed": len(removed),
            "precision": _ratio(len(right), len(removed)),
            "removed_clean": sorted(set(removed) - set(right))[:5]}


def main() -> None:
    print(json.dumps(score_cleaning(RunDir(Path(sys.argv[1]))), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
