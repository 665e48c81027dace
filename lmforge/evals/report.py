"""The report card: report/report.md (+ PNG plots) saying what each stage changed.

    lmforge report --run-dir runs/tiny

The card opens with every stage's headline figures in words, with the split each is on, its
size and its 95 % interval (lmforge/evals/headlines.py). Then each section is a function
(run, cfg) -> markdown or None; a stage that has not run is left out. Later stages add
their own section functions to SECTIONS.
"""
from __future__ import annotations

from pathlib import Path

from ..world import read_facts
from ..files import atomic_write_text, read_jsonl
from ..engine import generate
from ..checkpoints import load_model
from ..rundir import STAGE_NAMES, RunDir, StageContext
from ..tokenizer import Tokenizer
from . import alignment, cleaning, inside, reasoning, standard, tools
from .card import markdown_table, new_figure, read_log, save_figure, stage_metrics
from .chat import ask
from .facts import fact_accuracy
from .headlines import headline_table


def plot_losses(log_path: Path, out_png: Path, title: str) -> bool:
    rows = read_log(log_path, "loss")
    if not rows:
        return False
    train = [(r["step"], r["loss"]) for r in rows]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    fig, ax = new_figure()
    ax.plot(*zip(*train), label="train", lw=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), label="validation", marker="o", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out_png)


# ---------------------------------------------------------------- sections

def section_data(run: RunDir, cfg) -> str | None:
    m = stage_metrics(run, "collect")
    if m is None:
        return None
    splits = m.get("unseen_splits") or {}
    unseen = ("; partitioned " + ", ".join(f"{v} {k}" for k, v in splits.items()) +
              ": train for labels and PPO, dev for choosing, test for headline figures") if splits else ""
    rows = [[k, f"{v:,}"] for k, v in m.get("by_source", {}).items()]
    rows += [[f"language {k}", f"{v:,}"] for k, v in m.get("by_language", {}).items()]
    return (f"## Data\n\n{m['documents']:,} raw documents collected, {m['characters']:,} characters. The "
            f"built-in world behind them has {m.get('entities')} entities, {m.get('held_out_entities')} of them "
            f"held out of all training text (unseen{unseen}), and {m.get('facts')} facts.\n\n"
            + markdown_table(["documents", "count"], rows))


def section_tokenizer(run: RunDir, cfg) -> str | None:
    m = stage_metrics(run, "tokenizer")
    if m is None:
        return None
    return ("## Tokenizer\n\n" + markdown_table(["vocab size", "train tokens", "val tokens", "bytes per token (val)"], [[
        m.get("vocab_size"), f"{m.get('train_tokens', 0):,}", f"{m.get('val_tokens', 0):,}", m.get("bytes_per_token")]]))


def section_pretrain(run: RunDir, cfg) -> str | None:
    m = stage_metrics(run, "pretrain")
    if m is None:
        return None
    has_plot = plot_losses(run.log_path("pretrain"), run.report_dir / "pretrain_loss.png", "pretraining")
    text = ["## Pretraining: the base model", ""]
    text.append(markdown_table(["parameters", "tokens seen", "steps", "stop", "val loss (nats/token)",
                                "val bits per byte", "tokens/s", "train time"], [[
        f"{m['parameters']:,}", f"{m['tokens_seen']:,}", f"{m['steps']} of {m.get('planned_steps', m['steps'])}",
        m["stop_reason"], m["val_loss"], m.get("val_bpb", "-"), f"{m['tokens_per_second']:,.0f}",
        f"{m['train_seconds']:.0f}s"]]))
    if m.get("val_bpb") is not None:
        text += ["", f"Bits per byte is the validation loss summed over the text's UTF-8 bytes instead of its "
                     f"tokens (over {m.get('val_tokens', 0):,} validation tokens): it does not depend on the "
                     f"tokenizer, so runs with different vocabularies compare on it."]
    if has_plot:
        text += ["", "![pretraining loss](pretrain_loss.png)"]
    return "\n".join(text)


