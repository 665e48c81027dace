"""The preferences stage: prompts, sampled answers, labels, preference pairs.

    lmforge preferences --run-dir runs/tiny     # automatic annotator (what `lmforge run` does)
    lmforge label --run-dir runs/tiny           # people label the same items in a web page

Prompts are the world's fact questions, about trained entities (the model should
answer) and about held-out entities that never appeared in any document (the model
should say it does not know). The SFT model samples `preferences.candidates` answers to each
prompt through the shared generation engine; these "label items" are written to
datasets/label_items.jsonl. A labeler then prefers some answers over others:

- the automatic annotator (`preferences.annotator=auto`) judges each answer by the world's
  ground truth (lmforge/evals/judge.py) and, like a real annotator, gets pairs wrong:
  `preferences.noise` of them on average, every pair alike (`preferences.noise_model=flip`) or the
  close calls more often than the clear ones (`gap`, see flip_probabilities);
- people use `lmforge label` (web page or terminal); their labels carry
  `"source": "human"` and are kept when the automatic annotator runs again.

Every ordered pair of differently judged answers becomes one row of
datasets/preferences.jsonl in TRL's conversational preference format:
    {"prompt": [{"role": "user", ...}], "chosen": [{"role": "assistant", ...}],
     "rejected": [{"role": "assistant", ...}], "item": ..., "source": "auto"|"human",
     "chosen_ended": true, "rejected_ended": false}
(`*_ended` false: the answer hit the token limit without <|end|>; TRL ignores the extra
keys; `split` says which split the pair belongs to.)

Splits go by fact, not by wording (lmforge/data/splits.py): a known entity's fact (entity,
attribute, with its reverse) is train, dev or test by a keyed hash (`preferences.dev_fact_share`,
`preferences.test_fact_share`), an unseen entity is train, dev or test by the world's partition
(data/world/entities.jsonl `unseen_split`; the reserved ones are never asked here). Label
items are drawn per split: `preferences.prompts` train items (reward and DPO train pairs, PPO
prompts), `preferences.dev_prompts` dev items (reward and DPO checkpoint selection) and
`preferences.test_prompts` test items (the reward model's headline accuracy), each with sampled
candidates. datasets/preferences_eval.jsonl holds prompts that are never labeled, on which
PPO and DPO are evaluated against SFT: `preferences.eval_dev_prompts` dev ones for tuning and
`preferences.eval_prompts` test ones for the headline. So no dev or test prompt asks a fact, or
names an unseen entity, that a training prompt or answer does; the manifest's `overlap`
counts that from the text, and `judge_check` how the judge did on generated trick answers.

`load_pairs` reads any preference file (ours, TRL's conversational or plain-string
format, with an explicit or an implicit prompt) and skips bad rows with a counted reason.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import random
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..data.splits import fact_groups, fact_key, keyed_fraction, pick
from ..device import pick_device, set_threads
from ..errors import StageError
from ..evals.judge import judge, load_index, says_idk
from ..evals.overlap import FactFinder, prompt_overlap
from ..files import atomic_write_jsonl, read_jsonl, read_jsonl_lenient
from ..checkpoints import load_model
from ..engine import generate
from ..rundir import StageContext
from ..tokenizer import Tokenizer
from ..world import partition_unseen, read_facts
from .adversarial import check_judge
from .phrasing import ask
from .synth import split_facts

ROLES = ("system", "user", "assistant")
SPLITS = ("train", "dev", "test")


# ---------------------------------------------------------------- prompts

def item_id(prompt: list[dict]) -> str:
    return hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:12]


def unseen_splits(facts: list[dict], world_cfg) -> dict[str, str]:
    """entity id -> train | dev | test | reserved for the unseen entities: the world's own
    partition, recomputed for a fact table written before it was recorded."""
    if all(f.get("unseen_split") for f in facts if f["held_out"]):
        return {f["entity_id"]: f["unseen_split"] for f in facts if f["held_out"]}
    entities = {f["entity_id"]: {"id": f["entity_id"], "kind": f["kind"], "held_out": True}
                for f in facts if f["held_out"]}
    return partition_unseen(list(entities.values()), world_cfg)


def fact_splits(facts: list[dict], cfg) -> list[str]:
    """train | dev | test | reserved for each fact a preference prompt may ask: per fact group
    (with its reverse) for known entities, the world's partition for unseen ones."""
    groups, unseen = fact_groups(facts), unseen_splits(facts, cfg.world)
    shares = [("test", cfg.preferences.test_fact_share), ("dev", cfg.preferences.dev_fact_share)]
    return [unseen[f["entity_id"]] if f["held_out"] else
            pick(keyed_fraction(f"preference:{groups[fact_key(f)]}", cfg.preferences.seed), shares, "train")
            for f in facts]


