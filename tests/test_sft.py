"""Instruction tuning: synth data, the conversation policy for bad input, packing, the sft stage."""
import json
import re

import pytest
import torch

from lmforge.config import ModelConfig
from lmforge.files import read_jsonl
from lmforge.model import GPT
from lmforge.tokenizer import Tokenizer
from lmforge.train.sft import check_conversation, collate, load_examples, pack_rows, single_rows

from .conftest import lmforge

U = {"role": "user", "content": "Where did Ada come from?"}
A = {"role": "assistant", "content": "Ada came from Torvik."}
S = {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize("messages, reason", [
    ("not a list", "wrong_type"),
    ([], "wrong_type"),
    ([{"content": "hi"}, A], "missing_role"),
    ([{"role": "robot", "content": "hi"}, A], "unknown_role"),
    ([{"role": "user", "content": 5}, A], "wrong_type"),
    ([U, {"role": "assistant", "content": "   "}], "empty_assistant_turn"),
    ([U, U, A], "non_alternating"),
    ([A, U], "non_alternating"),
    ([U, S, A], "misplaced_system"),
    ([U], "no_assistant_turn"),
])
def test_bad_conversations_are_skipped_with_a_reason(messages, reason):
    cleaned, why, _ = check_conversation(messages)
    assert cleaned is None and why == reason


CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "7 + 5"}}}]}
RESULT = {"role": "tool", "name": "calculator", "content": "12"}
ANSWER = {"role": "assistant", "content": "7 + 5 = 12."}


@pytest.mark.parametrize("messages, reason", [
    ([U, RESULT, ANSWER], "non_alternating"),                 # a tool result nobody asked for
    ([U, CALL, U, ANSWER], "non_alternating"),                # a call answered by the user
    ([U, CALL, RESULT, U], None),            # the trailing user and tool turns are dropped, the rest kept
    ([U, {"role": "assistant", "content": None}], "wrong_type"),
    ([U, {**CALL, "tool_calls": "calculator"}], "wrong_type"),
])
def test_tool_conversations_follow_the_order_of_calls_and_results(messages, reason):
    cleaned, why, _ = check_conversation(messages)
    assert why == reason
    if reason is None:
        assert cleaned == [U, CALL]


def test_tool_rows_in_trl_format_load_and_results_are_never_learned(micro_run, tmp_path):
    tokenizer = Tokenizer.load(micro_run / "tokenizer")
    schema = {"type": "function", "function": {"name": "calculator", "parameters": {
        "type": "object", "properties": {"expression": {"type": "string"}}}}}
    path = tmp_path / "tools.jsonl"
    rows = [{"messages": [U, CALL, RESULT, ANSWER], "tools": [schema]},
            {"messages": [U, CALL, RESULT, ANSWER], "tools": json.dumps([schema])},     # tools as a JSON string
            {"messages": [U, CALL, RESULT]}]                                           # trailing tool turn: dropped
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    examples, stats = load_examples(path, tokenizer, max_tokens=400)
    assert stats["kept"] == 3 and stats["tool_use"] == 3 and stats["trimmed:trailing_user_or_tool_turn"] == 1
    ids, mask = examples[0]
    assert (ids, mask) == tuple(tokenizer.render_chat([U, CALL, RESULT, ANSWER], tools=[schema]))
    assert examples[1] == examples[0]
    learned = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert learned == '<|tool_call|>calculator {"expression": "7 + 5"}<|tool_call_end|>7 + 5 = 12.<|end|>'
    # a tokenizer from before tool use skips them, counted
    from lmforge.tokenizer import SPECIAL_TOKENS
    from tests.test_engine import TEXTS
    from lmforge.config import TokenizerConfig
    old = Tokenizer.train(TEXTS, TokenizerConfig(vocab_size=300), special_tokens=SPECIAL_TOKENS)
    _, old_stats = load_examples(path, old, max_tokens=400)
    assert old_stats["skipped:tool_use_without_tool_tokens"] == 3


def test_trailing_user_turn_is_dropped_not_the_conversation():
    cleaned, why, dropped = check_conversation([S, U, A, U])
    assert why is None and dropped and cleaned == [S, U, A]


def test_load_examples_counts_every_line(micro_run, tmp_path):
    tokenizer = Tokenizer.load(micro_run / "tokenizer")
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps({"messages": [U, A]}), "{not json", json.dumps({"prompt": "Hi?", "completion": "Hello."}),
             json.dumps({"prompt": [U], "completion": [A]}), json.dumps({"messages": [U, {"role": "bot",
             "content": "x"}]}), json.dumps({"text": "no messages"}), json.dumps([1, 2]),
             json.dumps({"messages": [U, {"role": "assistant", "content": "word " * 400}]})]
    path.write_text("\n".join(lines) + "\n")
    examples, stats = load_examples(path, tokenizer, max_tokens=65)
    assert len(examples) == 3 and stats["kept"] == 3
    assert stats["skipped:bad_json"] == 1 and stats["skipped:unknown_role"] == 1
    assert stats["skipped:no_messages_field"] == 1 and stats["skipped:wrong_type"] == 1
    assert stats["skipped:too_long"] == 1
    assert sum(v for k, v in stats.items() if k.startswith(("kept", "skipped"))) == len(lines)


