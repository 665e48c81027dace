"""The report card's "Collect and clean" section, built from the collect and clean manifests.

    from lmforge.evals.cleaning import cleaning_section
    print(cleaning_section(RunDir("runs/tiny")))

It shows where the documents came from and how each source was cleaned (its profile, kept
share, mixture rate and removals), the accounting (inputs = kept + removed + unreadable) with a
few examples per reason, what each step cost, and, on the built-in site, recall and precision
against the ground truth, with the dirt the cleaner has seen and the dirt it never saw apart.
"""
from __future__ import annotations

from .card import markdown_table, stage_metrics


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1%}"


def _snippet(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return (text[:width] + "…") if len(text) > width else text


def cleaning_section(run) -> str | None:
    collect, clean = stage_metrics(run, "collect"), stage_metrics(run, "clean")
    if clean is None:
        return None
    out = ["## Collect and clean", ""]
    rates = clean.get("mixture_rates", {})
    sources = (collect or {}).get("sources", [])
    if sources:
        out.append(markdown_table(["source", "kind", "weight", "documents", "unreadable", "mixture rate"],
                          [[s["name"], s["kind"], s["weight"], f"{s['documents']:,}", f"{s['unreadable']:,}",
                            rates.get(s["name"], "–")] for s in sources]))
        out.append("")
    per_source = clean.get("sources") or {}
    if per_source:
        out.append(markdown_table(["source", "profile", "inputs", "kept", "kept share", "mixture rate",
                                   "removed (top reasons)"],
                                  [[name, r["profile"], f"{r['inputs']:,}", f"{r['kept']:,}", _pct(r.get("kept_share")),
                                    r.get("mixture_rate", "–"),
                                    ", ".join(f"{k} {v:,}" for k, v in list(r["removed"].items())[:4]) or "–"]
                                   for name, r in per_source.items()]))
        out.append("")
    acc = clean["accounting"]
    out.append(f"**Every input accounted for:** {acc['inputs']:,} inputs = {acc['kept']:,} kept + "
               f"{acc['removed']:,} removed + {acc['unreadable']:,} unreadable"
               f" ({clean.get('kept_characters', 0):,} characters kept, {clean.get('documents', 0):,} documents "
               f"written with mixture repeats).")
    out.append("")
    examples = clean.get("examples", {})
    rows = []
    total = acc["inputs"] or 1
    for reason, count in sorted(clean.get("removed", {}).items(), key=lambda kv: -kv[1]):
        shown = "; ".join(f"{e.get('url') or e['id']}: “{_snippet(e['text'])}”" for e in examples.get(reason, [])[:2])
        rows.append([f"removed: {reason}", f"{count:,}", _pct(count / total), shown])
    for reason, count in sorted(clean.get("unreadable", {}).items(), key=lambda kv: -kv[1]):
        where = "collect" if reason in clean.get("unreadable_at_collect", {}) else "clean"
        rows.append([f"unreadable ({where}): {reason}", f"{count:,}", _pct(count / total), ""])
    out.append(markdown_table(["outcome", "documents", "share", "examples"], rows))
    out.append("")
    step_rows = []
    for name, st in clean.get("steps", {}).items():
        removed = sum((st.get("dropped") or {}).values())
        rate = st.get("docs_per_second")
        step_rows.append([name, f"{st['docs_in']:,}", f"{removed:,}", f"{st.get('modified', 0):,}",
                          f"{st['seconds']:.2f}", f"{rate:,.0f}" if rate else "–"])
    out.append(markdown_table(["step", "in", "removed", "changed", "CPU s", "docs / CPU s"], step_rows))
    truth = clean.get("truth")
    if truth:
        out += ["", "### Against the built-in site's ground truth", ""]
        cp = truth["clean_pages"]
        pii = truth["dirt"].get("pii", {})
        unseen = truth["dirt"].get("pii_unseen") or {}
        held = truth["dirt"].get("unwanted_held_out") or {}
        seen_unwanted = truth["dirt"].get("unwanted") or {}
        clf = truth.get("classifier") or {}
        hard = truth.get("hard_negatives") or {}
        detector = truth.get("pii_detector") or {}
        out.append("| dirt | seen by the cleaner | never seen (held out) |\n|---|---|---|")
        out.append(f"| unwanted content: recall | {_pct(seen_unwanted.get('recall'))} of {seen_unwanted.get('pages', 0)} "
                   f"pages | {_pct(held.get('recall'))} of {held.get('pages', 0)} pages ("
                   + ", ".join(f"{k} {_pct(v['recall'])}" for k, v in (held.get("by_family") or {}).items()) + ") |")
        out.append(f"| personal data: left in kept text | {pii.get('left_in_kept_text', 0)} of "
                   f"{pii.get('planted_strings_on_kept_pages', 0)} | {unseen.get('left_in_kept_text', 0)} of "
                   f"{unseen.get('planted_items_on_kept_pages', 0)} |")
        out.append("")
        out.append(f"The classifier on the held-out generators: recall **{_pct(clf.get('recall_held_out'))}** of the "
                   f"{clf.get('held_out_reached', 0)} pages that reached it, precision **{_pct(clf.get('precision'))}** "
                   f"of its {clf.get('removed', 0)} removals. Benign community pages (hard negatives) removed: "
                   f"{hard.get('removed', 0)} of {hard.get('pages', 0)}. Personal data the independent detector finds "
                   f"in kept text: **{sum((detector.get('hits_in_kept_text') or {}).values())}**.")
        out.append("")
        out.append(f"Clean pages wrongly removed: **{cp['wrongly_removed']} of {cp['pages']} "
                   f"({_pct(cp['wrongly_removed_fraction'])})**"
                   + (f", by reason: {', '.join(f'{k} {v}' for k, v in cp['by_reason'].items())}" if cp["by_reason"]
                      else "") + ". "
                   f"Planted personal data left in kept text: **{pii.get('left_in_kept_text', 0)}** of "
                   f"{pii.get('planted_strings_on_kept_pages', 0)}. "
                   f"Kept pages with boilerplate: {truth['kept_pages_with_boilerplate']}. "
                   f"Trained fact sentences still present: {_pct(truth['trained_fact_sentences_present'])}. "
                   f"Kept pages naming held-out entities: {truth['kept_pages_naming_held_out_entities']}.")
        out.append("")
        dirt_rows = []
        for kind, d in truth["dirt"].items():
            if not d["pages"]:
                continue
            if kind == "pii_unseen":
                planted, left = d.get("planted_items_on_kept_pages", 0), d.get("left_in_kept_text", 0)
                dirt_rows.append([kind, d["pages"], f"{planted - left} of {planted} items", _pct(d.get("recall")),
                                  ", ".join(f"{k} {v['planted'] - v['left']}/{v['planted']}"
                                            for k, v in d.get("by_format", {}).items())])
            elif kind == "pii":
                planted, left = d.get("planted_strings_on_kept_pages", 0), d.get("left_in_kept_text", 0)
                dirt_rows.append([kind, d["pages"], f"{planted - left} of {planted} strings", _pct(d.get("recall")),
                                  "pii (replaced in kept pages)"])
            else:
                dirt_rows.append([kind, d["pages"], d["caught"], _pct(d["recall"]),
                                  ", ".join(f"{k} {v}" for k, v in d["caught_by"].items())])
        out.append(markdown_table(["dirt", "pages", "caught", "recall", "caught by"], dirt_rows))
        out.append("")
        out.append(markdown_table(["removal reasons", "removed", "deserved", "precision", "what they were"],
                          [[family, f["removed"], f["deserved"], _pct(f["precision"]),
                            ", ".join(f"{k} {v}" for k, v in f["dirt"].items())]
                           for family, f in truth["reason_families"].items()]))
        near = truth.get("near_duplicate_recall_by_jaccard") or {}
        if near:
            out.append("")
            out.append("Near-duplicate recall by word 5-gram Jaccard similarity to the original: "
                       + ", ".join(f"{k}: {_pct(v['recall'])} of {v['pages']}" for k, v in near.items()) + ".")
    return "\n".join(out)
