"""Tests for lmforge/speculative.py: greedy equality with plain decoding (draft model and prompt
lookup), the acceptance rule's output distribution, and end-to-end sampling equal to the target's."""
import pytest
import torch

from lmforge.engine import generate, next_token_probs, SamplingParams
from lmforge.speculative import (DraftVocabulary, SpeculativeStats, frequent_tokens, lookup_proposal,
                                 speculative_generate, speculative_stream, verify)
from tests.test_engine import make_model, make_tokenizer, prompt, single_thread  # noqa: F401 - autouse fixture


def chi_square_ok(observed, expected) -> bool:
    """Pearson's chi-square goodness of fit at the 0.1% level (no scipy needed).

    expected is rescaled to the observed total; the 99.9% quantile of chi-square with k degrees
    of freedom uses the Wilson-Hilferty approximation, within 2% of the exact value for k >= 3.
    """
    observed = torch.as_tensor(observed, dtype=torch.float64)
    expected = torch.as_tensor(expected, dtype=torch.float64)
    expected = expected * observed.sum() / expected.sum()
    statistic = float(((observed - expected) ** 2 / expected).sum())
    k = len(observed) - 1
    quantile = k * (1 - 2 / (9 * k) + 3.0902 * (2 / (9 * k)) ** 0.5) ** 3
    return statistic < quantile


@pytest.mark.parametrize("use_draft", [True, False])
def test_greedy_equals_plain_decoding(use_draft):
    target = make_model(0)
    draft = make_model(1, n_layer=1) if use_draft else None
    for seed, n in enumerate((1, 5, 12, 30)):
        p = prompt(n, seed)
        if not use_draft:
            p = p + p[:6]      # a repeat, so lookup finds matches to propose
        plain = generate(target, [p], max_new_tokens=24, stop_ids=[5])[0]
        stats = SpeculativeStats()
        spec = speculative_generate(target, p, SamplingParams(max_tokens=24, stop_ids=(5,)), draft=draft,
                                    num_draft_tokens=4, stats=stats)
        assert spec.tokens == plain.tokens and spec.finish_reason == plain.finish_reason
        assert stats.proposed > 0 or not use_draft


@pytest.mark.parametrize("confidence", [0.0, 0.3])
def test_greedy_with_a_draft_vocabulary_equals_plain_decoding(confidence):
    # the draft may propose only even token ids: every odd token the target emits is a
    # rejected guess, and the output must still be the target's own
    target, draft = make_model(0), make_model(1, n_layer=1)
    vocab = DraftVocabulary(draft, range(0, draft.cfg.vocab_size, 2))
    for seed, n in enumerate((3, 9)):
        p = prompt(n, seed)
        stats = SpeculativeStats()
        spec = speculative_generate(target, p, SamplingParams(max_tokens=20), draft=draft, num_draft_tokens=4,
                                    stats=stats, min_draft_confidence=confidence, draft_vocab=vocab)
        assert spec.tokens == generate(target, [p], max_new_tokens=20)[0].tokens
        assert stats.proposed > 0


@pytest.mark.parametrize("use_draft", [True, False])
def test_stream_gives_the_generation_piece_by_piece(use_draft):
    tokenizer = make_tokenizer()
    target = make_model(0, vocab=tokenizer.vocab_size)
    draft = make_model(1, vocab=tokenizer.vocab_size, n_layer=1) if use_draft else None
    p = tokenizer.encode("the cat sat on the mat and the cat sat")
    params = SamplingParams(max_tokens=30, temperature=0.8, seed=5)
    whole = speculative_generate(target, p, params, draft=draft, tokenizer=tokenizer)
    stats = SpeculativeStats()
    events = list(speculative_stream(target, tokenizer, p, params, draft=draft, stats=stats))
    assert "".join(e.text for e in events) == whole.text
    assert events[-1].finish_reason == whole.finish_reason and events[-1].tokens == len(whole.tokens)
    assert all(e.finish_reason is None for e in events[:-1]) and stats.rounds < len(whole.tokens) + 1
    # closing the stream early stops decoding: no more rounds run after the first event
    stats = SpeculativeStats()
    stream = speculative_stream(target, tokenizer, p, params, draft=draft, stats=stats)
    next(stream)
    stream.close()
    assert stats.rounds == 1


def test_draft_vocabulary_checks_its_tokens():
    draft = make_model(1, n_layer=1)
    V = draft.cfg.vocab_size
    vocab = DraftVocabulary(draft, [7, 3, 3, 5])
    assert vocab.ids.tolist() == [3, 5, 7] and len(vocab) == 3
    torch.testing.assert_close(vocab.head, draft.lm_head.weight.detach()[[3, 5, 7]])
    for bad in ([], [V], [-1, 2]):
        with pytest.raises(ValueError, match="draft vocabulary"):
            DraftVocabulary(draft, bad)
    with pytest.raises(ValueError, match="another draft"):
        speculative_generate(make_model(0), prompt(3, 0), SamplingParams(max_tokens=2), draft=None, draft_vocab=vocab)


