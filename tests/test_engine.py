"""Tests for the generation engine in lmforge/engine/: continuous batching equals one row at a
time, seeds, min-p, stop strings, streaming whole characters, cancellation, the background engine.

Also holds the small builders (a random model, a tiny tokenizer, a tiny run folder) that the
other engine / serve / export / chat tests import.
"""
import contextlib
import threading

import pytest
import torch

from lmforge.config import ModelConfig, TokenizerConfig
from lmforge.engine import (BackgroundEngine, Engine, SamplingParams, Sequence, TextStream, draw, generate,
                            next_token_probs, stream)
from lmforge.checkpoints import save_model
from lmforge.model import GPT
from lmforge.tokenizer import Tokenizer

VOCAB = 97

TEXTS = ["Ada Berg was born in Tromsø in 1901. Hun bodde på en gård ved fjorden.",
         "The quick brown fox jumps over the lazy dog. Blåbærsyltetøy er godt!",
         "Nikola Tesla invented the induction motor. 12 + 30 = 42. Æ ø å Æ Ø Å ☕ 🙂"] * 20


@contextlib.contextmanager
def one_torch_thread():
    """Tiny models are all per-op overhead: a second thread only adds synchronization, and on a
    shared 2-core machine oversubscription makes it many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    with one_torch_thread():
        yield


def make_model(seed=0, vocab=VOCAB, **overrides) -> GPT:
    torch.manual_seed(seed)
    # init_std well above training's so greedy choices are not near-ties
    cfg = dict(vocab_size=vocab, seq_len=64, n_layer=2, n_head=4, n_kv_head=2, d_model=32, init_std=0.3)
    cfg.update(overrides)
    return GPT(ModelConfig(**cfg)).eval()


def make_tokenizer() -> Tokenizer:
    return Tokenizer.train(TEXTS, TokenizerConfig(vocab_size=300, min_frequency=2))


def make_run(root, stages=("pretrain",), seq_len=64, **model_overrides):
    """A run folder with a tokenizer and a random model per stage, each with a done manifest."""
    from lmforge.rundir import RunDir
    run = RunDir(root)
    tokenizer = make_tokenizer()
    tokenizer.save(run.tokenizer_dir, model_max_length=seq_len)
    for i, stage in enumerate(stages):
        model = make_model(seed=i, vocab=tokenizer.vocab_size, seq_len=seq_len, **model_overrides)
        save_model(model, run.model_dir(stage))
        run.write_manifest(stage, {"stage": stage, "status": "done", "output_id": f"x{i}"})
    return run, tokenizer


def prompt(n, seed):
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


# ---------------------------------------------------------------- continuous batching

def test_continuous_batching_equals_each_row_alone():
    model = make_model()
    prompts = [prompt(n, s) for s, n in enumerate((5, 9, 2, 14, 7, 3, 20))]
    alone = [generate(model, [p], max_new_tokens=25)[0].tokens for p in prompts]
    # three rows and a cache too short for everyone at once: rows join mid-decode, prompts
    # longer than the current position shift rows right, overflow shifts them left, some wait
    engine = Engine(model, max_batch=3, max_len=56)
    seqs = []
    for i, p in enumerate(prompts):
        seqs.append(engine.submit(Sequence(p, SamplingParams(max_tokens=25))))
        for _ in range(i % 3):
            engine.step()
    while engine.step():
        pass
    assert [s.tokens for s in seqs] == alone
    assert all(s.finish_reason == "length" for s in seqs)


def test_seeded_rows_are_the_same_alone_or_batched():
    model = make_model()
    prompts = [prompt(6, 1), prompt(3, 2), prompt(11, 3)]
    kwargs = dict(max_new_tokens=15, temperature=1.0, top_k=30, top_p=0.95, min_p=0.01)
    batched = generate(model, prompts, seed=7, **kwargs)
    assert batched == generate(model, prompts, seed=7, **kwargs)
    for i, p in enumerate(prompts):
        assert generate(model, [p], seed=7 + i, **kwargs)[0] == batched[i]
    assert batched != generate(model, prompts, seed=8, **kwargs)


def test_min_p_and_draw():
    logits = torch.tensor([[0.0, -1.0, -5.0, 2.0]])
    probs = next_token_probs(logits, 1.0, min_p=0.2)
    full = torch.softmax(logits, -1)[0]
    keep = full >= 0.2 * full.max()
    assert (probs[0] > 0).tolist() == keep.tolist()
    torch.testing.assert_close(probs[0], torch.where(keep, full, 0) / full[keep].sum())
    # inverse-CDF draws follow the distribution and never pick a zero-probability id
    many = probs.repeat(4000, 1)
    ids = draw(many, torch.rand(4000, generator=torch.Generator().manual_seed(0)))
    freq = torch.bincount(ids, minlength=4).float() / 4000
    torch.testing.assert_close(freq, probs[0], atol=0.03, rtol=0)
    assert draw(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([0.0])).tolist() == [1]
    assert draw(torch.tensor([[0.5, 0.5, 0.0]]), torch.tensor([0.9999999])).tolist() == [1]


# ---------------------------------------------------------------- text, stop strings, streaming

def test_stop_strings_cut_the_text():
    tokenizer = make_tokenizer()
    model = make_model(vocab=tokenizer.vocab_size)
    ids = [tokenizer.bos_id] + tokenizer.encode("Ada Berg was")
    free = generate(model, [ids], max_new_tokens=30, tokenizer=tokenizer)[0]
    assert free.text == tokenizer.decode(free.tokens)
    stop = free.text[5:8]
    cut = generate(model, [ids], max_new_tokens=30, tokenizer=tokenizer, stop=(stop, "never-there"))[0]
    assert cut.finish_reason == "stop" and cut.text == free.text[:free.text.index(stop)]
    assert free.tokens[:len(cut.tokens)] == cut.tokens


def byte_token(tokenizer, value: bytes) -> int:
    return next(i for i in range(tokenizer.vocab_size) if tokenizer.token_bytes(i) == value)


def test_text_stream_holds_split_characters_and_stop_prefixes():
    tokenizer = make_tokenizer()
    coffee = "☕".encode()   # three bytes, fed as three single-byte tokens
    parts = TextStream(tokenizer)
    assert [parts.push(byte_token(tokenizer, coffee[i:i + 1])) for i in range(3)] == ["", "", "☕"]
    held = TextStream(tokenizer, stop=["ab", "X"])
    assert held.push(byte_token(tokenizer, b"z")) == "z"
    assert held.push(byte_token(tokenizer, b"a")) == ""          # could be the start of "ab"
    assert held.push(byte_token(tokenizer, b"c")) == "ac"         # it was not
    assert held.push(byte_token(tokenizer, b"a")) == ""
    assert held.push(byte_token(tokenizer, b"b")) == "" and held.stopped
    assert held.text == "zac" and held.finish() == ""


def test_stream_never_emits_half_characters():
    tokenizer = make_tokenizer()
    model = make_model(vocab=tokenizer.vocab_size, seq_len=256)
    # bias the model towards the single bytes of multi-byte characters
    lead = [byte_token(tokenizer, bytes([b])) for b in (0xC3, 0xE2, 0xF0, 0x98, 0xB8, 0x9F)]
    with torch.no_grad():
        model.lm_head.weight[lead] *= 3
    for seed in range(3):
        params = SamplingParams(temperature=1.0, max_tokens=120, seed=seed)
        events = list(stream(model, tokenizer, [tokenizer.bos_id], params))
        text = "".join(e.text for e in events)
        assert events[-1].finish_reason == "length" and events[-1].tokens == 120
        out = generate(model, [[tokenizer.bos_id]], max_new_tokens=120, temperature=1.0, seed=seed,
                       tokenizer=tokenizer)[0]
        assert text == out.text
        # a replacement character may only stand for bytes that are invalid UTF-8 in the
        # whole output too, never for a character split between two tokens
        whole = b"".join(tokenizer.token_bytes(t) for t in out.tokens).decode("utf-8", errors="replace")
        assert text == whole
        for event in events:
            assert event.text.count("\ufffd") <= whole.count("\ufffd")


def test_cancellation_stops_the_sequence():
    model = make_model()
    cancel = threading.Event()
    seen = []

    def on_event(event):
        seen.append(event)
        if event.tokens == 3:
            cancel.set()
    seq = Sequence(prompt(4, 1), SamplingParams(max_tokens=40), on_event=on_event, cancel=cancel)
    engine = Engine(model, max_batch=2)
    other = engine.submit(Sequence(prompt(5, 2), SamplingParams(max_tokens=10)))
    engine.submit(seq)
    while engine.step():
        pass
    assert seq.finish_reason == "cancelled" and len(seq.tokens) == 3 and seen[-1].finish_reason == "cancelled"
    assert other.tokens == generate(model, [prompt(5, 2)], max_new_tokens=10)[0].tokens
    # closing a stream early cancels it
    gen = stream(model, make_tokenizer(), [0, 1], SamplingParams(max_tokens=40))
    next(gen)
    gen.close()


def test_background_engine_serves_threads():
    model = make_model()
    prompts = [prompt(n, s) for s, n in enumerate((4, 8, 2, 12, 6))]
    alone = [generate(model, [p], max_new_tokens=12)[0].tokens for p in prompts]
    background = BackgroundEngine(model, max_batch=4).start()
    try:
        done = [threading.Event() for _ in prompts]
        seqs = [None] * len(prompts)

        def client(i):
            seqs[i] = background.submit(Sequence(prompts[i], SamplingParams(max_tokens=12),
                                                 on_event=lambda e, i=i: e.finish_reason and done[i].set()))
        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(d.wait(20) for d in done)
        assert [s.tokens for s in seqs] == alone
    finally:
        background.stop()


def test_bad_params_are_rejected():
    model = make_model()
    with pytest.raises(ValueError, match="top_p"):
        generate(model, [[1]], max_new_tokens=3, top_p=0.0)
    with pytest.raises(ValueError, match="min_p"):
        generate(model, [[1]], max_new_tokens=3, min_p=2.0)
