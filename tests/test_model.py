"""Tests for lmforge/model.py: shapes, loss, KV cache equivalence, padding, the fast inference
path (lmforge/engine/inference_weights.py) equal to the modules and never stale, sizes,
save/load (lmforge/checkpoints.py), and (when transformers is installed) logits equal to a
stock Llama / Qwen3 with our weights."""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from lmforge.config import ModelConfig
from lmforge.export import hf_state_dict
from lmforge.checkpoints import ModelLoadError, load_model, save_model
from lmforge.engine import KVCache, fast_path, inference_weights, make_cache
from lmforge.model import MLP, GPT, ffn_hidden_size

VOCAB = 97


def tiny(**overrides) -> ModelConfig:
    # a larger init_std than training uses, so logits are far from uniform and comparisons mean something
    base = dict(vocab_size=VOCAB, seq_len=64, n_layer=2, n_head=4, d_model=32, init_std=0.2)
    base.update(overrides)
    return ModelConfig(**base)


VARIANTS = {
    "mha": tiny(),
    "gqa": tiny(n_kv_head=2),
    "mqa_qknorm": tiny(n_kv_head=1, qk_norm=True),
    "untied": tiny(tie_embeddings=False, n_kv_head=2),
}


def make(cfg=None, seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(cfg or tiny())


def ids(B, T, seed=1):
    return torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- forward and loss

def test_forward_shapes_and_dtype():
    model = make()
    x = ids(3, 10)
    logits = model(x)
    assert logits.shape == (3, 10, VOCAB) and logits.dtype == torch.float32
    hidden = model(x, return_hidden=True)
    assert hidden.shape == (3, 10, 32)
    torch.testing.assert_close(model.lm_head(hidden), logits)
    with_loss, loss = model(x, targets=ids(3, 10, seed=2))
    torch.testing.assert_close(with_loss, logits)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_loss_equals_manual_cross_entropy():
    model = make()
    x, y = ids(2, 12), ids(2, 12, seed=3)
    logits, loss = model(x, targets=y)
    manual = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
    torch.testing.assert_close(loss, manual)


def test_loss_ignores_minus_100_and_loss_mask():
    model = make()
    x, y = ids(2, 12), ids(2, 12, seed=3)
    keep = torch.rand(2, 12, generator=torch.Generator().manual_seed(4)) > 0.5
    logits, loss = model(x, targets=torch.where(keep, y, -100))
    manual = F.cross_entropy(logits[keep], y[keep])
    torch.testing.assert_close(loss, manual)
    _, loss_masked = model(x, targets=y, loss_mask=keep.long())
    torch.testing.assert_close(loss_masked, manual)
    # nothing to learn from is a zero loss, not NaN
    _, empty = model(x, targets=torch.full_like(y, -100))
    assert empty.item() == 0.0


def test_causal_no_peeking():
    model = make()
    x = ids(1, 12)
    changed = x.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % VOCAB
    torch.testing.assert_close(model(x)[:, :8], model(changed)[:, :8])


def test_backward_reaches_every_parameter():
    model = make(VARIANTS["mqa_qknorm"])
    _, loss = model(ids(2, 8), targets=ids(2, 8, seed=5))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


# ---------------------------------------------------------------- KV cache

@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("fast", [False, True], ids=["modules", "fast_path"])
def test_cache_prefill_decode_and_chunks_match_full_forward(name, fast):
    model = make(VARIANTS[name])
    with torch.set_grad_enabled(not fast), (fast_path(model) if fast else contextlib.nullcontext()):
        x = ids(2, 20)
        full = model(x)

        cache = make_cache(model, 2, 32)
        prefill = model(x, cache=cache)  # T > 1 from pos 0: causal
        torch.testing.assert_close(prefill, full, atol=1e-5, rtol=0)
        assert cache.pos == 20

        cache = make_cache(model, 2, 32)
        steps = [model(x[:, :7], cache=cache)]
        steps += [model(x[:, t:t + 1], cache=cache) for t in range(7, 20)]  # decode: T == 1
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)

        cache = make_cache(model, 2, 32)
        bounds = [0, 3, 4, 9, 10, 16, 20]  # chunked prefill: T > 1 at pos > 0, incl. T == 1 chunks
        chunks = [model(x[:, a:b], cache=cache) for a, b in zip(bounds, bounds[1:])]
        torch.testing.assert_close(torch.cat(chunks, 1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_inference_path_equals_modules(name):
    # on the fast path the forward runs on InferenceWeights (fused matrices, its own RMSNorm
    # form, (in, out) copies from 2 rows on); it must give what the modules give
    model = make(VARIANTS[name])
    x, y = ids(3, 10), ids(3, 10, seed=2)
    segments = torch.tensor([[0] * 4 + [1] * 6] * 3)
    full, loss = model(x, targets=y)       # autograd on: the modules
    hidden = model(x, return_hidden=True)
    packed = model(x, segment_ids=segments)
    one_row = model(x[:1, :1])             # one row: F.linear on (out, in) weights
    with torch.no_grad():                  # grad mode alone switches nothing: still the modules, bit for bit
        assert torch.equal(model(x), full.detach()) and model.fast is None
    with torch.no_grad(), fast_path(model):
        assert model.fast is not None
        fast, fast_loss = model(x, targets=y)
        torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)
        torch.testing.assert_close(fast_loss, loss, atol=1e-6, rtol=0)
        torch.testing.assert_close(model(x, return_hidden=True), hidden, atol=1e-5, rtol=0)
        torch.testing.assert_close(model.logits(hidden), full, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x, segment_ids=segments), packed, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x[:1, :1]), one_row, atol=1e-5, rtol=0)


