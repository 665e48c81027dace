"""The report card's first table: each stage's headline figures in words, with split, size and interval.

    from lmforge.evals.headlines import headline_table
    print(headline_table(run))        # markdown; lmforge report puts it at the top of report/report.md

One row per figure, e.g.

    | sft | held-out facts answered right | 87.3 % | 83.6–90.3 % | test, 402 questions |

A proportion (answers right, pairs ranked right, problems solved) comes with its 95 %
Wilson interval (lmforge/evals/stats.py) computed from the counts the stage stored; a win
rate counts ties half, so its interval is approximate. The split column says which set the
figure is on: test figures come from sets used for nothing else; dev figures are the ones
settings and checkpoints may be chosen on; "training" figures measure recall of what was
trained on. Raw metrics stay in the manifests (stages/<stage>.json). A stage whose manifest
is older than these figures shows what it has, without an interval.
"""
from __future__ import annotations

from .card import markdown_table
from .stats import proportion

def pct(value) -> str:
    return f"{100 * value:.1f} %" if isinstance(value, (int, float)) else "-"


def figure(stage: str, label: str, share: dict | None, split: str, unit: str) -> list:
    """A row for a proportion stored as stats.proportion (counts, rate, interval)."""
    if not share or not share.get("n"):
        return [stage, label, "-", "-", f"{split}, 0 {unit}"]
    return [stage, label, pct(share["rate"]), f"{100 * share['low']:.1f}–{100 * share['high']:.1f} %",
            f"{split}, {share['n']:,} {unit}"]


def rate_figure(stage: str, label: str, rate, n, split: str, unit: str) -> list:
    """A row from a rate and its size (older manifests without counts): the interval from k = rate * n."""
    if not isinstance(rate, (int, float)) or not isinstance(n, int) or n <= 0:
        return [stage, label, pct(rate), "-", split]
    return figure(stage, label, proportion(min(n, max(0.0, rate * n)), n), split, unit)


def count(stage: str, label: str, value, detail: str = "") -> list:
    return [stage, label, f"{value:,}" if isinstance(value, int) else str(value), "-", detail]


def _collect(m: dict) -> list[list]:
    unseen = m.get("unseen_splits") or {}
    detail = " / ".join(f"{k} {v}" for k, v in unseen.items())
    return [count("collect", "documents collected", m.get("documents")),
            count("collect", "entities never named in any document", m.get("held_out_entities"),
                  f"of {m.get('entities')}" + (f"; {detail}" if detail else ""))]


def _clean(m: dict) -> list[list]:
    return [count("clean", "documents kept", m.get("kept"),
                  f"{pct(m.get('kept_fraction'))} of {m.get('raw_documents')}")]


def _tokenizer(m: dict) -> list[list]:
    return [count("tokenizer", "bytes per token", m.get("bytes_per_token"), "validation text")]


def _pretrain(m: dict) -> list[list]:
    return [rate_figure("pretrain", "facts completed exactly (greedy)", m.get("fact_accuracy"), m.get("facts_checked"),
                        "training: trained facts", "facts"),
            count("pretrain", "validation loss", m.get("val_loss"), "nats per token, validation text"),
            count("pretrain", "validation bits per byte", m.get("val_bpb", "not measured"),
                  f"{m.get('val_tokens', 0):,} validation tokens; independent of the tokenizer")]


def _reasoning(m: dict) -> list[list]:
    overlap = m.get("overlap") or {}
    leaks = ", ".join(f"{name} {v.get('chains_in_training')}" for name, v in overlap.items())
    return [count("reasoning", "word problems", m.get("problems"),
                  f"RL {m.get('rl_problems')} / SFT {m.get('sft_problems')} / dev {m.get('dev_problems', '-')} / "
                  f"test {m.get('test_problems')}"),
            count("reasoning", "held-out solution chains found in training text", leaks or "not measured")]


