"""Supervised fine-tuning: turn the base model into an assistant on question–answer conversations.

    lmforge sft --run-dir runs/tiny                       # after synth; warm-starts from models/pretrain
    lmforge sft --run-dir runs/tiny sft.data_path=my_chats.jsonl sft.packing=false

Data: datasets/sft.jsonl from `lmforge synth`, or your own JSONL/Parquet in the messages
format ({"messages": [{"role", "content"}, ...]}) or the prompt/completion format
({"prompt": str | messages, "completion": str | messages}). Rows in TRL's tool-calling
format load too: assistant turns with `tool_calls`, `tool` turns with the results and a
`tools` column of JSON schemas (a list, or a JSON string). Loss falls only on what the
assistant says, its tool calls included, and the <|end|> closing its answer, never on tool
results (tokenizer.render_chat's mask, lmforge/chat_format.py), so the model learns to stop.

Bad conversations are never fatal. The policy, counted per reason in the manifest:
  - not a list of {"role", "content"} dicts, a role other than system/user/assistant/tool,
    content that is not a string, a system turn after the first, turns out of order (user,
    then assistant; a tool turn only after an assistant turn with tool calls or another tool
    turn; after tool turns the assistant), an empty assistant turn without tool calls, no
    assistant turn at all, tool turns with a tokenizer from before tool use → skipped;
  - a trailing user turn with no answer, or trailing tool turns → dropped (the rest is kept);
  - longer than seq_len → cut after the last whole assistant turn that fits, skipped
    when not even the first one fits.
Zero valid conversations stops the stage with one line.

Batches: with `sft.packing` (default) conversations are packed greedily into rows of
seq_len tokens; segment ids keep attention and RoPE positions inside each conversation,
so packing changes nothing the model sees, it only stops paying for padding. With
packing off, each conversation is one row, padded to the longest row of its batch.
The manifest records the choice, the tokens/s and the share of computed tokens that
were padding. `sft.pretrain_mix` adds that fraction of rows of pretraining text.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..tasks.synth import sft_overlap
from ..tasks.tool_data import tools_of
from ..world import read_facts
from ..device import all_reduce_sums, pick_device, set_threads
from ..evals.chat import lookup_evaluation, sft_evaluation
from ..evals.judge import load_index
from ..files import read_jsonl
from ..checkpoints import load_model, save_model
from ..errors import StageError
from ..rundir import StageContext
from ..tokenizer import Tokenizer, TokenizerError, load_split
from ..tools.registry import ToolBox, ToolError
from .loop import Trainer, budget_line, budget_metrics

ROLES = ("system", "user", "assistant", "tool")


# ---------------------------------------------------------------- reading and checking conversations

def read_rows(path: Path, stats: Counter):
    """Rows of a JSONL or Parquet file; a line that is not JSON is counted, not fatal."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        for row in pq.read_table(path).to_pylist():
            yield row
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                stats["skipped:bad_json"] += 1


def to_messages(row) -> tuple[list | None, str | None]:
    """Messages from either accepted format, or (None, reason)."""
    if not isinstance(row, dict):
        return None, "wrong_type"
    if "messages" in row:
        return row["messages"], None
    if "prompt" in row and "completion" in row:
        prompt, completion = row["prompt"], row["completion"]
        prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        completion = [{"role": "assistant", "content": completion}] if isinstance(completion, str) else completion
        if not isinstance(prompt, list) or not isinstance(completion, list):
            return None, "wrong_type"
        return prompt + completion, None
    return None, "no_messages_field"


def _clean_message(message: dict) -> dict | None:
    """{"role", "content"} (+ "tool_calls" on an assistant turn), or None when malformed."""
    calls = message.get("tool_calls") if message["role"] == "assistant" else None
    content = message.get("content")
    if content is None and calls:
        content = ""
    if not isinstance(content, str) or (calls is not None and not isinstance(calls, list)):
        return None
    cleaned = {"role": message["role"], "content": content}
    if calls:
        cleaned["tool_calls"] = calls
    return cleaned


