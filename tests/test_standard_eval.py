"""`lmforge eval`: the multiple-choice scorer against a hand computation on a toy model, the
official formats (fixtures in tests/fixtures/evals), one-line schema errors, GSM8K answer
extraction, and the command on the micro run with its report-card section."""
import json
import math
from types import SimpleNamespace

import pytest
import torch

from lmforge.config import TokenizerConfig, load_config
from lmforge.evals.standard import (EvalDataError, choice_scores, extract_answer, read_task, report_section,
                                    score_choice_task)
from lmforge.rundir import RunDir
from lmforge.tokenizer import Tokenizer

from .conftest import ROOT, lmforge

FIXTURES = ROOT / "tests" / "fixtures" / "evals"


class Bigram(torch.nn.Module):
    """A toy language model: the next token's logits depend on the current token only."""

    def __init__(self, vocab: int, seq_len: int, zero: bool = False):
        super().__init__()
        table = torch.zeros(vocab, vocab) if zero else torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0))
        self.table = torch.nn.Parameter(table)
        self.cfg = SimpleNamespace(seq_len=seq_len)

    def forward(self, idx):
        return self.table[idx]


@pytest.fixture(scope="module")
def tokenizer():
    texts = [json.dumps(json.loads(line)) for path in FIXTURES.glob("*.jsonl") for line in path.open()] * 3
    return Tokenizer.train(texts, TokenizerConfig(vocab_size=300, min_frequency=1))


def by_hand(table: torch.Tensor, context: list[int], continuation: list[int], seq_len: int) -> float:
    """log p(continuation | context) from the bigram table with plain math, one token at a time."""
    rows = table.tolist()
    tokens = (context + continuation)[-(seq_len + 1):]
    scored = min(len(continuation), len(tokens) - 1)    # the first token has nothing before it
    total = 0.0
    for j in range(len(tokens) - scored, len(tokens)):
        prev, nxt = tokens[j - 1], tokens[j]
        total += rows[prev][nxt] - math.log(sum(math.exp(v) for v in rows[prev]))
    return total


@pytest.mark.parametrize("seq_len", [256, 24])     # 24: long contexts are cut on the left
def test_scorer_matches_a_hand_computation(tokenizer, seq_len):
    model = Bigram(tokenizer.vocab_size, seq_len)
    for task, per_byte in [("hellaswag", True), ("arc_easy", False), ("arc_challenge", False), ("mmlu", False)]:
        path = {"hellaswag": "hellaswag_val.jsonl", "arc_easy": "ARC-Easy-Test.jsonl",
                "arc_challenge": "ARC-Challenge-Test.jsonl", "mmlu": "mmlu/test"}[task]
        items = read_task(task, FIXTURES / path)
        scores = choice_scores(model, tokenizer, items, batch_size=5, per_byte=per_byte)
        right = 0
        for item, row in zip(items, scores):
            context = [tokenizer.bos_id] + tokenizer.encode(item.context)
            hand = []
            for choice in item.choices:
                lp = by_hand(model.table.detach(), context, tokenizer.encode(choice), seq_len)
                hand.append(lp / len(choice.encode("utf-8")) if per_byte else lp)
            assert row == pytest.approx(hand, rel=1e-5, abs=1e-5), (task, item.context)
            right += max(range(len(hand)), key=hand.__getitem__) == item.label
        result = score_choice_task(model, tokenizer, items, batch_size=3, per_byte=per_byte)
        assert (result["k"], result["n"]) == (right, len(items)), task
        chance = sum(1 / len(i.choices) for i in items) / len(items)
        assert result["centred"] == pytest.approx((right / len(items) - chance) / (1 - chance), abs=1e-4)


def test_a_uniform_model_scores_minus_log_vocab_per_token(tokenizer):
    """By hand: every token costs ln V nats, so a choice's sum is -(its tokens) x ln V."""
    model = Bigram(tokenizer.vocab_size, 64, zero=True)
    items = read_task("mmlu", FIXTURES / "mmlu" / "test")[:2]
    for item, row in zip(items, choice_scores(model, tokenizer, items, 4, per_byte=False)):
        for choice, score in zip(item.choices, row):
            assert score == pytest.approx(-len(tokenizer.encode(choice)) * math.log(tokenizer.vocab_size), rel=1e-6)