def _synth(m: dict) -> list[list]:
    stated = ((m.get("overlap") or {}).get("held_out_facts") or {}).get("stated_in_training", "not measured")
    return [count("synth", "conversations", m.get("conversations")),
            count("synth", "SFT held-out facts stated in them", stated, f"of {m.get('held_out_facts')} held-out facts")]


def _sft(m: dict) -> list[list]:
    f = m.get("figures")
    if not f:
        return [rate_figure("sft", "held-out facts answered right", m.get("held_out_fact_accuracy"), None, "test", ""),
                rate_figure("sft", "trained facts answered right", m.get("trained_fact_accuracy"), None,
                            "training", "")]
    rows = [figure("sft", "held-out facts answered right", f["held_out_facts"], "test", "questions"),
            figure("sft", "held-out facts answered right", f["held_out_facts_dev"], "dev", "questions"),
            figure("sft", "trained facts answered right", f["trained_facts"], "training", "questions"),
            figure("sft", "answers ending with <|end|>", f["answers_ending"], "all asked", "questions")]
    tools = [("unseen_test_correct_with_lookup", "unseen entities answered right, with lookup", "test"),
             ("unseen_test_correct_without_tools", "the same without tools: answered right", "test"),
             ("unseen_test_idk_without_tools", "the same without tools: \"I don't know\"", "test"),
             ("unseen_test_number_correct_with_lookup", "of them, numbers (years, lengths...) answered right", "test"),
             ("unseen_test_word_correct_with_lookup", "of them, words (towns, trades...) answered right", "test"),
             ("unseen_dev_correct_with_lookup", "unseen entities answered right, with lookup", "dev"),
             ("unanswerable_idk_with_lookup", "\"I don't know\" when lookup finds nothing (invented names)",
              "test"),
             ("malformed_tool_calls", "malformed tool calls", "all tool questions")]
    rows += [figure("sft", label, f[key], split, "calls" if key.startswith("malformed") else "questions")
             for key, label, split in tools if key in f]
    return rows


def _preferences(m: dict) -> list[list]:
    split = m.get("pairs_by_split") or {}
    return [count("preferences", "preference pairs", m.get("pairs"),
                  " / ".join(f"{k or 'unsplit'} {v}" for k, v in split.items()))]


def _reward(m: dict) -> list[list]:
    f = m.get("figures")
    if not f:
        n = m.get("held_out_pairs")
        return [rate_figure("reward", "pairs ranked like the labels", m.get("held_out_accuracy"), n, "held out",
                            "pairs")]
    return [figure("reward", "pairs ranked like the (noisy) labels", f["test_accuracy"], "test", "pairs"),
            figure("reward", "pairs ranked like the truth", f["test_accuracy_vs_truth"], "test", "pairs"),
            figure("reward", "label-noise ceiling (labels not flipped)", f["test_label_ceiling"], "test", "pairs"),
            figure("reward", "pairs ranked like the (noisy) labels", f["dev_accuracy"], "dev", "pairs")]


def _aligned(stage: str):
    def rows(m: dict) -> list[list]:
        f = m.get("figures")
        if not f:
            n = m.get("eval_prompts")
            return [rate_figure(stage, "win rate against SFT (judge, ties half)", m.get("win_rate"), n, "held out",
                                "prompts")]
        dev = (m.get("dev") or {}).get("figures") or {}
        return [figure(stage, "win rate against SFT (judge, ties half)", f["win_rate"], "test", "prompts"),
                figure(stage, "\"I don't know\" on unseen entities", f["idk_rate"], "test", "prompts"),
                figure(stage, "the SFT model on the same prompts", f.get("sft_idk_rate"), "test", "prompts"),
                figure(stage, "known-entity answers right", f["known_accuracy"], "test", "prompts"),
                figure(stage, "the SFT model on the same prompts", f.get("sft_known_accuracy"), "test", "prompts"),
                figure(stage, "win rate against SFT (judge, ties half)", dev.get("win_rate"), "dev", "prompts")]
    return rows


