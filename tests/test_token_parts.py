"""Parallel tokenization into memory-mapped parts, read back as one array; corrupt parts stop
or are skipped as configured; the tokens-per-parameter budget; the BPE trainer's sample budget."""
import json

import numpy as np
import pytest

from lmforge.config import TokenizerConfig, TrainConfig
from lmforge.data.shards import DocWriter
from lmforge.files import read_documents
from lmforge.tokenizer import Tokenizer, TokenizerError, TokenShards, load_split, write_token_parts
from lmforge.tokenizer.stage import training_sample
from lmforge.train.pretrain import planned_steps

from .conftest import lmforge


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(3)
    words = "the river flows north past old stone bridges where herons wait for fish at dawn".split()
    files = []
    for k in range(3):
        docs = [{"id": f"{k}-{i}", "text": " ".join(rng.choice(words, size=rng.integers(5, 40)))} for i in range(60)]
        files.append(root / f"clean-{k}.parquet")
        with DocWriter(files[-1]) as writer:
            for doc in docs:
                writer.write(doc)
    tokenizer = Tokenizer.train((" ".join(words) for _ in range(3)), TokenizerConfig(vocab_size=300, min_frequency=1))
    tokenizer.save(root / "tokenizer")
    return root, files, tokenizer


def test_parts_do_not_depend_on_workers_and_read_as_one_array(corpus, tmp_path):
    root, files, tokenizer = corpus
    one = write_token_parts(root / "tokenizer", files, tmp_path / "one", 0.1, seed=1, workers=1)
    two = write_token_parts(root / "tokenizer", files, tmp_path / "two", 0.1, seed=1, workers=2)
    timing = ("cpu_seconds", "documents_per_cpu_second")
    assert {k: v for k, v in one.items() if k not in timing} == {k: v for k, v in two.items() if k not in timing}
    assert len(one["parts"]) == 3 and one["dtype"] == "uint16" and one["documents_per_cpu_second"] > 0
    assert one["train_documents"] + one["val_documents"] == 180 and one["val_documents"] > 0
    for split in ("train", "val"):
        a, b = load_split(tmp_path / "one", split), load_split(tmp_path / "two", split)
        assert isinstance(a, TokenShards) and len(a) == one[f"{split}_tokens"]
        whole = np.concatenate([np.fromfile(tmp_path / "one" / p["dir"] / f"{split}.bin", dtype=np.uint16)
                                for p in one["parts"]])
        assert np.array_equal(np.asarray(a), whole) and np.array_equal(np.asarray(b), whole)
        # slices across part boundaries are the concatenation's
        for start in [0, int(a.starts[1]) - 3, int(a.starts[2]) - 1, len(a) - 5]:
            assert np.array_equal(a[start:start + 9], whole[start:start + 9])
    text = tokenizer.decode(np.asarray(load_split(tmp_path / "one", "train")).tolist())
    assert "herons" in text


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_corrupt_part_stops_or_is_skipped(corpus, tmp_path, damage):
    root, files, _ = corpus
    meta = write_token_parts(root / "tokenizer", files, tmp_path, 0.1, seed=1, workers=1)
    path = tmp_path / meta["parts"][1]["dir"] / "train.bin"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-3])
    else:
        path.unlink()
    with pytest.raises(TokenizerError) as err:
        load_split(tmp_path, "train")
    assert str(path) in str(err.value) and "corrupt" in str(err.value) and "\n" not in str(err.value)
    warnings = []
    shards = load_split(tmp_path, "train", on_corrupt="skip", warn=warnings.append)
    assert shards.skipped == [str(path)] and len(warnings) == 1 and str(path) in warnings[0]
    assert len(shards) == meta["train_tokens"] - meta["parts"][1]["train_tokens"]
    assert json.loads((tmp_path / "meta.json").read_text()) == meta     # nothing rewritten


def test_tokens_per_parameter_budget():
    cfg = TrainConfig(batch_size=4, grad_accum=2, seq_len=64, max_steps=7)
    assert planned_steps(cfg, 10_000, world_size=1) == 7                     # off: max_steps
    cfg.tokens_per_param = 20.0
    assert planned_steps(cfg, 10_000, world_size=1) == 391                   # ceil(200,000 / 512)
    assert planned_steps(cfg, 10_000, world_size=2) == 196                   # twice the tokens per step


def test_bpe_training_sample_spans_every_file_within_its_budget(corpus):
    root, files, _ = corpus
    every = [doc["text"] for f in files for doc in read_documents(f, columns=("text",))]
    assert list(training_sample(files, 0)) == every                      # 0: every document, in order
    assert list(training_sample(files, 10 * sum(map(len, every)))) == every     # a budget above the corpus
    budget = sum(map(len, every)) // 4
    sample = list(training_sample(files, budget))
    longest = max(map(len, every))
    assert budget <= sum(map(len, sample)) <= budget + len(files) * longest
    for f in files:       # each file gives its first documents, so the sample spans the corpus
        texts = [doc["text"] for doc in read_documents(f, columns=("text",))]
        taken = [t for t in sample if t in texts]
        assert 0 < len(taken) < len(texts) and taken == texts[:len(taken)]


def test_micro_tokenizer_reads_its_budget_only(micro_copy):
    whole = json.loads((micro_copy / "stages" / "tokenizer.json").read_text())["metrics"]
    assert whole["bpe_documents"] == whole["train_documents"] + whole["val_documents"] + whole["skipped_documents"]
    lmforge("run", "--run-dir", str(micro_copy), "--to", "tokenizer", "tokenizer.train_chars=20000")
    budgeted = json.loads((micro_copy / "stages" / "tokenizer.json").read_text())["metrics"]
    assert 0 < budgeted["bpe_documents"] < whole["bpe_documents"]
    assert 20_000 <= budgeted["bpe_chars"] < 40_000
    # the shards still hold every document: the budget bounds what the trainer reads, not the corpus
    assert budgeted["train_documents"] + budgeted["val_documents"] == whole["train_documents"] + whole["val_documents"]