def test_frequent_tokens_covers_the_share_asked_for():
    import numpy as np
    tokens = np.array([4] * 50 + [1] * 30 + [2] * 15 + [0] * 5, dtype=np.uint16)
    assert frequent_tokens(tokens, 6, 0.5).tolist() == [4]
    assert frequent_tokens(tokens, 6, 0.8).tolist() == [1, 4]
    assert frequent_tokens(tokens, 6, 0.81).tolist() == [1, 2, 4]
    assert frequent_tokens(tokens, 6, 1.0).tolist() == [0, 1, 2, 4]     # never-seen 3 and 5 stay out
    with pytest.raises(ValueError):
        frequent_tokens(tokens, 6, 0.0)


def test_greedy_draft_equal_to_target_accepts_everything():
    target = make_model(0)
    stats = SpeculativeStats()
    out = speculative_generate(target, prompt(5, 1), SamplingParams(max_tokens=21), draft=target,
                               num_draft_tokens=4, stats=stats, min_draft_confidence=0.0)
    assert out.tokens == generate(target, [prompt(5, 1)], max_new_tokens=21)[0].tokens
    assert stats.acceptance_rate == 1.0 and stats.target_forwards <= 1 + 21 // 5 + 1


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_unsure_draft_stops_the_round_early_without_changing_the_output(temperature):
    # an untrained draft spreads its probability over the whole vocabulary, so with a 0.99
    # threshold every round stops after its first guess; the output must not change
    target, draft = make_model(0), make_model(1, n_layer=1)
    p = prompt(7, 3)
    params = SamplingParams(max_tokens=20, temperature=temperature, seed=11)
    outs, stats = [], []
    for confidence in (0.0, 0.99):
        stats.append(SpeculativeStats())
        outs.append(speculative_generate(target, p, params, draft=draft, num_draft_tokens=4, stats=stats[-1],
                                         min_draft_confidence=confidence).tokens)
    if temperature == 0:
        assert outs[0] == outs[1] == generate(target, [p], max_new_tokens=20)[0].tokens
    assert stats[1].proposed <= stats[1].rounds      # at most one guess a round (none when the budget is full)
    assert stats[0].proposed > stats[1].proposed


def test_lookup_proposal():
    assert lookup_proposal([1, 2, 3, 9, 1, 2, 3], 2) == [9, 1]
    assert lookup_proposal([5, 6, 7], 3) == []
    assert lookup_proposal([4, 1, 4, 2, 4], 2, max_ngram=1) == [2, 4]     # the most recent match


def test_acceptance_rule_preserves_the_target_distribution():
    """Draw d ~ q, run verify, and the first emitted token is distributed as p."""
    gen = torch.Generator().manual_seed(0)
    V = 5
    p = torch.softmax(torch.randn(2, V, generator=gen) * 1.5, -1)
    q = torch.softmax(torch.randn(1, V, generator=gen) * 1.5, -1)
    counts = torch.zeros(V)
    trials = 20000
    for _ in range(trials):
        guess = int(torch.multinomial(q[0], 1, generator=gen))
        accepted, token = verify(p, q, [guess], generator=gen)
        counts[guess if accepted else token] += 1
    assert chi_square_ok(counts, p[0] * trials), (counts / trials, p[0])


@torch.no_grad()
@pytest.mark.parametrize("draft_tokens", [None, [1, 3, 4]])
def test_sampled_output_follows_the_target_distribution(draft_tokens):
    """Two tokens from a tiny-vocab model: speculative samples against the exact joint distribution,
    also when the draft may propose only some of the tokens (its q is zero on the others)."""
    V = 6
    target = make_model(0, vocab=V, init_std=0.5)
    draft = make_model(3, vocab=V, n_layer=1, init_std=0.5)
    vocab = DraftVocabulary(draft, draft_tokens) if draft_tokens else None
    params = dict(temperature=0.9, top_k=5, top_p=0.95)
    start = [0, 3]
    first = next_token_probs(target(torch.tensor([start]))[:, -1], **params)[0]
    joint = torch.zeros(V, V)
    for a in range(V):
        joint[a] = first[a] * next_token_probs(target(torch.tensor([start + [a]]))[:, -1], **params)[0]
    counts = torch.zeros(V, V)
    runs = 1000
    stats = SpeculativeStats()
    for seed in range(runs):
        out = speculative_generate(target, start, SamplingParams(max_tokens=2, seed=seed, **params), draft=draft,
                                   num_draft_tokens=2, stats=stats, draft_vocab=vocab)
        counts[out.tokens[0], out.tokens[1]] += 1
    keep = joint.flatten() > 0
    observed, expected = counts.flatten()[keep], joint.flatten()[keep] * runs
    assert counts.flatten()[~keep].sum() == 0
    assert chi_square_ok(observed, expected)
    assert 0 < stats.acceptance_rate < 1