def test_inference_weights_follow_weight_updates():
    # InferenceWeights are copies: an optimizer step between two rollouts (the RL stages), a
    # load_state_dict, a moved model or a replaced Parameter or module must never leave them stale
    model = make(VARIANTS["untied"])
    x = ids(5, 6)

    def check():
        expected = model(x)
        with torch.inference_mode(), fast_path(model):
            # stale weights would be off by whole units; rounding (the fused matmuls sum in
            # another order) stays near 1e-5 at these logit sizes
            torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=0)           # (in, out) copies
            torch.testing.assert_close(model(x[:1, :1]), expected[:1, :1], atol=1e-4, rtol=0)
        assert model.fast is None        # the fast path ends with the block

    check()
    first = inference_weights(model)
    with torch.no_grad(), fast_path(model):
        model(x)
    assert inference_weights(model) is first   # nothing changed: no rebuild
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(ids(2, 8), ids(2, 8, seed=4))[1].backward()
    opt.step()                                   # in place: the version counters move
    check()
    model.load_state_dict(make(VARIANTS["untied"], seed=3).state_dict())
    check()
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))   # a new Parameter
    check()
    before = inference_weights(model)
    model.norm.weight = torch.nn.Parameter(model.norm.weight.detach().clone())   # same values, new object
    assert not before.current()
    current = inference_weights(model)
    assert current is not before and current.current()
    model.layers[1].mlp = MLP(model.cfg)         # a replaced module, new random weights
    assert not current.current()
    check()
    model.double()                               # moved: new storage, same Parameter objects
    x = x.clone()
    check()
    model.float()
    check()


def test_fast_path_refuses_gradients_and_skips_nothing_else():
    # the fast path computes no gradients, so a forward with autograd on inside it is an error,
    # not a silent detach; fast_path reaches GPTs inside wrappers (reward and value heads)
    model = make()
    wrapper = torch.nn.ModuleDict({"backbone": model})
    with fast_path(wrapper):
        assert model.fast is not None
        with pytest.raises(RuntimeError, match="no gradients"):
            model(ids(1, 4))
        with fast_path(model):               # nested: left as it is
            pass
        assert model.fast is not None
    assert model.fast is None


