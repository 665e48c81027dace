"""The report card's "Collect and clean" section, built from the collect and clean manifests.

    from lmforge.data.clean_report import cleaning_section
    print(cleaning_section(RunDir("runs/tiny")))

It shows where the documents came from, the accounting (inputs = kept + removed + unreadable)
with a few examples per reason, what each step cost, and, on the built-in site, recall and
precision against the ground truth.
"""
from __future__ import annotations

from ..evals.report import markdown_table, stage_metrics


def _done(run, stage: str) -> dict | None:
    return stage_metrics(run, stage)


def _pct(x) -> str:
    return "–" if x is None else f"{x:.1%}"


def _snippet(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return (text[:width] + "…") if len(text) > width else text


def cleaning_section(run) -> str | None:
    collect, clean = _done(run, "collect"), _done(run, "clean")
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
        out.append(f"Clean pages wrongly removed: **{cp['wrongly_removed']} of {cp['pages']} "
                   f"({_pct(cp['wrongly_removed_fraction'])})**"
                   + (f", by reason: {', '.join(f'{k} {v}' for k, v in cp['by_reason'].items())}" if cp["by_reason"]
                      else "") + ". "
                   f"Planted personal data left in kept text: **{pii.get('left_in_kept_text', 0)}** of "
                   f"{pii.get('planted_strings_on_kept_pages', 0)}; pattern matches in all kept text: "
                   f"**{sum(pii.get('pattern_hits_in_kept_text', {}).values())}**. "
                   f"Kept pages with boilerplate: {truth['kept_pages_with_boilerplate']}. "
                   f"Trained fact sentences still present: {_pct(truth['trained_fact_sentences_present'])}. "
                   f"Kept pages naming held-out entities: {truth['kept_pages_naming_held_out_entities']}.")
        out.append("")
        dirt_rows = []
        for kind, d in truth["dirt"].items():
            if not d["pages"]:
                continue
            if kind == "pii":
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
