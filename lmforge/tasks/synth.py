"""The synth stage: instruction-tuning conversations made 100 % locally from the world's fact table.

    lmforge synth --run-dir runs/tiny          # writes datasets/sft.jsonl and datasets/sft_eval.jsonl

Conversations are in the messages format that TRL also reads:
    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
They mix single questions in varied styles, multi-turn chats about one entity, short
summaries ("Tell me about ...", "Fortell meg om ..."), English and Norwegian, with and
without a system prompt. Only trained entities appear (held-out entities are for the
"I don't know" work of preference tuning).

Like real instruction data, the answers are not all equally good: a share
(`synth.style_noise`) ramble on after the fact or are curt (a bare value), and a few
conversations (`synth.unknown_fraction`) ask about invented names that exist nowhere in
the world and answer "I don't know". So the SFT model sometimes rambles, is sometimes
curt and only sometimes admits ignorance: preference tuning has something to fix.

A share of trained facts (`synth.held_out_fact_fraction`, chosen per entity and
attribute, in both languages, and together with the fact's reverse: "Ada Berg is known for
Lumograph" goes wherever "Lumograph was invented by Ada Berg" goes) is never asked about or
mentioned in any answer, so the SFT evaluation on them measures knowledge the model got
from pretraining. datasets/sft_eval.jsonl lists the facts the evaluation asks, each marked
`split: "held_out"` or `"trained"`; held-out facts also carry `subset: "dev"` (for choosing
SFT settings, `synth.held_out_dev_share` of them) or `"test"` (the headline figure only).
The manifest's `overlap` counts, from the written conversations, held-out facts stated in
them, unseen entities named in them and held-out reasoning chains worked in them (all 0).

With `synth.self_instruct > 0` the pretrained model also writes answers itself: it is
prompted in the world's own "Common questions" style, sampled, and an answer is kept only
if it states the true value (checked against the fact table), is short enough, ends a
sentence and is not a duplicate.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict

from ..data.splits import fact_groups, fact_key, keyed_fraction
from ..errors import StageError
from ..evals.judge import states_value
from ..evals.overlap import chain_overlap, names_in, statement_overlap
from ..files import atomic_write_jsonl, read_jsonl
from ..checkpoints import load_model
from ..engine import generate
from ..rundir import StageContext
from ..tokenizer import Tokenizer
from ..tools.registry import ToolError
from ..world import read_facts
from .phrasing import IDK_ANSWERS, SYSTEM_PROMPTS, ask, assistant, invented_name, styled_answer, summary_request, user
from ..tools.lookup import practice_facts
from .tool_data import LeakCheck, lookup_eval_rows, tool_conversations

LOOKUP_EVAL_UNANSWERABLE = 200     # invented names asked with lookup in the SFT evaluation


def split_facts(facts: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(facts SFT may use, facts it must never mention), over trained entities only; decided per
    fact group (a fact with its reverse, lmforge/data/splits.py), the same in every language."""
    groups = fact_groups(facts)
    usable, held = [], []
    for fact in facts:
        if fact.get("held_out"):
            continue
        (held if keyed_fraction(groups[fact_key(fact)], seed) < fraction else usable).append(fact)
    return usable, held


def held_out_subset(fact: dict, groups: dict, share: float, seed: int) -> str:
    """dev | test for an SFT held-out fact, per fact group."""
    return "dev" if keyed_fraction(f"dev:{groups[fact_key(fact)]}", seed) < share else "test"


def unknown_conversations(usable: list[dict], taken: set[str], count: int, rng: random.Random) -> list[list[dict]]:
    """Questions shaped like real ones but about invented names, answered "I don't know"."""
    conversations = []
    for _ in range(count):
        fact = rng.choice(usable)
        name = invented_name(fact["kind"], taken, rng)
        taken.add(name.lower())       # each invented name once (the tool evaluation's names come after)
        question = ask(fact, rng).replace(fact["entity"], name)
        if rng.random() < 0.2:
            question = summary_request(name, fact["kind"], fact["language"], rng)
        conversations.append([user(question), assistant(rng.choice(IDK_ANSWERS[fact["language"]]).format(name=name))])
    return conversations