def make_prompts(facts: list[dict], count: int, unknown_share: float, split: str, seed: int,
                 purpose: str = "label") -> list[dict]:
    """`count` question prompts (fewer when they repeat) about `facts`, the facts of one split:
    `unknown_share` of them about unseen entities. Items carry the split and the fact they ask."""
    known = [f for f in facts if not f["held_out"]]
    unknown = [f for f in facts if f["held_out"]]
    rng = random.Random(f"{seed}:{purpose}:{split}")
    n_unknown = round(count * unknown_share) if unknown else 0
    if not known:
        n_unknown = count if unknown else 0
    picked = [rng.choice(unknown) for _ in range(n_unknown)] + [rng.choice(known) for _ in range(count - n_unknown)
                                                                 if known]
    items, seen = [], set()
    for fact in picked:
        prompt = [{"role": "user", "content": ask(fact, rng)}]
        key = item_id(prompt)
        if key in seen:
            continue
        seen.add(key)
        items.append({"id": key, "prompt": prompt, "known": not fact["held_out"],
                      "value": fact["value"] if not fact["held_out"] else None,
                      "entity": fact["entity"], "attribute": fact["attribute"], "language": fact["language"],
                      "split": split})
    rng.shuffle(items)
    return items


def sample_candidates(model, tokenizer, items: list[dict], n: int, temperature: float, max_new_tokens: int,
                      seed: int) -> None:
    """Add `candidates` (n sampled answers: text + whether the model ended it) to each item."""
    prompts = [tokenizer.render_chat(item["prompt"], add_generation_prompt=True)[0] for item in items for _ in range(n)]
    outs = generate(model, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                    stop_ids=(tokenizer.end_id,))
    for index, item in enumerate(items):
        item["candidates"] = [{"text": tokenizer.decode(out.tokens).strip(), "ended": out.finish_reason == "stop"}
                              for out in outs[index * n:(index + 1) * n]]


# ---------------------------------------------------------------- labels -> pairs

def pair_row(item: dict, better: dict, worse: dict, source: str, **extra) -> dict:
    row = {"prompt": item["prompt"],
           "chosen": [{"role": "assistant", "content": better["text"]}],
           "rejected": [{"role": "assistant", "content": worse["text"]}],
           "item": item["id"], "source": source,
           "chosen_ended": bool(better.get("ended", True)), "rejected_ended": bool(worse.get("ended", True)),
           **extra}
    if item.get("split"):
        row["split"] = item["split"]
    return row


def pairs_from_ranking(item: dict, ranking: list[list[int]], source: str, **extra) -> list[dict]:
    """ranking: groups of candidate indices, best group first (equal answers share a group).
    Every answer is preferred to every answer in a later group; identical texts never pair."""
    rows = []
    for g, group in enumerate(ranking):
        for worse_group in ranking[g + 1:]:
            for i in group:
                for j in worse_group:
                    better, worse = item["candidates"][i], item["candidates"][j]
                    if better["text"] != worse["text"]:
                        rows.append(pair_row(item, better, worse, source, **extra))
    return rows


def judged_pairs(item: dict, index=None) -> tuple[list[dict], list[float], list[str]]:
    """The ground-truth judge's ranking of an item's candidates as pairs, best answer chosen:
    (rows, each row's score gap, each candidate's verdict reason). index: the run's JudgeIndex."""
    verdicts = [judge(c["text"], c["ended"], item, index) for c in item["candidates"]]
    by_score: dict[float, list[int]] = {}
    for index, verdict in enumerate(verdicts):
        by_score.setdefault(verdict.score, []).append(index)
    ranking = [by_score[s] for s in sorted(by_score, reverse=True)]
    rows = pairs_from_ranking(item, ranking, "auto")
    score = {c["text"]: v.score for c, v in zip(item["candidates"], verdicts)}
    gaps = [score[r["chosen"][0]["content"]] - score[r["rejected"][0]["content"]] for r in rows]
    return rows, gaps, [v.reason for v in verdicts]