def check_conversation(messages) -> tuple[list | None, str | None, bool]:
    """(cleaned messages, reason it was skipped, whether trailing user or tool turns were dropped)."""
    if not isinstance(messages, list) or not messages:
        return None, "wrong_type", False
    cleaned = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            return None, "missing_role", False
        if message["role"] not in ROLES:
            return None, "unknown_role", False
        message = _clean_message(message)
        if message is None:
            return None, "wrong_type", False
        cleaned.append(message)
    body = cleaned[1:] if cleaned[0]["role"] == "system" else cleaned
    if any(m["role"] == "system" for m in body):
        return None, "misplaced_system", False
    dropped = False
    while body and body[-1]["role"] in ("user", "tool"):
        body, dropped = body[:-1], True
    if not body:
        return None, "no_assistant_turn", False
    previous = None
    for message in body:
        role = message["role"]
        if previous is None:
            allowed = ("user",)
        elif previous["role"] == "assistant":    # a call is answered by its tool, an answer by the user
            allowed = ("tool",) if "tool_calls" in previous else ("user",)
        else:
            allowed = {"user": ("assistant",), "tool": ("tool", "assistant")}[previous["role"]]
        if role not in allowed:
            return None, "non_alternating", False
        if role == "assistant" and not message["content"].strip() and "tool_calls" not in message:
            return None, "empty_assistant_turn", False
        previous = message
    system = [cleaned[0]] if cleaned[0]["role"] == "system" else []
    return system + body, None, dropped


def encode_conversation(tokenizer: Tokenizer, messages: list, max_tokens: int,
                        tools: list | None = None) -> tuple[list, list, bool] | None:
    """ids and loss mask, cut after the last whole assistant turn that fits in max_tokens."""
    ids, mask = tokenizer.render_chat(messages, tools=tools)
    if len(ids) <= max_tokens:
        return ids, mask, False
    for end in range(len(messages) - 1, 0, -1):
        if messages[end]["role"] == "assistant":
            ids, mask = tokenizer.render_chat(messages[:end + 1], tools=tools)
            if len(ids) <= max_tokens:
                return ids, mask, True
    return None


def load_examples(path: Path, tokenizer: Tokenizer, max_tokens: int) -> tuple[list, Counter]:
    stats: Counter = Counter()
    examples = []
    for row in read_rows(path, stats):
        messages, reason = to_messages(row)
        if reason is None:
            messages, reason, dropped = check_conversation(messages)
            if dropped:
                stats["trimmed:trailing_user_or_tool_turn"] += 1
        tools = tools_of(row)
        uses_tools = reason is None and (tools or any(m["role"] == "tool" or "tool_calls" in m for m in messages))
        if uses_tools and not tokenizer.has_tools:
            reason = "tool_use_without_tool_tokens"
        if reason is not None:
            stats[f"skipped:{reason}"] += 1
            continue
        try:
            encoded = encode_conversation(tokenizer, messages, max_tokens, tools)
        except TokenizerError:
            stats["skipped:bad_tool_call"] += 1
            continue
        if encoded is not None and uses_tools:
            stats["tool_use"] += 1
        if encoded is None:
            stats["skipped:too_long"] += 1
            continue
        ids, mask, truncated = encoded
        stats["kept"] += 1
        if truncated:
            stats["truncated:too_long"] += 1
        examples.append((ids, mask))
    return examples, stats


# ---------------------------------------------------------------- rows: packed or padded

