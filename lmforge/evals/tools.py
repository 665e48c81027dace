"""The report card's tool-use section: what the calculator and lookup change, measured by the stages.

    from lmforge.evals.tools import report_section
    print(report_section(run, cfg))        # markdown, or None before any tool figure exists

It reads what the stages stored and runs nothing: the grpo manifest's pass@1 with the tools
and without them, before (the SFT model) and after GRPO, per difficulty, with where the wrong
answers went wrong (an operand misread from the question, a wrong result, other) and how
many worked steps had a wrong result; and the sft manifest's lookup figures (unseen test
entities with lookup and without tools, "I don't know" when lookup finds nothing, malformed
calls). Each figure has its split and size; the interval is on the headline table.
"""
from __future__ import annotations

from .card import markdown_table, pct, stage_metrics
from .reasoning import level_label


def share(figure: dict | None) -> str:
    if not figure or not figure.get("n"):
        return "-"
    return f"{figure['rate']:.1%} ({figure['k']:g} of {figure['n']}, {100 * figure['low']:.1f}–" \
           f"{100 * figure['high']:.1f} %)"


def _errors(result: dict) -> str:
    errors = result.get("errors") or {}
    wrong = result.get("wrong_results")
    steps = result.get("equations")
    rate = f"; wrong results in {wrong} of {steps} worked steps ({wrong / steps:.2%})" if steps else ""
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in errors.items()) + rate


def reasoning_part(m: dict) -> list[str]:
    arms = [("with tools", m.get("before") or {}, m.get("after") or {}),
            ("without tools", m.get("before_no_tools") or {}, m.get("after_no_tools") or {})]
    levels = sorted({level for _, b, a in arms for level in (b.get("by_difficulty") or {})}, key=str)
    rows = []
    for level in levels + ["all"]:
        def at(result: dict) -> dict:
            return result if level == "all" else (result.get("by_difficulty") or {}).get(level, {})
        label = "**all**" if level == "all" else level_label(level)
        rows.append([label, at(arms[0][1]).get("n", "-")] +
                    [pct(at(result).get("pass@1")) for _, before, after in arms for result in (before, after)])
    if m.get("task_kind") == "lookup":
        text = [f"### Lookup questions with and without tools ({', '.join(m.get('tools') or [])})", "",
                "Greedy answers judged right (the fact stated; for names nobody knows, \"I don't know\") on the "
                "unseen test entities and half the unanswerable names, the SFT model before GRPO and the GRPO "
                "model after, each with the tools declared and without them.", "",
                markdown_table(["questions about", "questions", "SFT, tools", "GRPO, tools", "SFT, no tools",
                                "GRPO, no tools"], rows)]
    else:
        text = [f"### Word problems with and without tools ({', '.join(m.get('tools') or [])})", "",
                "Greedy pass@1 on the test problems (their solution chains never occur in training), the SFT model "
                "before GRPO and the GRPO model after, each with the tools declared and without them.", "",
                markdown_table(["difficulty", "problems", "SFT, tools", "GRPO, tools", "SFT, no tools",
                                "GRPO, no tools"], rows), "",
                "Where the wrong greedy answers first leave the worked solution:", ""]
        text += [f"- {name}, {when}: {_errors(result)}" for name, before, after in arms
                 for when, result in (("SFT", before), ("GRPO", after)) if result]
    text += ["", f"Tool calls in the rollouts: {m.get('rollout_tool_calls', 0):,}, malformed "
                 f"{m.get('rollout_malformed_calls', 0):,}; time in tools and waiting for them "
                 f"{pct(m.get('tool_share_of_rollout'))} of rollout time ({m.get('tool_seconds')} s running, "
                 f"{m.get('tool_wait_seconds')} s waiting)."]
    return text


def lookup_part(t: dict, figures: dict) -> list[str]:
    rows = [["unseen test entities: answered right, with lookup", share(figures.get("unseen_test_correct_with_lookup"))],
            ["... of them, a number for answer (years, lengths, populations)",
             share(figures.get("unseen_test_number_correct_with_lookup"))],
            ["... of them, a word for answer (towns, trades, foods)",
             share(figures.get("unseen_test_word_correct_with_lookup"))],
            ["unseen test entities: answered right, without tools",
             share(figures.get("unseen_test_correct_without_tools"))],
            ["unseen test entities: \"I don't know\", without tools",
             share(figures.get("unseen_test_idk_without_tools"))],
            ["unseen dev entities: answered right, with lookup", share(figures.get("unseen_dev_correct_with_lookup"))],
            ["invented names (lookup finds nothing): \"I don't know\", with lookup",
             share(figures.get("unanswerable_idk_with_lookup"))],
            ["malformed tool calls", share(figures.get("malformed_tool_calls"))]]
    text = ["### Lookup: entities the model never saw", "",
            "Unseen test entities are named in no document and no training conversation; only the lookup "
            "tool's reference shelf holds their facts. The model learned lookup on the reserved unseen "
            "entities, never on these.", "", markdown_table(["question", "share"], rows)]
    examples = t.get("unseen_test_examples") or []
    if examples:
        text += ["", markdown_table(["question", "true value", "with lookup", "without tools"],
                                    [[e["question"], e["value"], (e.get("with_lookup") or "-")[:90],
                                      e["without_tools"][:90]] for e in examples])]
    return text


def report_section(run, cfg) -> str | None:
    sft = stage_metrics(run, "sft") or {}
    grpo = stage_metrics(run, "grpo") or {}
    parts = []
    if grpo.get("before_no_tools"):
        parts += reasoning_part(grpo)
    if sft.get("tool_use"):
        parts += ([""] if parts else []) + lookup_part(sft["tool_use"], sft.get("figures") or {})
    if not parts:
        return None
    return "\n".join(["## Tool use: calculator and lookup", ""] + parts)