def flip_probabilities(gaps: list[float], noise: float, model: str = "flip") -> list[float]:
    """How likely the annotator is to get each pair wrong, `noise` on average.

    flip: every pair alike. gap: the Bradley-Terry annotator, p = sigmoid(-gap / t), with the
    temperature t solved so the mean over these pairs is `noise`; close calls (two answers a
    style point apart) are missed often, a right answer against a wrong one almost never, as
    with people, whose agreement grows with how much better one answer is."""
    if model == "flip" or not gaps or noise <= 0.0 or noise >= 0.5:
        return [min(noise, 0.5)] * len(gaps)
    def rates(t: float) -> list[float]:
        return [1.0 / (1.0 + math.exp(min(g / t, 700.0))) for g in gaps]
    low, high = 1e-4, 1e4                       # the mean rate grows with t from 0 towards 0.5
    for _ in range(100):
        mid = math.sqrt(low * high)
        low, high = (mid, high) if sum(rates(mid)) / len(gaps) < noise else (low, mid)
    return rates(math.sqrt(low * high))


def auto_label(items: list[dict], noise: float, rng: random.Random, model: str = "flip",
               index=None) -> tuple[list[dict], Counter]:
    """The automatic annotator: rank each item's candidates by the ground-truth judge and get
    pairs wrong (swap chosen and rejected, mark `flipped`) at the rates of flip_probabilities.
    Returns the rows and a count of the candidates' verdicts."""
    rows, gaps, reasons = [], [], Counter()
    for item in items:
        item_rows, item_gaps, item_reasons = judged_pairs(item, index)
        rows += item_rows
        gaps += item_gaps
        reasons.update(r.split(",")[0] for r in item_reasons)
    for row, p in zip(rows, flip_probabilities(gaps, noise, model)):
        if rng.random() < p:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
            row["chosen_ended"], row["rejected_ended"] = row["rejected_ended"], row["chosen_ended"]
            row["flipped"] = True
    return rows, reasons


@contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock beside `path`: a labeling session appending and the stage
    rewriting the file never interleave (a label appended mid-rewrite would be lost)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append rows and fsync before returning: a label, once acknowledged, survives a crash.
    A partial last line left by a crash mid-write is skipped (and counted) by load_pairs."""
    with file_lock(path), open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def human_rows(path: Path) -> tuple[list[dict], int]:
    """The rows people labeled, and how many unreadable lines (a crash mid-append) were dropped."""
    if not path.exists():
        return [], 0
    rows, torn = read_jsonl_lenient(path)
    return [r for r in rows if isinstance(r, dict) and r.get("source") == "human"], torn


def labeled_items(path: Path, source: str | None = None) -> set[str]:
    """Ids of the items that already have labels (from `source`, or any): resuming skips them."""
    rows = read_jsonl_lenient(path)[0] if path.exists() else []
    return {row["item"] for row in rows
            if isinstance(row, dict) and row.get("item") and (source is None or row.get("source") == source)}


# ---------------------------------------------------------------- reading preference files

@dataclass
class Pair:
    prompt: list[dict]
    chosen: str
    rejected: str
    chosen_ended: bool = True
    rejected_ended: bool = True
    source: str = ""
    flipped: bool = False       # the automatic annotator's deliberate mistake (its noise)
    split: str = ""             # train | dev | test when the row says (the label item's split)
    item: str = ""              # the label item's id

    @property
    def key(self) -> str:
        return item_id(self.prompt)


def _messages(value, field: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user" if field == "prompt" else "assistant", "content": value}]
    if not isinstance(value, list) or not value:
        raise ValueError(f"missing or empty {field}")
    for message in value:
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise ValueError(f"bad message in {field}")
    return value


def parse_pair(row) -> Pair:
    """One preference row -> Pair, or ValueError whose text is the skip reason."""
    if not isinstance(row, dict):
        raise ValueError("not a JSON object")
    if "chosen" not in row or "rejected" not in row:
        raise ValueError("missing chosen or rejected")
    chosen, rejected = _messages(row["chosen"], "chosen"), _messages(row["rejected"], "rejected")
    if "prompt" in row:
        prompt = _messages(row["prompt"], "prompt")
        # chosen / rejected may repeat the prompt (full conversations): it must be the same one
        for name, answer in (("chosen", chosen), ("rejected", rejected)):
            if len(answer) > 1 and answer[:-1] != prompt:
                raise ValueError("mismatched prompts")
    else:   # implicit prompt: both are full conversations that share everything but the last turn
        if len(chosen) < 2 or len(rejected) < 2:
            raise ValueError("missing prompt")
        if chosen[:-1] != rejected[:-1]:
            raise ValueError("mismatched prompts")
        prompt = chosen[:-1]
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise ValueError("answer is not an assistant turn")
    if prompt[-1]["role"] == "assistant":
        raise ValueError("prompt ends with an assistant turn")
    chosen_text, rejected_text = chosen[-1]["content"], rejected[-1]["content"]
    if not chosen_text.strip() or not rejected_text.strip():
        raise ValueError("empty answer")
    if chosen_text.strip() == rejected_text.strip():
        raise ValueError("identical chosen and rejected")
    split = row.get("split") if row.get("split") in SPLITS else ""
    return Pair(prompt, chosen_text, rejected_text, bool(row.get("chosen_ended", True)),
                bool(row.get("rejected_ended", True)), str(row.get("source", "")), bool(row.get("flipped", False)),
                split, str(row.get("item") or ""))


def load_pairs(path: Path) -> tuple[list[Pair], Counter]:
    """All valid pairs of a JSONL file and a Counter of skipped rows by reason."""
    rows, bad = read_jsonl_lenient(path)
    pairs, skipped = [], Counter({"bad JSON": bad} if bad else {})
    for row in rows:
        try:
            pairs.append(parse_pair(row))
        except ValueError as err:
            skipped[str(err)] += 1
    return pairs, skipped


def encode_answer(tokenizer, prompt: list[dict], answer: str, ended: bool, max_tokens: int):
    """(ids, loss_mask) of prompt + answer; an answer that never ended has no <|end|>.
    Over-long conversations keep their start (the prompt) and lose the answer's tail."""
    ids, mask = tokenizer.render_chat(prompt + [{"role": "assistant", "content": answer}])
    if not ended:
        ids, mask = ids[:-1], mask[:-1]
    return ids[:max_tokens], mask[:max_tokens]