def build_conversations(usable: list[dict], cfg, rng: random.Random) -> list[dict]:
    """Single questions for every usable fact, plus multi-turn chats and summaries."""
    by_entity: dict[tuple, list[dict]] = defaultdict(list)
    for fact in usable:
        by_entity[(fact["entity_id"], fact["language"])].append(fact)
    conversations = []

    def with_system(messages: list[dict], language: str) -> list[dict]:
        if rng.random() < cfg.system_prompt_fraction:
            return [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS[language])}] + messages
        return messages

    for _ in range(cfg.repeats):
        for fact in usable:
            conversations.append(with_system([user(ask(fact, rng)),
                                              assistant(styled_answer(fact, cfg.style_noise, rng))], fact["language"]))
    for (entity_id, language), facts in sorted(by_entity.items()):
        if len(facts) >= 2 and rng.random() < cfg.multi_turn_fraction:
            turns = rng.sample(facts, k=min(len(facts), rng.randint(2, 3)))
            messages = []
            for fact in turns:
                messages += [user(ask(fact, rng)), assistant(fact["answer"])]
            conversations.append(with_system(messages, language))
        if rng.random() < cfg.summary_fraction:
            facts_in_order = sorted(facts, key=lambda f: f["attribute"])
            picked = facts_in_order[: rng.randint(2, min(4, len(facts_in_order)))] if len(facts) >= 2 else facts
            answer = " ".join(f["answer"] for f in picked)
            request = summary_request(facts[0]["entity"], facts[0]["kind"], language, rng)
            conversations.append(with_system([user(request), assistant(answer)], language))
    rng.shuffle(conversations)
    return conversations


def self_instruct(run, usable: list[dict], count: int, seed: int) -> tuple[list[dict], dict]:
    """The base model answers questions in its own words; keep only verified, clean answers."""
    model_dir = run.model_dir("pretrain")
    if not (model_dir / "model.safetensors").exists():
        raise StageError("synth.self_instruct needs a pretrained model; run the pretrain stage first")
    tokenizer, model = Tokenizer.load(run.tokenizer_dir), load_model(model_dir)
    rng = random.Random(seed)
    chosen = [rng.choice(usable) for _ in range(count)]
    header = {"en": "Common questions", "nb": "Vanlige spørsmål"}
    stats: Counter = Counter()
    kept, seen = [], set()
    for start in range(0, len(chosen), 64):
        rows = chosen[start:start + 64]
        prompts = [[tokenizer.bos_id] + tokenizer.encode(f"{header[f['language']]}\n{f['question']} ") for f in rows]
        outs = generate(model, prompts, max_new_tokens=32, temperature=0.7, top_p=0.95, seed=seed + start,
                        stop_ids=(tokenizer.bos_id, tokenizer.end_id))
        for fact, out in zip(rows, outs):
            text = tokenizer.decode(out.tokens).split("\n")[0].strip()
            sentence = text.split(". ")[0].strip()
            sentence = sentence if sentence.endswith(".") else sentence + "."
            if not states_value(sentence, fact["value"]):
                stats["wrong_or_missing_value"] += 1
            elif len(sentence) > 160 or len(sentence) < len(fact["value"]) + 3:
                stats["bad_length"] += 1
            elif (fact["question"], sentence) in seen:
                stats["duplicate"] += 1
            else:
                seen.add((fact["question"], sentence))
                kept.append({"messages": [user(fact["question"]), assistant(sentence)]})
                stats["kept"] += 1
    return kept, dict(stats)


def worked_problems(run, count: int) -> list[dict]:
    """Worked arithmetic word problems ("7 + 5 = 12. 12 - 3 = 9. The answer is 9.") so the chat model
    knows the step-by-step answer format before GRPO. They come from datasets/reasoning_sft.jsonl,
    the reasoning stage's SFT split, which never holds a held-out (evaluation) problem; none
    when that stage has not run."""
    path = run.path("datasets", "reasoning_sft.jsonl")
    if count == 0 or not path.exists():
        return []
    return [{"messages": row["messages"]} for row in read_jsonl(path)[:count]]