def test_official_formats_read():
    assert [len(read_task(t, FIXTURES / p)) for t, p in [
        ("hellaswag", "hellaswag_val.jsonl"), ("arc_easy", "ARC-Easy-Test.jsonl"),
        ("arc_challenge", "ARC-Challenge-Test.jsonl"), ("mmlu", "mmlu/test"), ("gsm8k", "gsm8k/test.jsonl")]] \
        == [4, 4, 3, 5, 4]
    arc = read_task("arc_easy", FIXTURES / "ARC-Easy-Test.jsonl")
    assert arc[2].choices[arc[2].label] == " ice"           # numeric labels "1".."4"
    hs = read_task("hellaswag", FIXTURES / "hellaswag_val.jsonl")
    assert "[" not in hs[2].context + "".join(hs[2].choices)  # WikiHow markers removed
    mmlu = read_task("mmlu", FIXTURES / "mmlu" / "test")
    assert mmlu[0].context.startswith("The following are multiple choice questions (with answers) about astronomy.")
    assert mmlu[0].choices == [" A", " B", " C", " D"] and mmlu[0].label == 3
    assert [p.answer for p in read_task("gsm8k", FIXTURES / "gsm8k" / "test.jsonl")] == ["7", "36", "12", "2400"]


@pytest.mark.parametrize("task,content,field", [
    ("hellaswag", '{"ctx": "a", "label": 0}\n', "endings"),
    ("arc_easy", '{"question": {"stem": "q", "choices": [{"text": "a", "label": "A"}]}}\n', "answerKey"),
    ("arc_challenge", '{"question": "q", "answerKey": "A"}\n', "choices"),
    ("gsm8k", '{"question": "q"}\n', "answer"),
    ("mmlu", "q,1,2,3,4\n", "answer"),
])
def test_a_wrong_schema_is_one_line_naming_the_field(tmp_path, task, content, field):
    path = tmp_path / ("bad" if task == "mmlu" else "bad.jsonl")
    if task == "mmlu":
        path.mkdir()
        (path / "x_test.csv").write_text(content)
    else:
        path.write_text(content)
    with pytest.raises(EvalDataError) as err:
        read_task(task, path)
    assert f"missing field '{field}'" in str(err.value) and "\n" not in str(err.value)


def test_gsm8k_answers_are_extracted():
    assert extract_answer(" 3 + 4 = 7 apples.\n#### 7") == "7"
    assert extract_answer(" They sell 1,200 eggs, so 2,400 in all.") == "2400"
    assert extract_answer(" #### 12.50") == "12.5"
    assert extract_answer(" no number") == ""


def test_lmforge_eval_on_the_micro_run(micro_copy, tmp_path):
    lmforge("eval", "--run-dir", str(micro_copy), "--stage", "pretrain", f"eval.data_dir={FIXTURES}",
            "eval.gsm8k_max_new_tokens=16", "eval.bpb_windows=8")
    results = json.loads((micro_copy / "evals" / "pretrain.json").read_text())
    assert results["skipped"] == {}
    sizes = {t: v["n"] for t, v in results["tasks"].items() if t != "bpb"}
    assert sizes == {"hellaswag": 4, "arc_easy": 4, "arc_challenge": 3, "mmlu": 5, "gsm8k": 4}
    for task, value in results["tasks"].items():
        if task != "bpb":
            assert value["low"] <= value["rate"] <= value["high"], task
    assert 0 < results["tasks"]["bpb"]["bpb"] < 8
    assert results["core_centred_average"]["tasks"] == 4
    card = report_section(RunDir(micro_copy), load_config("micro"))
    assert "Standard benchmarks" in card and "hellaswag" in card and "CORE-style" in card

    bad = tmp_path / "hellaswag.jsonl"
    bad.write_text('{"ctx": "a", "endings": ["b", "c"]}\n')
    proc = lmforge("eval", "--run-dir", str(micro_copy), f"eval.tasks=hellaswag={bad}", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"lmforge: {bad}:1: missing field 'label'"