def pair_split(pair: Pair, item_splits: dict[str, str], dev_fraction: float, test_fraction: float, seed: int) -> str:
    """train | dev | test: the row's own split, else its label item's (datasets/label_items.jsonl,
    for rows labeled before pairs carried it), else (your own pairs, which name no fact) a keyed
    hash of the prompt, so at least the same prompt never lands on two sides."""
    if pair.split:
        return pair.split
    if pair.item in item_splits:
        return item_splits[pair.item]
    return pick(keyed_fraction(pair.key, seed), [("test", test_fraction), ("dev", dev_fraction)], "train")


def load_items(run, name: str) -> list[dict]:
    path = run.path("datasets", name)
    if not path.exists():
        raise StageError(f"{path} does not exist; run `lmforge preferences` first")
    return read_jsonl(path)


# ---------------------------------------------------------------- the stage

def preference_prompts(facts: list[dict], cfg) -> tuple[list[dict], list[dict]]:
    """(label items of every split, evaluation prompts of dev and test), without answers yet.
    facts: the fact table rows in the run's languages."""
    # Facts SFT held out (known only from pretraining) stay out of labels too, so the SFT
    # evaluation on them keeps its meaning for every later stage.
    usable, _ = split_facts(facts, cfg.synth.held_out_fact_fraction, cfg.synth.seed)
    pool = usable + [f for f in facts if f["held_out"]]
    by_split: dict[str, list[dict]] = {}
    for fact, split in zip(pool, fact_splits(pool, cfg)):
        by_split.setdefault(split, []).append(fact)
    lcfg = cfg.preferences
    items, eval_items = [], []
    for split, count in (("train", lcfg.prompts), ("dev", lcfg.dev_prompts), ("test", lcfg.test_prompts)):
        items += make_prompts(by_split.get(split, []), count, lcfg.held_out_entity_share, split, lcfg.seed)
    for split, count in (("dev", lcfg.eval_dev_prompts), ("test", lcfg.eval_prompts)):
        eval_items += make_prompts(by_split.get(split, []), count, 0.5, split, lcfg.seed, purpose="eval")
    return items, eval_items


def build_items(run, cfg, model, tokenizer, languages) -> tuple[list[dict], list[dict]]:
    """(label items of every split with sampled candidates, evaluation prompts of dev and test)."""
    facts = [f for f in read_facts(run.world_dir / "facts.jsonl") if f["language"] in set(languages)]
    items, eval_items = preference_prompts(facts, cfg)
    if not any(item["split"] == "train" for item in items):
        raise StageError("no training facts to ask about; lower preferences.dev_fact_share / "
                         "preferences.test_fact_share")
    lcfg = cfg.preferences
    sample_candidates(model, tokenizer, items, lcfg.candidates, lcfg.temperature, lcfg.max_new_tokens, lcfg.seed)
    return items, eval_items


