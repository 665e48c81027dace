"""Tests for lmforge/engine/ (sampling.py, batching.py): samplers on hand-made logits, and generate() against a naive
no-cache loop, single rows, seeds, stop ids and the context limit."""
import pytest
import torch

from lmforge.config import ModelConfig
from lmforge.engine import generate, Generation, next_token_probs, sample_next
from lmforge.inspect import format_bar_chart
from lmforge.model import GPT

VOCAB = 97


def make(seq_len=64, **overrides) -> GPT:
    torch.manual_seed(0)
    # init_std well above training's so greedy choices are not near-ties
    cfg = dict(vocab_size=VOCAB, seq_len=seq_len, n_layer=2, n_head=4, n_kv_head=2, d_model=32, init_std=0.3)
    cfg.update(overrides)
    return GPT(ModelConfig(**cfg))


def prompt(n, seed):
    return torch.randint(0, VOCAB, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@torch.no_grad()
def naive_greedy(model, ids, n):
    """Recompute the whole sequence every step: the obviously correct reference."""
    ids = list(ids)
    out = []
    for _ in range(n):
        out.append(int(model(torch.tensor([ids + out]))[0, -1].argmax()))
    return out


# ---------------------------------------------------------------- samplers

def test_probs_temperature_and_greedy():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    torch.testing.assert_close(next_token_probs(logits, 1.0), torch.softmax(logits, -1))
    torch.testing.assert_close(next_token_probs(logits, 2.0), torch.softmax(logits / 2, -1))
    assert next_token_probs(logits, 0.0).tolist() == [[0.0, 1.0, 0.0, 0.0]]
    assert sample_next(logits, 0.0).tolist() == [1]
    with pytest.raises(ValueError):
        next_token_probs(logits, -1.0)


def test_top_k_keeps_exactly_k():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0, 2.0]])
    probs = next_token_probs(logits, 1.0, top_k=2)
    expected = torch.softmax(torch.tensor([3.0, 2.0]), -1)
    assert (probs > 0).sum().item() == 2 and probs[0, 1] == pytest.approx(expected[0].item())
    assert probs.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(next_token_probs(logits, 1.0, top_k=99), torch.softmax(logits, -1))


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits = probs.log()
    # 0.5 < 0.6, 0.5 + 0.3 = 0.8 >= 0.6: keep {0, 2}
    out = next_token_probs(logits, 1.0, top_p=0.6)
    torch.testing.assert_close(out, torch.tensor([[0.5 / 0.8, 0.0, 0.3 / 0.8, 0.0]]))
    # exactly reaching p stops there: 0.5 + 0.3 = 0.8
    out = next_token_probs(logits, 1.0, top_p=0.8)
    assert (out > 0).tolist() == [[True, False, True, False]]
    # tiny p still keeps the most likely token
    out = next_token_probs(logits, 1.0, top_p=0.0)
    assert out.tolist() == [[1.0, 0.0, 0.0, 0.0]]
    # top-k first, then top-p on the renormalized top-k distribution
    out = next_token_probs(logits, 1.0, top_k=3, top_p=0.6)  # top-3 renormalized: .526, .316, .158
    assert (out > 0).tolist() == [[True, False, True, False]]


def test_sampling_follows_probs_and_seed():
    logits = torch.tensor([[0.0, 1.0, 2.0, -9.0]]).repeat(4000, 1)
    draws = sample_next(logits, 1.0, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, torch.softmax(logits[0], -1), atol=0.03, rtol=0)
    again = sample_next(logits, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)
    only_top = sample_next(logits, 1.0, top_k=1, generator=torch.Generator().manual_seed(1))
    assert (only_top == 2).all()


# ---------------------------------------------------------------- generate

def test_greedy_is_deterministic_and_equals_naive_loop():
    model = make()
    p = prompt(7, 1)
    out = generate(model, [p], max_new_tokens=12)
    assert out == generate(model, [p], max_new_tokens=12)
    assert isinstance(out[0], Generation) and out[0].finish_reason == "length"
    assert out[0].tokens == naive_greedy(model, p, 12)