def section_facts_and_samples(run: RunDir, cfg) -> str | None:
    if stage_metrics(run, "pretrain") is None:
        return None
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    model = load_model(run.model_dir("pretrain"))
    facts = read_facts(run.world_dir / "facts.jsonl")
    result = fact_accuracy(model, tokenizer, facts, limit=cfg.report.fact_eval_limit)
    text = [f"## What the base model knows\n\nFact completion (greedy, exact value) on {result['n']} trained-entity "
            f"facts: **{result['accuracy']:.1%}**.", ""]
    text.append(markdown_table(["language", "accuracy"], [[k, f"{v:.1%}"] for k, v in result["by_language"].items()]))
    text += ["", markdown_table(["attribute", "accuracy"], [[k, f"{v:.1%}"] for k, v in result["by_attribute"].items()])]
    text += ["", markdown_table(["prompt", "true value", "completion", "ok"],
                        [[e["prompt"], e["value"], e["completion"].strip()[:60], "yes" if e["correct"] else "no"]
                         for e in result["examples"][:8]])]
    if cfg.report.samples:
        trained = [f for f in facts if not f.get("held_out")]
        step = max(1, len(trained) // cfg.report.samples)
        prompts = [trained[i]["prompt"] for i in range(0, len(trained), step)][:cfg.report.samples]
        ids = [[tokenizer.bos_id] + tokenizer.encode(p) for p in prompts]
        outs = generate(model, ids, max_new_tokens=cfg.generate.max_new_tokens, temperature=cfg.generate.temperature,
                        top_k=cfg.generate.top_k, top_p=cfg.generate.top_p, seed=cfg.run.seed,
                        stop_ids=(tokenizer.bos_id, tokenizer.end_id))
        text += ["", f"### Sample completions (temperature {cfg.generate.temperature}, top-p {cfg.generate.top_p})",
                 ""]
        for prompt, out in zip(prompts, outs):
            text.append(f"- **{prompt}**{tokenizer.decode(out.tokens)}")
    return "\n".join(text)


def section_sft(run: RunDir, cfg) -> str | None:
    m = stage_metrics(run, "sft")
    if m is None:
        return None
    has_plot = plot_losses(run.log_path("sft"), run.report_dir / "sft_loss.png", "supervised fine-tuning")
    text = ["## SFT: the chat model", "",
            f"{m['train_conversations']:,} conversations, {m['batching']} rows "
            f"({m['padding_fraction']:.1%} of computed tokens were padding), {m['steps']} steps, "
            f"{m['train_seconds']:.0f}s, stop: {m['stop_reason']}.", "",
            markdown_table(["", "trained facts", "held-out facts, test (never in SFT)", "held-out facts, dev",
                            "answers ending with <|end|>"],
                   [["SFT model", f"{m['trained_fact_accuracy']:.1%}", f"{m['held_out_fact_accuracy']:.1%}",
                     f"{m['held_out_fact_accuracy_dev']:.1%}" if "held_out_fact_accuracy_dev" in m else "-",
                     f"{m['end_rate']:.1%}"]]),
            "", "A fact is held out with its reverse (\"Ada Berg is known for Lumograph\" with \"Lumograph was "
                "invented by Ada Berg\"); answers are judged by the ground-truth judge, so hedging between values, "
                "negating the value or saying \"I don't know\" beside it is not correct."]
    if has_plot:
        text += ["", "![SFT loss](sft_loss.png)"]
    eval_path = run.path("datasets", "sft_eval.jsonl")
    if eval_path.exists():
        rows = read_jsonl(eval_path)
        picked = [r for r in rows if r["split"] == "trained"][:2] + [r for r in rows if r["split"] == "held_out"][:2]
        tokenizer = Tokenizer.load(run.tokenizer_dir)
        questions = [r["question"] for r in picked]
        base = ask(load_model(run.model_dir("pretrain")), tokenizer, questions, max_new_tokens=40)
        chat = ask(load_model(run.model_dir("sft")), tokenizer, questions, max_new_tokens=40)
        text += ["", "### The same questions, base model and SFT model", "",
                 markdown_table(["question", "split", "true value", "base model", "SFT model"],
                        [[r["question"], r["split"], r["value"], b.text[:80], c.text[:80]]
                         for r, b, c in zip(picked, base, chat)])]
    return "\n".join(text)


def section_budget(run: RunDir, cfg) -> str | None:
    """Each training stage's planned steps against the steps it did, why it stopped, its time
    against the estimate `lmforge run` printed, and the precision it ran in."""
    rows, cut = [], []
    for stage in STAGE_NAMES:
        manifest = run.read_manifest(stage)
        m = (manifest or {}).get("metrics") or {}
        if not manifest or manifest.get("status") != "done" or "planned_steps" not in m:
            continue
        estimate = manifest.get("estimate") or {}
        per_step = m.get("seconds_per_step")
        rows.append([stage, f"{m['steps']} of {m['planned_steps']}",
                     ("CUT SHORT by max_minutes" if m.get("cut_short") else m["stop_reason"]),
                     f"{per_step:.3f}s" if per_step is not None else "-",
                     f"{estimate['per_step']:.3f}s" if estimate.get("per_step") else "-",
                     f"{manifest.get('wall_seconds', 0):.0f}s",
                     f"{estimate['before'] + estimate['train'] + estimate['after']:.0f}s" if estimate else "-",
                     (m.get("precision") or {}).get("compute", "-")])
        if m.get("cut_short"):
            cut.append(stage)
    if not rows:
        return None
    text = ["## Budgets: planned and done", "",
            "Every training stage has a budget in steps, so a run does the same work on any machine, only "
            "sooner or later; `max_minutes` is an optional cap. Seconds per step and stage time are measured; "
            "the estimates are what `lmforge run` printed before it started.", "",
            markdown_table(["stage", "steps", "stopped by", "s/step", "estimated s/step", "stage time",
                            "estimated", "precision"], rows)]
    if cut:
        text += ["", f"**{', '.join(cut)} stopped at the time cap before the planned steps: their figures are "
                     f"not what this preset gives.**"]
    pre = stage_metrics(run, "pretrain") or {}
    reason = (pre.get("precision") or {}).get("reason")
    if reason:
        text += ["", f"Precision (chosen once per process): {reason}."]
    return "\n".join(text)


def section_inside(run: RunDir, cfg) -> str | None:
    """A 2-D map of token embeddings and how far sampled answers spread (lmforge/evals/inside.py)."""
    return inside.report_section(run, cfg)


def section_cleaning(run: RunDir, cfg) -> str | None:
    """Where the documents came from and how each source was cleaned (lmforge/evals/cleaning.py)."""
    return cleaning.cleaning_section(run)


def section_reasoning(run: RunDir, cfg) -> str | None:
    """Held-out pass@1 and pass@k before and after GRPO, per difficulty (lmforge/evals/reasoning.py)."""
    return reasoning.report_section(run, cfg)


def section_alignment(run: RunDir, cfg) -> str | None:
    """Reward model, PPO and DPO against SFT (lmforge/evals/alignment.py)."""
    return alignment.report_section(run, cfg)


def section_benchmarks(run: RunDir, cfg) -> str | None:
    """Standard benchmarks, written by `lmforge eval`, not a stage (lmforge/evals/standard.py)."""
    return standard.report_section(run, cfg)


def section_tools(run: RunDir, cfg) -> str | None:
    """Pass@1 with and without tools, lookup on unseen entities, malformed calls (lmforge/evals/tools.py)."""
    return tools.report_section(run, cfg)


SECTIONS = [section_data, section_cleaning, section_tokenizer, section_pretrain, section_facts_and_samples,
            section_benchmarks, section_sft, section_alignment, section_reasoning, section_tools, section_budget,
            section_inside]


def run_stage(ctx: StageContext) -> dict:
    run = ctx.run
    parts = [f"# Report card: {run.root.name}", "", headline_table(run)]
    written = 0
    for section in SECTIONS:
        body = section(run, ctx.cfg)
        if body:
            parts += ["", body]
            written += 1
    run.report_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run.report_dir / "report.md", "\n".join(parts) + "\n")
    ctx.progress(f"wrote {run.report_dir / 'report.md'} ({written} sections)")
    return {"sections": written, "path": str(run.report_dir / "report.md")}