def test_lookup_sampling_follows_the_target_distribution():
    V = 4
    target = make_model(0, vocab=V, init_std=0.5)
    start = [1, 2, 1, 2, 1]
    with torch.no_grad():
        first = next_token_probs(target(torch.tensor([start]))[:, -1], 1.0)[0]
    counts = torch.zeros(V)
    stats = SpeculativeStats()
    for seed in range(800):
        # two tokens: the first round proposes the 2 that followed the last 1 and verifies it
        out = speculative_generate(target, start, SamplingParams(max_tokens=2, temperature=1.0, seed=seed),
                                   stats=stats)
        counts[out.tokens[0]] += 1
    assert stats.proposed == 800
    assert chi_square_ok(counts, first * 800)


def test_prepare_draft_run_shares_the_tokenizer(tmp_path, capsys):
    from lmforge.cli import main
    from lmforge.config import load_config
    from lmforge.rundir import RunDir
    from lmforge.draft import prepare_draft_run
    from tests.test_engine import make_run
    target, _ = make_run(tmp_path / "tiny")
    target.save_config(load_config("tiny"))
    (target.path("data", "tokens")).mkdir(parents=True)
    (target.path("data", "tokens", "train.bin")).write_bytes(b"\0\0")
    target.write_manifest("collect", {"stage": "collect", "status": "done", "output_id": "c"})
    copied = prepare_draft_run(target.root, tmp_path / "draft")
    draft = RunDir(tmp_path / "draft")
    assert copied == ["collect"]
    # the same through the one command line: `lmforge draft prepare DRAFT --run-dir TARGET`
    assert main(["draft", "prepare", str(tmp_path / "draft2"), "--run-dir", str(target.root)]) == 0
    assert "the collect manifests" in capsys.readouterr().out
    assert RunDir(tmp_path / "draft2").load_config().model == draft.load_config().model
    assert (draft.tokenizer_dir / "tokenizer.json").read_text() == (target.tokenizer_dir / "tokenizer.json").read_text()
    cfg, target_cfg = draft.load_config(), target.load_config()
    assert cfg.model == load_config("draft").model and cfg.model.n_layer < target_cfg.model.n_layer
    assert cfg.tokenizer == target_cfg.tokenizer and cfg.world == target_cfg.world
    assert (draft.path("data", "tokens", "train.bin")).exists()
    assert draft.read_manifest("collect") == target.read_manifest("collect")


def test_distill_draft_moves_the_draft_toward_the_target(tmp_path, capsys):
    import json

    import numpy as np

    from lmforge.checkpoints import load_model
    from lmforge.cli import main
    from lmforge.config import load_config
    from lmforge.draft import distill_loss_sum
    from tests.test_engine import make_run
    target, tokenizer = make_run(tmp_path / "t", seq_len=32)
    draft, _ = make_run(tmp_path / "d", seq_len=32, n_layer=1)
    cfg = load_config("draft", ["pretrain.batch_size=4", "pretrain.seq_len=32", "pretrain.eval_batches=1"])
    draft.save_config(cfg)
    tokens = np.random.default_rng(0).integers(0, tokenizer.vocab_size, size=4000).astype(np.uint16)
    draft.tokens_dir.mkdir(parents=True)
    tokens.tofile(draft.tokens_dir / "train.bin")
    tokens[:1000].tofile(draft.tokens_dir / "val.bin")
    (draft.tokens_dir / "meta.json").write_text(json.dumps({"dtype": "uint16"}))
    # through the one command line: `lmforge draft distill DRAFT --run-dir TARGET --steps 6`
    assert main(["draft", "distill", str(draft.root), "--run-dir", str(target.root), "--steps", "6",
                 "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 6 and 0 <= result["greedy_agreement_after"] <= 1
    assert (draft.path("logs", "distill.jsonl")).exists()
    t, before, after = (load_model(run.model_dir(stage)) for run, stage in
                        ((target, "pretrain"), (draft, "pretrain"), (draft, "distill")))
    batch = {"x": torch.from_numpy(tokens[:64].astype(np.int64)).view(2, 32)}
    kl = distill_loss_sum(t)
    with torch.no_grad():
        # KL(target || draft): zero for the target itself, and smaller after distilling
        assert float(kl(t, batch)) == pytest.approx(0.0, abs=1e-3)
        assert 0 < float(kl(after, batch)) < float(kl(before, batch))