def run_stage(ctx: StageContext) -> dict:
    cfg, run = ctx.cfg.synth, ctx.run
    facts = read_facts(run.world_dir / "facts.jsonl")
    languages = set(ctx.cfg.world.languages)
    facts = [f for f in facts if f["language"] in languages]
    usable, held = split_facts(facts, cfg.held_out_fact_fraction, cfg.seed)
    if not usable:
        raise StageError("the fact table has no trained facts to make conversations from")
    rng = random.Random(cfg.seed)
    conversations = [{"messages": c} for c in build_conversations(usable, cfg, rng)]
    # With tool use on, names invented from here on avoid the shelf's practice entities too (lookup
    # would find those). With it off the practice entities play no part, and the conversations are
    # the ones synth wrote before they existed: avoiding them shifted 63 "I don't know" names at tiny
    # and SFT's "I don't know" rate on unseen entities with them (docs/LOG.md).
    practice = practice_facts(run) if cfg.tool_use != "off" else []
    taken = {f["entity"].lower() for f in facts + practice}
    unknown = unknown_conversations(usable, taken, round(cfg.unknown_fraction * len(conversations)), rng)
    conversations += [{"messages": c} for c in unknown]
    rng.shuffle(conversations)
    self_stats = {}
    if cfg.self_instruct:
        extra, self_stats = self_instruct(run, usable, cfg.self_instruct, cfg.seed)
        conversations += extra
        rng.shuffle(conversations)
    worked = worked_problems(run, cfg.reasoning_problems)
    if worked:
        conversations += worked
        rng.shuffle(conversations)
    tool_stats: dict = {}
    if cfg.tool_use != "off":
        try:
            tool_rows, tool_stats = tool_conversations(run, ctx.cfg, usable, facts, held, rng, taken)
        except ToolError as err:
            raise StageError(f"synth.tool_use={cfg.tool_use}: {err}") from None
        conversations += tool_rows
        rng.shuffle(conversations)
    datasets = run.path("datasets")
    atomic_write_jsonl(datasets / "sft.jsonl", conversations)
    groups = fact_groups(facts)
    eval_rows = [{**f, "split": "held_out", "subset": held_out_subset(f, groups, cfg.held_out_dev_share, cfg.seed)}
                 for f in held]
    eval_rows += [{**f, "split": "trained"} for f in usable]
    atomic_write_jsonl(datasets / "sft_eval.jsonl", eval_rows)
    atomic_write_jsonl(datasets / "lookup_eval.jsonl",
                       lookup_eval_rows(facts, usable, taken, LOOKUP_EVAL_UNANSWERABLE, cfg.seed))
    overlap = sft_overlap(run, conversations, held, facts)
    turns = Counter(sum(m["role"] == "user" for m in c["messages"]) for c in conversations)
    with_system = sum(c["messages"][0]["role"] == "system" for c in conversations)
    ctx.progress(f"{len(conversations):,} conversations; {len(held)} facts held out of SFT "
                 f"({sum(r.get('subset') == 'dev' for r in eval_rows)} dev); stated in the conversations: "
                 f"{overlap['held_out_facts']['stated_in_training']}")
    return {
        "conversations": len(conversations),
        "multi_turn": sum(v for k, v in turns.items() if k > 1),
        "with_system_prompt": with_system,
        "usable_facts": len(usable),
        "held_out_facts": len(held),
        "held_out_dev_facts": sum(r.get("subset") == "dev" for r in eval_rows),
        "overlap": overlap,
        "self_instruct": self_stats,
        "worked_problems": len(worked),
        "unknown_entity_conversations": len(unknown),
        "tool_use": cfg.tool_use,
        "tool_conversations": tool_stats,
    }


def sft_overlap(run, conversations: list[dict], held: list[dict], facts: list[dict]) -> dict:
    """What the written SFT data shares with held-out sets, counted from its text
    (lmforge/evals/overlap.py): SFT held-out facts stated (with their reverses), unseen
    entities named, and held-out reasoning chains (test, dev) worked in it."""
    # every message counts, tool results (context the model reads, never a target) included
    texts = [m.get("content") or "" for c in conversations for m in c["messages"]]
    unseen = {f["entity"] for f in facts if f["held_out"] and f.get("unseen_split") != "reserved"}
    reserved = {f["entity"] for f in facts if f["held_out"] and f.get("unseen_split") == "reserved"}
    leaks = LeakCheck(facts, held)
    result = {"held_out_facts": statement_overlap((c["messages"] for c in conversations), held, facts),
              "unseen_entities_named_in_training": len(names_in(texts, unseen)),
              "held_out_leaks_in_tool_results": sum(leaks(m.get("content") or "") for c in conversations
                                                    for m in c["messages"] if m.get("role") == "tool"),
              "reserved_unseen_entities_named": len(names_in(texts, reserved)),   # informational: lookup's training
              }
    answers = [m.get("content") or "" for c in conversations for m in c["messages"] if m["role"] == "assistant"]
    for name, file in (("test", "reasoning_eval.jsonl"), ("dev", "reasoning_dev.jsonl")):
        path = run.path("datasets", file)
        if path.exists():
            counts = chain_overlap(answers, [row.get("solution") or "" for row in read_jsonl(path)])
            result[f"reasoning_{name}"] = counts
    return result