def pack_rows(examples: list, row_len: int, pad_id: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Greedy packing into rows of row_len tokens: (ids, loss mask, segment ids)."""
    rows, ids, mask, seg = [], [], [], []

    def close():
        fill = row_len - len(ids)
        rows.append((np.array(ids + [pad_id] * fill), np.array(mask + [0] * fill),
                     np.array(seg + [-1] * fill)))
    for example_ids, example_mask in examples:
        if ids and len(ids) + len(example_ids) > row_len:
            close()
            ids, mask, seg = [], [], []
        segment = len(set(seg))
        ids += example_ids
        mask += example_mask
        seg += [segment] * len(example_ids)
    if ids:
        close()
    return rows


def single_rows(examples: list) -> list[tuple[np.ndarray, np.ndarray, None]]:
    return [(np.array(ids), np.array(mask), None) for ids, mask in examples]


def pretrain_rows(tokens: np.ndarray, count: int, row_len: int, seed: int) -> list:
    """Windows of pretraining text, loss on every token: keeps the base model's knowledge fresh."""
    if count == 0 or len(tokens) <= row_len:
        return []
    offsets = np.random.default_rng(seed).integers(0, len(tokens) - row_len, size=count)
    return [(tokens[o:o + row_len].astype(np.int64), np.ones(row_len, dtype=np.int64),
             np.zeros(row_len, dtype=np.int64)) for o in offsets]


def collate(rows: list, pad_id: int, device) -> dict:
    """A batch from rows; inputs are row[:-1], targets row[1:], masked where the loss must not fall."""
    length = max(len(r[0]) for r in rows)
    ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    packed = rows[0][2] is not None
    seg = np.full((len(rows), length), -1, dtype=np.int64) if packed else None
    for i, (row_ids, row_mask, row_seg) in enumerate(rows):
        ids[i, :len(row_ids)], mask[i, :len(row_mask)] = row_ids, row_mask
        if packed:
            seg[i, :len(row_seg)] = row_seg
    x, y = torch.from_numpy(ids[:, :-1]), torch.from_numpy(ids[:, 1:])
    label = torch.from_numpy(mask[:, 1:])
    batch = {"x": x.to(device), "y": y.to(device)}
    if packed:
        s = torch.from_numpy(seg)
        label = label * (s[:, 1:] == s[:, :-1])     # never predict across a conversation boundary
        batch["segment_ids"] = s[:, :-1].to(device)
    batch["loss_mask"] = label.to(device)
    batch["n_items"] = int(label.sum())
    batch["n_computed"] = int(x.numel())
    batch["n_real"] = int((torch.from_numpy(ids[:, :-1]) != pad_id).sum()) if not packed else \
        int((batch["segment_ids"] >= 0).sum())
    return batch


def masked_loss_sum(model, batch) -> torch.Tensor:
    _, loss = model(batch["x"], targets=batch["y"], loss_mask=batch["loss_mask"],
                    segment_ids=batch.get("segment_ids"), need_logits=False)
    return loss * max(batch["n_items"], 1)


def row_batch_fn(rows: list, batch_size: int, grad_accum: int, seed: int, pad_id: int, device,
                  collate_fn=collate):
    """Rows in a fresh seeded order each epoch; the batch is a pure function of the step.
    (The preference stages reuse it with their own collate_fn.)"""
    orders: dict[int, np.ndarray] = {}

    def order(epoch: int) -> np.ndarray:
        if epoch not in orders:
            orders.clear()
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(len(rows))
        return orders[epoch]

    def batch_fn(step: int, micro: int, rank: int, world_size: int) -> dict:
        per_step = batch_size * grad_accum * world_size
        first = step * per_step + (micro * world_size + rank) * batch_size
        picked = []
        for position in range(first, first + batch_size):
            epoch, index = divmod(position, len(rows))
            picked.append(rows[order(epoch)[index]])
        return collate_fn(picked, pad_id, device)
    return batch_fn


def make_eval_fn(rows: list, batch_size: int, pad_id: int, device, rank: int, world_size: int):
    mine = rows[rank::world_size]

    def eval_fn(model) -> float:
        total, items = 0.0, 0
        for i in range(0, len(mine), batch_size):
            batch = collate(mine[i:i + batch_size], pad_id, device)
            total += float(masked_loss_sum(model, batch))
            items += batch["n_items"]
        total, items = all_reduce_sums(total, items)
        return total / max(items, 1)
    return eval_fn


def is_validation(ids: list, fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}:".encode() + np.asarray(ids, dtype=np.int64).tobytes()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


# ---------------------------------------------------------------- the stage

def run_stage(ctx: StageContext) -> dict:
    cfg, run = ctx.cfg, ctx.run
    scfg = cfg.sft
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    data_path = Path(scfg.data_path) if scfg.data_path else run.path("datasets", "sft.jsonl")
    if not data_path.exists():
        raise StageError(f"{data_path} does not exist; run `lmforge synth` or set sft.data_path")
    row_len = scfg.seq_len + 1
    examples, stats = load_examples(data_path, tokenizer, row_len)
    if not examples:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "the file is empty"
        raise StageError(f"no valid conversations in {data_path} ({reasons})")
    train_examples = [e for e in examples if not is_validation(e[0], scfg.val_fraction, cfg.run.seed)]
    val_examples = [e for e in examples if is_validation(e[0], scfg.val_fraction, cfg.run.seed)] or examples[:1]
    random.Random(cfg.run.seed).shuffle(train_examples)
    build = (lambda ex: pack_rows(ex, row_len, tokenizer.pad_id)) if scfg.packing else single_rows
    train_rows, val_rows = build(train_examples), build(val_examples)
    mixed = 0
    if scfg.pretrain_mix > 0:
        tokens = load_split(run.tokens_dir, "train")
        mixed = int(len(train_rows) * scfg.pretrain_mix / (1 - scfg.pretrain_mix))
        extra = pretrain_rows(tokens, mixed, row_len, cfg.run.seed)
        if not scfg.packing:
            extra = [(ids, mask, None) for ids, mask, _ in extra]
        train_rows += extra

    set_threads(cfg.run.threads)
    device = pick_device(cfg.run.device)
    model = load_model(run.model_dir("pretrain"), device=device)
    trainer = Trainer(model, scfg, out_dir=run.model_dir("sft"), log_path=run.log_path("sft"), seed=cfg.run.seed,
                      device=device, flops_per_item=None, save_fn=save_model, stage="sft")
    ctx.progress(f"{len(train_examples):,} train / {len(val_examples):,} val conversations in {len(train_rows):,} "
                 f"{'packed' if scfg.packing else 'padded'} rows ({dict(stats)})")
    batch_fn = row_batch_fn(train_rows, scfg.batch_size, scfg.grad_accum, cfg.run.seed, tokenizer.pad_id,
                             trainer.device)
    eval_fn = make_eval_fn(val_rows, scfg.batch_size, tokenizer.pad_id, trainer.device, trainer.rank,
                           trainer.world_size)
    result = trainer.fit(batch_fn, masked_loss_sum, eval_fn, resume=ctx.resume)
    if not trainer.is_main:
        return {}
    # What share of the computed positions was padding, over the batches actually trained on.
    computed = real = labels = 0
    for step in range(min(result.steps, 50)):
        batch = batch_fn(step, 0, 0, 1)
        computed, real, labels = computed + batch["n_computed"], real + batch["n_real"], labels + batch["n_items"]

    best = load_model(run.model_dir("sft"), device=trainer.device)
    facts_path = run.world_dir / "facts.jsonl"
    index = load_index(facts_path) if facts_path.exists() else None
    eval_path = run.path("datasets", "sft_eval.jsonl")
    evaluation = sft_evaluation(best, tokenizer, eval_path, scfg.eval_limit, index)
    tool_use = tool_evaluation(run, cfg, best, tokenizer, index, trained_tools=stats["tool_use"] > 0)
    if tool_use:
        evaluation["figures"].update(tool_use.pop("figures"))
        evaluation["tool_use"] = tool_use
        ctx.progress("tool use: " + ", ".join(f"{k} {v['rate']:.1%}" for k, v in evaluation["figures"].items()
                                              if k.startswith(("unseen", "unanswerable", "malformed"))))
    overlap = training_overlap(run, data_path, eval_path, facts_path)
    ctx.progress(f"val loss {result.best_val_loss:.3f} (dev: val conversations); trained facts "
                 f"{evaluation['trained_fact_accuracy']:.1%}, held-out facts {evaluation['held_out_fact_accuracy']:.1%} "
                 f"(test; dev {evaluation['held_out_fact_accuracy_dev']:.1%}), "
                 f"ends with <|end|> {evaluation['end_rate']:.1%}; {budget_line(result)}")
    return {
        **{k: v for k, v in evaluation.items() if k != "examples"},
        "val_loss": round(result.best_val_loss, 4),
        **budget_metrics(result),
        "label_tokens_seen": result.items_seen,
        "label_tokens_per_second": result.items_per_second,
        "tokens_per_second": round(result.items_per_second * computed / max(labels, 1), 1),   # incl. padding
        "batching": "packed" if scfg.packing else "padded",
        "padding_fraction": round(1 - real / max(computed, 1), 4),
        "pretrain_rows_mixed": mixed,
        "data": str(data_path),
        "examples": dict(sorted(stats.items())),
        "train_conversations": len(train_examples),
        "val_conversations": len(val_examples),
        "selection_split": "dev: the validation conversations (checkpoint); held-out facts dev (settings)",
        "overlap": overlap,
    }


def tool_evaluation(run, cfg, model, tokenizer, index, trained_tools: bool) -> dict:
    """Unseen-entity questions without tools, and, when the model trained on tool use and the run
    has a lookup index, with the built-in tools offered as synth offered them (evals/chat.py)."""
    path = run.path("datasets", "lookup_eval.jsonl")
    if not path.exists():
        return {}
    box = None
    if trained_tools and tokenizer.has_tools:
        try:
            box = ToolBox.from_config(["calculator", "lookup"], run, cfg.tools)
        except ToolError:
            box = None      # no index (the index stage did not run): without tools only
    try:
        return lookup_evaluation(model, tokenizer, path, cfg.sft.eval_limit, box, index)
    finally:
        if box is not None:
            box.close()


def training_overlap(run, data_path: Path, eval_path: Path, facts_path: Path) -> dict:
    """What the conversations trained on (whatever file they came from) share with the held-out
    facts, unseen entities and reasoning chains, counted from their text (data/synth.sft_overlap)."""
    if not facts_path.exists() or not eval_path.exists():
        return {}
    conversations = []
    for row in read_rows(data_path, Counter()):
        messages, reason = to_messages(row)
        if reason is None and isinstance(messages, list):
            conversations.append({"messages": [m for m in messages if isinstance(m, dict)
                                               and isinstance(m.get("content"), str) and "role" in m]})
    held = [r for r in read_jsonl(eval_path) if r["split"] == "held_out"]
    return sft_overlap(run, conversations, held, read_facts(facts_path))