def test_cache_rollback_discards_tokens():
    model = make(VARIANTS["gqa"])
    x = ids(1, 16)
    cache = make_cache(model, 1, 32)
    model(x[:, :10], cache=cache)
    model(ids(1, 4, seed=9), cache=cache)  # a speculative guess that gets rejected
    cache.rollback(4)
    assert cache.pos == 10
    tail = model(x[:, 10:], cache=cache)
    torch.testing.assert_close(tail, model(x)[:, 10:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        cache.rollback(17)


def test_cache_full_raises():
    model = make()
    cache = make_cache(model, 1, 8)
    model(ids(1, 6), cache=cache)
    with pytest.raises(ValueError, match="KV cache is full"):
        model(ids(1, 3), cache=cache)


def test_cache_layout():
    model = make(VARIANTS["gqa"])
    cache = make_cache(model, 3, 40)
    assert isinstance(cache, KVCache)
    assert cache.k.shape == (2, 3, 2, 40, 8) and cache.k.dtype == torch.float32
    assert cache.batch_size == 3 and cache.max_len == 40 and cache.pos == 0


@pytest.mark.parametrize("name", ["mha", "mqa_qknorm"])
@pytest.mark.parametrize("fast", [False, True], ids=["modules", "fast_path"])
def test_left_padding_matches_each_row_alone(name, fast):
    model = make(VARIANTS[name])
    with torch.set_grad_enabled(not fast), (fast_path(model) if fast else contextlib.nullcontext()):
        rows = [ids(1, 9, seed=11)[0], ids(1, 4, seed=12)[0], ids(1, 6, seed=13)[0]]
        extra = ids(3, 5, seed=14)  # tokens decoded after the prompts, chunk then single steps
        longest = max(len(r) for r in rows)
        pads = [longest - len(r) for r in rows]
        batch = torch.stack([torch.cat([torch.zeros(p, dtype=torch.long), r]) for p, r in zip(pads, rows)])
        cache = make_cache(model, 3, 32, left_pad=pads)
        prefill = model(batch, cache=cache)
        chunk = model(extra[:, :3], cache=cache)
        steps = [model(extra[:, t:t + 1], cache=cache) for t in range(3, 5)]
        batched = torch.cat([chunk] + steps, 1)
        for b, (pad, row) in enumerate(zip(pads, rows)):
            alone = model(torch.cat([row, extra[b]])[None])
            torch.testing.assert_close(prefill[b, pad:], alone[0, :len(row)], atol=1e-5, rtol=0)
            torch.testing.assert_close(batched[b], alone[0, len(row):], atol=1e-5, rtol=0)
        assert torch.isfinite(prefill).all()  # pad queries see only themselves: no NaN


def test_rope_grows_past_seq_len():
    model = make(tiny(seq_len=16))
    x = ids(1, 24)
    cache = make_cache(model, 1, 24)
    steps = [model(x[:, :10], cache=cache)] + [model(x[:, t:t + 1], cache=cache) for t in range(10, 24)]
    torch.testing.assert_close(torch.cat(steps, 1), model(x), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- sizes

def expected_params(cfg: ModelConfig) -> int:
    hd, kv, ffn = cfg.d_model // cfg.n_head, cfg.n_kv_head or cfg.n_head, ffn_hidden_size(cfg)
    attn = 2 * cfg.d_model * cfg.n_head * hd + 2 * cfg.d_model * kv * hd + (2 * hd if cfg.qk_norm else 0)
    layer = attn + 3 * cfg.d_model * ffn + 2 * cfg.d_model
    head = 0 if cfg.tie_embeddings else cfg.vocab_size * cfg.d_model
    return cfg.vocab_size * cfg.d_model + cfg.n_layer * layer + cfg.d_model + head


@pytest.mark.parametrize("name", VARIANTS)
def test_param_count(name):
    cfg = VARIANTS[name]
    model = make(cfg)
    assert model.num_params() == expected_params(cfg)
    assert model.num_params(exclude_embedding=True) == expected_params(cfg) - VOCAB * 32


def test_ffn_hidden_default_and_flops():
    assert ffn_hidden_size(tiny()) == 128                       # 8/3 * 32 = 85.3 -> 128
    assert ffn_hidden_size(tiny(d_model=768, n_head=12)) == 2048
    assert ffn_hidden_size(tiny(ffn_hidden=100)) == 100
    model = make()
    n = model.num_params(exclude_embedding=True) + VOCAB * 32  # tied head still does a matmul
    assert model.flops_per_token(64) == 6 * n + 12 * 2 * 4 * 8 * 64
    assert model.estimate_mfu(1000.0, model.flops_per_token() * 4000.0) == pytest.approx(0.25)


def test_init_scales_residual_projections():
    model = make(tiny(d_model=128, n_layer=8, init_std=0.02))
    q_std = model.layers[0].attn.q_proj.weight.std().item()
    o_std = model.layers[0].attn.o_proj.weight.std().item()
    down_std = model.layers[0].mlp.down_proj.weight.std().item()
    assert q_std == pytest.approx(0.02, rel=0.1)
    assert o_std == pytest.approx(0.02 / 4, rel=0.1) and down_std == pytest.approx(0.02 / 4, rel=0.1)
    assert model.lm_head.weight is model.embed.weight


def test_vocab_zero_is_a_clear_error():
    with pytest.raises(ValueError, match="vocab_size"):
        GPT(tiny(vocab_size=0))


# ---------------------------------------------------------------- save / load

@pytest.mark.parametrize("name", ["mha", "untied"])
def test_save_load_roundtrip(tmp_path, name):
    from safetensors import safe_open

    model = make(VARIANTS[name])
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "embed.weight" in keys and ("lm_head.weight" in keys) == (name == "untied")
    loaded = load_model(tmp_path / "m")
    assert loaded.cfg == model.cfg
    x = ids(2, 10)
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    if VARIANTS[name].tie_embeddings:
        assert loaded.lm_head.weight is loaded.embed.weight


def test_load_errors_name_the_file(tmp_path):
    model = make()
    save_model(model, tmp_path)
    weights = tmp_path / "model.safetensors"
    good = weights.read_bytes()

    weights.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        load_model(tmp_path)

    weights.write_bytes(b"\x00garbage" * 100)  # not safetensors at all
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        load_model(tmp_path)

    weights.unlink()
    with pytest.raises(ModelLoadError, match="model.safetensors: missing"):
        load_model(tmp_path)

    weights.write_bytes(good)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path)

    # weights that do not fit the config
    save_model(make(tiny(d_model=64)), tmp_path / "other")
    (tmp_path / "config.json").write_text((tmp_path / "other" / "config.json").read_text())
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        load_model(tmp_path)
    assert issubclass(ModelLoadError, ValueError)


# ---------------------------------------------------------------- the export contract

@pytest.mark.parametrize("name", VARIANTS)
def test_logits_match_transformers(name):
    transformers = pytest.importorskip("transformers")
    cfg = VARIANTS[name]
    model = make(cfg)
    kwargs = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=ffn_hidden_size(cfg),
                  num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head,
                  num_key_value_heads=cfg.n_kv_head or cfg.n_head, head_dim=cfg.d_model // cfg.n_head,
                  max_position_embeddings=cfg.seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
                  tie_word_embeddings=cfg.tie_embeddings, attention_bias=False)
    if cfg.qk_norm:
        hf_config, hf_class = transformers.Qwen3Config(**kwargs), transformers.Qwen3ForCausalLM
    else:
        hf_config, hf_class = transformers.LlamaConfig(mlp_bias=False, **kwargs), transformers.LlamaForCausalLM
    hf_config._attn_implementation = "eager"
    hf = hf_class(hf_config).eval()
    missing, unexpected = hf.load_state_dict(hf_state_dict(model), strict=False)
    assert not unexpected
    assert set(missing) <= ({"lm_head.weight"} if cfg.tie_embeddings else set())
    if cfg.tie_embeddings:
        assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    x = ids(2, 40)
    with torch.no_grad():
        ours = model(x)
        theirs = hf(input_ids=x).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("autocast", [False, True])
def test_chunked_head_loss_equals_the_plain_loss_and_its_gradients(monkeypatch, autocast):
    """need_logits=False (lmforge/head_loss.py) gives the plain cross-entropy's loss and
    gradients: chunk boundaries (forced small here), ignored and masked targets, tied head."""
    import lmforge.head_loss as head_loss
    monkeypatch.setattr(head_loss, "CHUNK_ROWS", 7)
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=VOCAB, seq_len=16, n_layer=2, n_head=2, d_model=32))
    x, y = ids(3, 12, seed=3), ids(3, 12, seed=4)
    y[0, :4] = -100
    mask = torch.ones_like(y)
    mask[2, 5:] = 0
    results = []
    for need_logits in (True, False):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            _, loss = model(x, targets=y, loss_mask=mask, need_logits=need_logits)
        loss.backward()
        results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (plain, plain_grads), (fused, fused_grads) = results
    tol = 2e-2 if autocast else 1e-5      # bf16 rounds the matmuls' outputs in a different order
    assert fused == pytest.approx(plain, rel=tol / 10)
    for name, grad in plain_grads.items():
        assert (fused_grads[name] - grad).norm() <= tol * grad.norm() + 1e-8, name