def preference_overlap(items: list[dict], eval_items: list[dict], facts: list[dict]) -> dict:
    """What the dev and test prompts share with the training ones (prompts and sampled answers),
    counted from their text (lmforge/evals/overlap.py)."""
    finder = FactFinder(facts)
    train = [m["content"] for i in items if i.get("split") == "train" for m in i["prompt"]]
    train += [c["text"] for i in items if i.get("split") == "train" for c in i.get("candidates", [])]
    held = {f"label_{name}": [i for i in items if i.get("split") == name] for name in ("dev", "test")}
    held.update({f"eval_{name}": [i for i in eval_items if i.get("split") == name] for name in ("dev", "test")})
    return {name: prompt_overlap(train, [i["prompt"][-1]["content"] for i in rows], finder)
            for name, rows in held.items()}


def run_stage(ctx: StageContext) -> dict:

    cfg, run, lcfg = ctx.cfg, ctx.run, ctx.cfg.preferences
    set_threads(cfg.run.threads)
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    model = load_model(run.model_dir("sft"), device=pick_device(cfg.run.device)).eval()
    items, eval_items = build_items(run, cfg, model, tokenizer, cfg.world.languages)
    datasets = run.path("datasets")
    atomic_write_jsonl(datasets / "label_items.jsonl", items)
    atomic_write_jsonl(datasets / "preferences_eval.jsonl", eval_items)
    ctx.progress(f"{len(items)} prompts x {lcfg.candidates} answers sampled; {len(eval_items)} evaluation prompts")
    facts = read_facts(run.world_dir / "facts.jsonl")
    index = load_index(run.world_dir / "facts.jsonl")
    overlap = preference_overlap(items, eval_items, facts)
    judge_check = check_judge(facts, index)
    if judge_check["as_specified"] != judge_check["answers"]:
        ctx.progress(f"WARNING: the judge gave {judge_check['answers'] - judge_check['as_specified']} generated "
                     f"trick answers another verdict than specified (see judge_check in the manifest)")

    path = datasets / "preferences.jsonl"
    reasons: Counter = Counter()
    auto_rows: list[dict] = []
    if lcfg.annotator == "auto":
        auto_rows, reasons = auto_label(items, lcfg.noise, random.Random(lcfg.seed), lcfg.noise_model, index)
    with file_lock(path):      # human labels written up to now are kept, none can slip in between
        human, torn = human_rows(path)
        if lcfg.annotator == "human" and not human:
            raise StageError(f"preferences.annotator=human but {path} has no human labels; "
                             f"run `lmforge label --run-dir {run.root}` first, or set preferences.annotator=auto")
        atomic_write_jsonl(path, human + auto_rows)
    unknown = [i for i in items if not i["known"]]
    idk_candidates = sum(says_idk(c["text"]) for i in unknown for c in i["candidates"])
    paired = {r["item"] for r in auto_rows}
    ctx.progress(f"{len(auto_rows)} automatic + {len(human)} human preference pairs")
    return {
        "pairs": len(human) + len(auto_rows),
        "auto_pairs": len(auto_rows),
        "human_pairs": len(human),
        "unreadable_lines_dropped": torn,
        "flipped_pairs": sum(bool(r.get("flipped")) for r in auto_rows),
        "prompts": len(items),
        "prompts_by_split": dict(sorted(Counter(i["split"] for i in items).items())),
        "pairs_by_split": dict(sorted(Counter(r.get("split", "") for r in human + auto_rows).items())),
        "eval_prompts_by_split": dict(sorted(Counter(i["split"] for i in eval_items).items())),
        "split_by": "fact (entity, attribute, with its reverse); unseen entity",
        "overlap": overlap,
        "judge_check": judge_check,
        "unknown_entity_prompts": len(unknown),
        "candidates_per_prompt": lcfg.candidates,
        "candidate_verdicts": dict(sorted(reasons.items())),
        "sft_idk_share_on_unknown": round(idk_candidates / max(1, len(unknown) * lcfg.candidates), 4),
        "items_without_pairs": sum(1 for i in items if i["id"] not in paired) if auto_rows else None,
        "eval_prompts": len(eval_items),
        "annotator": lcfg.annotator,
        "noise": lcfg.noise,
        "noise_model": lcfg.noise_model,
    }