def test_over_long_conversation_is_cut_after_a_whole_assistant_turn(micro_run, tmp_path):
    tokenizer = Tokenizer.load(micro_run / "tokenizer")
    long_answer = {"role": "assistant", "content": "word " * 200}
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"messages": [U, A, U, long_answer]}) + "\n")
    examples, stats = load_examples(path, tokenizer, max_tokens=65)
    assert stats["truncated:too_long"] == 1
    ids, mask = examples[0]
    assert ids == tokenizer.render_chat([U, A])[0] and ids[-1] == tokenizer.end_id and mask[-1] == 1


def test_packed_loss_equals_separate_losses():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=40, seq_len=64, n_layer=2, n_head=2, d_model=32)).eval()
    a = ([1, 7, 8, 9, 10, 2], [0, 0, 1, 1, 1, 1])
    b = ([1, 11, 12, 13, 2], [0, 0, 0, 1, 1])
    packed = collate(pack_rows([a, b], row_len=16, pad_id=5), pad_id=5, device="cpu")
    separate = [collate(single_rows([e]), pad_id=5, device="cpu") for e in (a, b)]
    with torch.no_grad():
        _, loss = model(packed["x"], targets=packed["y"], loss_mask=packed["loss_mask"],
                        segment_ids=packed["segment_ids"])
        sums = [model(s["x"], targets=s["y"], loss_mask=s["loss_mask"])[1] * s["n_items"] for s in separate]
    assert packed["n_items"] == sum(s["n_items"] for s in separate) == 6
    assert torch.allclose(loss * packed["n_items"], sum(sums), atol=1e-5)


def test_synth_data_never_mentions_held_out_facts(micro_run):
    conversations = read_jsonl(micro_run / "datasets" / "sft.jsonl")
    assert conversations and all(c["messages"][-1]["role"] == "assistant" for c in conversations)
    languages = {json.loads(line)["language"] for line in
                 (micro_run / "data" / "world" / "facts.jsonl").read_text().splitlines()}
    assert languages == {"en", "nb"}
    text = "\n".join(m["content"] for c in conversations for m in c["messages"])
    held = [r for r in read_jsonl(micro_run / "datasets" / "sft_eval.jsonl") if r["split"] == "held_out"]
    assert held
    for fact in held:
        assert fact["question"] not in text and fact["answer"] not in text
    # unseen entities: none of train/dev/test anywhere; the reserved ones (the lookup tool's training
    # entities) only in lookup conversations, whose answers come from the tool's results
    facts = read_jsonl(micro_run / "data" / "world" / "facts.jsonl")
    plain = "\n".join(m["content"] for c in conversations if "tools" not in c for m in c["messages"])
    reserved = 0
    for fact in facts:
        if fact["held_out"]:     # as a whole word: a test entity "Sigrid Ekre" beside a reserved "Sigrid Ekresen"
            named = re.compile(rf"\b{re.escape(fact['entity'])}\b")
            assert not named.search(plain if fact.get("unseen_split") == "reserved" else text), fact["entity"]
            reserved += fact.get("unseen_split") == "reserved" and bool(named.search(text))
    assert reserved > 0


def test_sft_manifest_reports_quality_and_batching(micro_run):
    m = json.loads((micro_run / "stages" / "sft.json").read_text())["metrics"]
    for key in ("trained_fact_accuracy", "held_out_fact_accuracy", "end_rate", "batching", "padding_fraction",
                "tokens_per_second", "examples"):
        assert key in m
    assert m["batching"] == "packed" and 0 <= m["padding_fraction"] < 1
    assert "## SFT: the chat model" in (micro_run / "report" / "report.md").read_text()
    # the lookup figure on unseen test entities, and its split into number and word answers
    f = m["figures"]
    whole, number, word = (f[f"unseen_test{kind}_correct_with_lookup"] for kind in ("", "_number", "_word"))
    assert number["n"] > 0 and word["n"] > 0
    assert (number["n"] + word["n"], number["k"] + word["k"]) == (whole["n"], whole["k"])


def test_value_kind():
    from lmforge.evals.chat import value_kind
    assert [value_kind(v) for v in ("1752", "536 km", "29 år", "Ulhavn", "sailor", "")] == \
        ["number", "number", "number", "word", "word", "word"]


def test_zero_valid_conversations_stop_with_one_line(micro_copy, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    proc = lmforge("sft", "--run-dir", str(micro_copy), f"sft.data_path={bad}", check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no valid conversations" in lines[0] and "bad_json=1" in lines[0]


def test_padding_mode_trains_too(micro_copy):
    lmforge("sft", "--run-dir", str(micro_copy), "sft.packing=false", "sft.max_steps=4")
    m = json.loads((micro_copy / "stages" / "sft.json").read_text())["metrics"]
    assert m["batching"] == "padded" and m["steps"] == 4