def test_batch_equals_single_rows():
    model = make()
    prompts = [prompt(9, 2), prompt(3, 3), prompt(1, 4), prompt(6, 5)]
    batched = generate(model, prompts, max_new_tokens=10)
    for p, got in zip(prompts, batched):
        assert got == generate(model, [p], max_new_tokens=10)[0]
        assert got.tokens == naive_greedy(model, p, 10)


def test_more_prompts_than_the_batch_limit_wait_their_turn(monkeypatch):
    """generate() decodes at most GENERATE_MAX_BATCH rows together; the others join as rows
    finish, and every row's output is what it would be in one big batch."""
    import lmforge.engine.batching as batching
    model = make()
    prompts = [prompt(1 + i % 7, 20 + i) for i in range(11)]
    kwargs = dict(max_new_tokens=12, temperature=1.0, seed=5, stop_ids=[3])
    together = generate(model, prompts, **kwargs)
    monkeypatch.setattr(batching, "GENERATE_MAX_BATCH", 3)
    assert generate(model, prompts, **kwargs) == together
    assert generate(model, prompts, max_new_tokens=12) == [Generation(naive_greedy(model, p, 12), "length")
                                                          for p in prompts]


def test_seeded_sampling_is_reproducible():
    model = make()
    prompts = [prompt(5, 6), prompt(2, 7)]
    kwargs = dict(max_new_tokens=15, temperature=1.0, top_k=20, top_p=0.9)
    a = generate(model, prompts, seed=123, **kwargs)
    assert a == generate(model, prompts, seed=123, **kwargs)
    assert a != generate(model, prompts, seed=124, **kwargs)


def test_stop_ids_end_rows_early():
    model = make()
    prompts = [prompt(5, 8), prompt(4, 9)]
    free = generate(model, prompts, max_new_tokens=10)
    stop = free[0].tokens[3]
    first = free[0].tokens.index(stop)
    out = generate(model, prompts, max_new_tokens=10, stop_ids=[stop])
    assert out[0] == Generation(free[0].tokens[:first], "stop")
    if stop in free[1].tokens:
        assert out[1] == Generation(free[1].tokens[:free[1].tokens.index(stop)], "stop")
    else:
        assert out[1] == free[1]


def test_stops_early_when_all_rows_are_done(monkeypatch):
    model = make()
    p = prompt(4, 10)
    first = generate(model, [p], max_new_tokens=1)[0].tokens[0]
    calls = []
    original = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k))
    out = generate(model, [p, p], max_new_tokens=50, stop_ids={first})
    assert out == [Generation([], "stop")] * 2 and len(calls) == 1  # the prefill only


def test_context_limit_crops_new_tokens():
    model = make(seq_len=16)
    long_prompt, short_prompt = prompt(12, 11), prompt(3, 12)
    out = generate(model, [long_prompt, short_prompt], max_new_tokens=20)
    # each row gets seq_len - len(prompt) new ids
    assert [len(o.tokens) for o in out] == [4, 13] and all(o.finish_reason == "length" for o in out)
    assert out[0].tokens == naive_greedy(model, long_prompt, 4)
    # a prompt longer than the context keeps its last seq_len - 1 ids and gets one new id
    too_long = prompt(30, 13)
    out = generate(model, [too_long], max_new_tokens=5)[0]
    assert out.tokens == naive_greedy(model, too_long[-15:], 1)


def test_edge_cases():
    model = make()
    assert generate(model, [], max_new_tokens=5) == []
    assert generate(model, [[1, 2]], max_new_tokens=0) == [Generation([], "length")]
    with pytest.raises(ValueError):
        generate(model, [[]], max_new_tokens=3)


# ---------------------------------------------------------------- bar chart

def test_format_bar_chart():
    chart = format_bar_chart([("the", 0.5), (" a\n", 0.25), ("x", 0.0)], width=40)
    lines = chart.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("'the'") and lines[0].count("█") == 20 and lines[0].endswith(" 50.0%")
    assert "' a\\n'" in lines[1] and lines[1].count("█") == 10 and lines[1].endswith(" 25.0%")
    assert "█" not in lines[2] and lines[2].endswith("  0.0%")
    assert len({len(line) for line in lines}) == 1  # columns line up
    assert format_bar_chart([]) == ""