def _grpo(m: dict) -> list[list]:
    f = m.get("figures")
    if not f:
        n = (m.get("after") or {}).get("n")
        return [rate_figure("grpo", "problems solved, greedy (pass@1)", m.get("held_out_pass_at_1"), n, "held out",
                            "problems")]
    lookup = m.get("task_kind") == "lookup"
    where = "test" if lookup or m.get("held_out_source", "").endswith(".jsonl") else "test (held-out slice)"
    tools = f" with tools ({', '.join(m['tools'])})" if m.get("tools") else ""
    solved, unit = ("lookup questions answered right", "questions") if lookup else ("problems solved", "problems")
    rows = [figure("grpo", f"{solved}, greedy (pass@1){tools}", f["test_pass_at_1"], where, unit),
            figure("grpo", f"the SFT model on the same {unit}", f["test_pass_at_1_sft"], where, unit),
            figure("grpo", f"{solved}, greedy (pass@1)", f["dev_pass_at_1"], "dev", unit)]
    if m.get("chosen_step") is not None:
        rows.append(count("grpo", "output chosen on dev", "the SFT weights" if m["chosen_step"] == 0
                          else f"step {m['chosen_step']}", "best dev pass@1 of the SFT weights and each validation"))
    if "test_pass_at_1_no_tools" in f:
        rows += [figure("grpo", f"{solved} without tools", f["test_pass_at_1_no_tools"], where, unit),
                 figure("grpo", "the SFT model without tools", f["test_pass_at_1_sft_no_tools"], where, unit),
                 figure("grpo", "malformed tool calls (evaluation)", f["malformed_tool_calls_eval"], where, "calls"),
                 figure("grpo", "malformed tool calls (rollouts)", f["malformed_tool_calls_rollouts"], "training",
                        "calls"),
                 count("grpo", "rollout time in tools (running and waiting)", pct(m.get("tool_share_of_rollout")),
                       f"{m.get('tool_seconds')} s in tools, {m.get('tool_wait_seconds')} s waiting")]
    return rows


def _index(m: dict) -> list[list]:
    sources = m.get("by_source") or {}
    return [count("index", "lookup passages", m.get("passages"), " / ".join(f"{k} {v}" for k, v in sources.items())),
            count("index", "reference-shelf cards found in the corpus", m.get("shelf_cards_in_corpus"),
                  f"of {m.get('shelf_cards')} cards ({m.get('unseen_cards')} about unseen entities, "
                  f"{m.get('practice_cards', 0)} about practice entities)")]


HEADLINES = {"collect": _collect, "clean": _clean, "tokenizer": _tokenizer, "pretrain": _pretrain,
             "reasoning": _reasoning, "index": _index, "synth": _synth, "sft": _sft, "preferences": _preferences,
             "reward": _reward, "ppo": _aligned("ppo"), "dpo": _aligned("dpo"), "grpo": _grpo}


def headline_table(run) -> str:
    """The markdown table of every finished stage's headline figures (stage order), and a note."""
    rows = []
    for stage, make in HEADLINES.items():
        manifest = run.read_manifest(stage)
        if manifest and manifest.get("status") == "done":
            metrics = manifest.get("metrics") or {}
            stage_rows = make(metrics)
            stage_rows[0][0] = f"{stage} ({manifest.get('wall_seconds', 0):.0f}s)"
            if metrics.get("cut_short"):      # a max_minutes cap stopped it before its planned steps
                stage_rows[0][0] += (f" **CUT SHORT: {metrics['steps']} of {metrics['planned_steps']} "
                                     f"planned steps**")
            rows += [row if i == 0 else ["", *row[1:]] for i, row in enumerate(stage_rows)]
    note = ("Intervals are 95 % Wilson intervals. *test*: a set used for nothing else (never trained on, never "
            "used to choose a checkpoint or a setting); *dev*: the set checkpoints and settings are chosen on; "
            "*training*: recall of what was trained on. Raw metrics are in stages/<stage>.json.")
    return markdown_table(["stage", "figure", "value", "95 % interval", "split, size"], rows) + "\n\n" + note
