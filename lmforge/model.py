"""The Transformer: a Llama-style decoder, its KV cache, and saving / loading it.

    from lmforge.config import ModelConfig
    from lmforge.model import GPT, save_model, load_model
    model = GPT(ModelConfig(vocab_size=4096, n_layer=4, n_head=4, d_model=256))
    logits, loss = model(idx, targets)           # training: (B, T) ids -> (B, T, V), scalar
    cache = model.make_cache(batch_size=1, max_len=128)
    logits = model(prompt_ids, cache=cache)      # prefill; then one token at a time
    save_model(model, "runs/tiny/models/pretrain"); model = load_model("runs/tiny/models/pretrain")

Architecture (no biases anywhere):
    embed -> n_layer x [x + attn(attn_norm(x)), x + mlp(mlp_norm(x))] -> norm -> lm_head
    attn: q/k/v projections, optional QK-norm (RMSNorm over head_dim, as in Qwen3),
          RoPE, grouped-query attention through scaled_dot_product_attention, o_proj.
    mlp:  SwiGLU, down_proj(silu(gate_proj(x)) * up_proj(x)).

Everything is laid out so a stock Hugging Face `LlamaForCausalLM` (or `Qwen3ForCausalLM`
when qk_norm is on) reproduces our logits from the same weights, with a plain renaming:
    embed.weight                  -> model.embed_tokens.weight
    layers.{i}.attn_norm.weight   -> model.layers.{i}.input_layernorm.weight
    layers.{i}.attn.{q,k,v,o}_proj.weight -> model.layers.{i}.self_attn.{q,k,v,o}_proj.weight
    layers.{i}.attn.{q,k}_norm.weight     -> model.layers.{i}.self_attn.{q,k}_norm.weight
    layers.{i}.mlp_norm.weight    -> model.layers.{i}.post_attention_layernorm.weight
    layers.{i}.mlp.{gate,up,down}_proj.weight -> model.layers.{i}.mlp.{gate,up,down}_proj.weight
    norm.weight                   -> model.norm.weight
    lm_head.weight                -> lm_head.weight (absent from the file when tied)
That is why RoPE uses the "rotate half" convention (the first and second halves of
head_dim form the rotated pairs, not interleaved neighbours) and why RMSNorm normalizes
in float32 and multiplies by its weight after casting back.

KV cache and padding. One write position `cache.pos` is shared by the whole batch.
Prompts of different lengths are left-padded to the same length; the cache remembers
each row's pad count (`cache.left_pad`), so a row's RoPE position is its slot minus its
padding and its pad slots are masked out of every query's keys. This keeps the cache a
plain rectangle that grows by the same amount for every row, which is all that batched
decoding needs; rows that stop early just keep decoding junk that nobody reads.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmforge.config import ModelConfig
from lmforge.files import atomic_path, atomic_write_text
from lmforge.head_loss import head_cross_entropy

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class ModelLoadError(ValueError):
    """A model folder that cannot be loaded, phrased as one line that names the file."""


# ---------------------------------------------------------------- sizes derived from the config

def head_dim(cfg: ModelConfig) -> int:
    return cfg.d_model // cfg.n_head


def kv_heads(cfg: ModelConfig) -> int:
    return cfg.n_kv_head or cfg.n_head


def ffn_hidden_size(cfg: ModelConfig) -> int:
    """SwiGLU hidden size: the config's, or about 8/3 d_model rounded up to a multiple of 64.

    8/3 keeps the three SwiGLU matrices at the parameter count of a classic 4x GELU MLP;
    a multiple of 64 keeps the matmuls friendly to GPU tiles.
    """
    if cfg.ffn_hidden:
        return cfg.ffn_hidden
    return math.ceil(8 * cfg.d_model / 3 / 64) * 64


# ---------------------------------------------------------------- building blocks

class RMSNorm(nn.Module):
    """RMSNorm, normalized in float32 (bf16 squares lose too much) and scaled after the cast back."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x, weight, eps: float, eps_tensor=None):
    """x * rsqrt(mean(x^2) + eps) * weight over the last dimension, normalized in float32.

    F.rms_norm is that as one call (bit-identical in float32), which also skips two no-op
    casts when x is already float32. On the CPU, though, F.rms_norm is itself a composite of
    seven small ops (10 us for one row); given eps as a 0-d tensor (the inference path does
    on the CPU only), ||x||^2 / d comes from vector_norm and one addcmul instead, the same
    value in four ops (7 us).
    """
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        if eps_tensor is not None:
            norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
            return x * torch.addcmul(eps_tensor, norm, norm, value=1 / x.shape[-1]).rsqrt_() * weight
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def rope_tables(n_positions: int, dim: int, theta: float, device=None):
    """cos and sin, each (n_positions, dim), in the rotate-half layout: [freqs, freqs].

    Computed in float32 exactly as transformers does, so exported logits match.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim))
    positions = torch.arange(n_positions, dtype=torch.int64, device=device).float()
    freqs = torch.outer(positions, inv_freq)
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos(), angles.sin()


def signed_sin(sin):
    """sin with its first half negated, so that rotate_half(x) * sin == x.roll(half) * signed_sin(sin)
    exactly (rotate_half(x) = [-x2, x1], and (-a) * b == a * (-b) in floating point): one roll
    instead of two slices, a negation and a concatenation."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rope(x, cos, sin_signed):
    """x: (B, T, heads, head_dim); cos/sin_signed broadcast to it: (T, 1, hd) or (B, T, 1, hd).

    The rotate-half rotation x * cos + rotate_half(x) * sin, written with signed_sin's table.
    """
    if cos.dtype != x.dtype:
        cos, sin_signed = cos.to(x.dtype), sin_signed.to(x.dtype)
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, -1), sin_signed)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, kv_heads(cfg), head_dim(cfg)
        self.q_proj = nn.Linear(cfg.d_model, self.n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, self.n_kv_head * self.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, self.n_kv_head * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, cfg.d_model, bias=False)
        self.qk_norm = cfg.qk_norm
        if cfg.qk_norm:
            self.q_norm = RMSNorm(self.head_dim, cfg.norm_eps)
            self.k_norm = RMSNorm(self.head_dim, cfg.norm_eps)

    def forward(self, x, cos, sin, cache=None, layer=0, mask=None):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim)
        if self.qk_norm:
            # Qwen3 order: normalize each head's q and k, then rotate
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, hd)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # all cached keys so far, this chunk included
        # With no mask the only cases are a plain causal forward (keys == queries, or a
        # prefill from slot 0) and a one-token decode that sees every cached key.
        causal = mask is None and T > 1
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           enable_gqa=self.n_kv_head != self.n_head)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = ffn_hidden_size(cfg)
        self.gate_proj = nn.Linear(cfg.d_model, hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, cache=None, layer=0, mask=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer, mask)
        return x + self.mlp(self.mlp_norm(x))


# ---------------------------------------------------------------- the inference path

def inference() -> bool:
    """Whether a forward takes the inference path: no autograd (generation, evaluation, RL
    rollouts) and not inside torch.compile (whose graphs keep to the modules)."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


# Every parameter registered anywhere bumps this count, so InferenceWeights notices a weight
# that was replaced by a new Parameter object (its own checks see only in-place changes).
_parameter_registrations = 0


def _count_registration(module, name, param):
    global _parameter_registrations
    _parameter_registrations += 1


nn.modules.module.register_module_parameter_registration_hook(_count_registration)


class InferenceWeights:
    """The same forward as the modules (Block, Attention, MLP, RMSNorm), computed from a flat
    list of weights for generation and evaluation, where nothing needs gradients.

    A one-token decode step of a small model is mostly per-op cost, not arithmetic: the 29
    matmuls of a tiny-preset step take ~0.62 ms of 1.4 on one CPU core, at the memory
    bandwidth, and the rest is ~170 small calls. Here
      * q, k and v are one matmul, and gate and up another (three calls fewer per layer);
      * RoPE turns q and k together (two ops instead of eight);
      * no module attribute lookups or Module.__call__ (each ~1-2.5 us in Python);
      * RMSNorm on the CPU takes rms_norm's four-op form;
      * on the CPU with 2 or more rows (batched decode, the speculative verify, prefill),
        the matrices are multiplied from contiguous (in, out) copies: MKL multiplies a few
        rows by a transposed (out, in) matrix far slower (704x256: 9 rows 55 vs 45 us, 32
        rows 116 vs 80 us) while one row is as fast or faster as F.linear does it
        (benchmarks/cpu_matmul_layout.py). Two and three rows are a little faster as
        F.linear does them in isolation, but between draft steps a 2- or 3-token verify
        took 1.9 ms that way against 1.4 ms from the copies (docs/ARCHITECTURE.md).
    The logits equal the modules' up to float rounding (tests/test_model.py). Training and
    torch.compile use the modules, so there is one set of parameters and these are copies:
    they are remade when any parameter changes in place (the sum of version counters moves:
    an optimizer step, load_state_dict), when the model moves (the first parameter's storage
    moves), or when any Parameter is registered anywhere (one was replaced). RL stages that
    decode between updates therefore always decode with the current weights.
    """

    def __init__(self, model: "GPT"):
        cfg = model.cfg
        self.params = list(model.parameters())
        self.key = self._key()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, kv_heads(cfg), head_dim(cfg)
        self.eps = cfg.norm_eps
        self.cpu = model.embed.weight.device.type == "cpu"
        # rms_norm's four-op CPU form wants eps as a tensor
        self.eps_tensor = torch.full((), cfg.norm_eps) if self.cpu else None
        with torch.inference_mode(False), torch.no_grad():   # plain tensors, usable outside inference_mode
            self.embed = model.embed.weight.detach()
            self.layers = []
            for block in model.layers:
                attn, mlp = block.attn, block.mlp
                qk_norm = None
                if cfg.qk_norm:   # one (heads, head_dim) weight for q's heads and k's together
                    qk_norm = torch.cat([attn.q_norm.weight.detach().expand(self.n_head, -1),
                                         attn.k_norm.weight.detach().expand(self.n_kv_head, -1)])
                self.layers.append((
                    block.attn_norm.weight.detach(),
                    torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).detach(),
                    attn.o_proj.weight.detach(),
                    block.mlp_norm.weight.detach(),
                    torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach(),
                    mlp.down_proj.weight.detach(),
                    qk_norm))
            self.norm = model.norm.weight.detach()
            self.head = model.lm_head.weight.detach()
        self.columns = None   # the (in, out) copies, made on the first multi-row CPU forward

    def _key(self):
        return _parameter_registrations, self.params[0].data_ptr(), sum(p._version for p in self.params)

    def current(self) -> bool:
        return self._key() == self.key

    def _matmul_for(self, x):
        """(layers, head, matmul) for input x: F.linear on (out, in) weights, or on the CPU
        with 2 or more rows, x @ W from contiguous (in, out) copies."""
        if not self.cpu or x.numel() < 2 * x.shape[-1]:
            return self.layers, self.head, F.linear
        if self.columns is None:
            with torch.inference_mode(False), torch.no_grad():
                flip = lambda w: w.t().contiguous()   # noqa: E731
                self.columns = ([(norm_a, flip(qkv), flip(o), norm_m, flip(gu), flip(down), qk_norm)
                                 for norm_a, qkv, o, norm_m, gu, down, qk_norm in self.layers],
                                flip(self.head))
        return self.columns[0], self.columns[1], torch.matmul

    def lm_head(self, hidden):
        _, head, matmul = self._matmul_for(hidden)
        return matmul(hidden, head)

    def forward(self, idx, cos, sin, cache, mask):
        """Embedding, every block and the final norm: GPT.forward's hidden states."""
        x = F.embedding(idx, self.embed)
        B, T, _ = x.shape
        layers, _, matmul = self._matmul_for(x)
        n_head, n_kv, hd = self.n_head, self.n_kv_head, self.head_dim
        heads, eps, eps_tensor = n_head + n_kv, self.eps, self.eps_tensor
        causal, gqa = mask is None and T > 1, n_kv != n_head
        for i, (attn_norm, qkv, o, mlp_norm, gate_up, down, qk_norm) in enumerate(layers):
            out = matmul(rms_norm(x, attn_norm, eps, eps_tensor), qkv)
            qk = out[..., :heads * hd].view(B, T, heads, hd)
            if qk_norm is not None:
                qk = qk_norm * F.rms_norm(qk.float(), (hd,), eps=eps).to(qk.dtype)
            qk = apply_rope(qk, cos, sin)
            q, k = qk[:, :, :n_head].transpose(1, 2), qk[:, :, n_head:].transpose(1, 2)
            v = out[..., heads * hd:].view(B, T, n_kv, hd).transpose(1, 2)
            if cache is not None:
                k, v = cache.update(i, k, v)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=gqa)
            x = x + matmul(y.transpose(1, 2).reshape(B, T, n_head * hd), o)
            gate_up_out = matmul(rms_norm(x, mlp_norm, eps, eps_tensor), gate_up)
            hidden = gate_up_out.shape[-1] // 2
            x = x + matmul(F.silu(gate_up_out[..., :hidden]) * gate_up_out[..., hidden:], down)
        return rms_norm(x, self.norm, eps, eps_tensor)


# ---------------------------------------------------------------- KV cache

class KVCache:
    """Preallocated keys and values for every layer: k, v are (n_layer, B, n_kv_head, max_len, head_dim).

    `pos` is the next slot to write, shared by all rows. `left_pad` (B,) counts each row's
    padding slots at the front (None = no padding). Set `pos` back, or call rollback(n),
    to forget the last n tokens (e.g. rejected speculative tokens); stale slots past `pos`
    are never read and get overwritten by the next forward.
    """

    def __init__(self, n_layer, batch_size, n_kv_head, max_len, head_dim, dtype, device, left_pad=None):
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.pos = 0
        self.reset(left_pad)

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def reset(self, left_pad=None):
        """Start over (same buffers), optionally with new per-row left padding."""
        self.pos = 0
        if left_pad is not None:
            left_pad = torch.as_tensor(left_pad, dtype=torch.long, device=self.k.device)
            if left_pad.shape != (self.batch_size,):
                raise ValueError(f"left_pad must have one entry per row ({self.batch_size}), got {tuple(left_pad.shape)}")
            if not bool(left_pad.any()):
                left_pad = None  # no row is padded: take the cheaper unmasked path
        self.left_pad = left_pad

    def rollback(self, n: int):
        if not 0 <= n <= self.pos:
            raise ValueError(f"cannot roll back {n} tokens from position {self.pos}")
        self.pos -= n

    def update(self, layer: int, k, v):
        """Write this chunk's k, v (B, n_kv_head, T, hd) at pos; return every key/value up to it.

        `pos` itself is advanced by the model after the last layer.
        """
        start, end = self.pos, self.pos + k.shape[2]
        keys, values = self.k[layer], self.v[layer]
        keys.narrow(2, start, end - start).copy_(k)
        values.narrow(2, start, end - start).copy_(v)
        return keys.narrow(2, 0, end), values.narrow(2, 0, end)


# ---------------------------------------------------------------- the model

class GPT(nn.Module):
    sharded = False    # set by train/sharded.py: FSDP2 gathers weights in module hooks, so no inference path

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size is 0: set it from the trained tokenizer before building the model")
        if cfg.d_model % cfg.n_head or head_dim(cfg) % 2 or cfg.n_head % kv_heads(cfg):
            raise ValueError(f"bad attention shape: d_model={cfg.d_model}, n_head={cfg.n_head}, "
                             f"n_kv_head={cfg.n_kv_head} (need d_model % n_head == 0, even head_dim, "
                             "n_head % n_kv_head == 0)")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        cos, sin = rope_tables(cfg.seq_len, head_dim(cfg), cfg.rope_theta)
        # not persistent: derived from the config, so they stay out of the weights file
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", signed_sin(sin), persistent=False)   # see apply_rope
        self.reset_parameters()

    def reset_parameters(self):
        """normal(0, init_std) everywhere; the two projections that write into the residual
        stream get 1/sqrt(2 n_layer) of that, so the stream's variance does not grow with depth."""
        std = self.cfg.init_std
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                scale = 1 / math.sqrt(2 * self.cfg.n_layer) if name.endswith(("o_proj", "down_proj")) else 1.0
                nn.init.normal_(module.weight, mean=0.0, std=std * scale)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        # with tied weights the loop initialized the shared matrix twice; the last one wins, fine

    # ------------------------------------------------------------ forward

    def _rope(self, n_positions: int):
        """The cos and signed sin tables, grown on demand when a cache reaches past seq_len."""
        buffers = self._buffers   # not self.rope_cos: Module.__getattr__ costs ~1 us a lookup
        cos, sin = buffers["rope_cos"], buffers["rope_sin"]
        if n_positions > cos.shape[0]:
            size = max(n_positions, 2 * cos.shape[0])
            # made under generate's inference_mode, they would be unusable in a later training step
            with torch.inference_mode(False):
                cos, sin = rope_tables(size, head_dim(self.cfg), self.cfg.rope_theta, device=cos.device)
            sin = signed_sin(sin)
            self.rope_cos, self.rope_sin = cos, sin
        return cos, sin

    def _cached_positions(self, cache: KVCache, T: int):
        """cos/sin and the attention mask for T new tokens written at cache.pos."""
        start = cache.pos
        if start + T > cache.max_len:
            raise ValueError(f"KV cache is full: {start} + {T} tokens > max_len {cache.max_len}")
        if cache.left_pad is None:
            cos, sin = self._rope(start + T)
            cos, sin = cos[start:start + T, None], sin[start:start + T, None]
            # prefill from 0 is the plain causal case, a single token sees everything; only a
            # chunk after earlier tokens needs the causal mask shifted by `start`
            mask = None
            if start != 0 and T != 1:
                key_slot = torch.arange(start + T, device=cos.device)
                mask = key_slot[None, :] <= torch.arange(start, start + T, device=cos.device)[:, None]
            return cos, sin, mask
        device = cache.left_pad.device
        query_slot = torch.arange(start, start + T, device=device)
        key_slot = torch.arange(start + T, device=device)
        pad = cache.left_pad[:, None]                             # (B, 1)
        positions = (query_slot[None, :] - pad).clamp(min=0)      # (B, T): pad slots get position 0
        cos, sin = self._rope(start + T)  # an upper bound on positions, without a device sync
        cos, sin = cos[positions][:, :, None], sin[positions][:, :, None]  # (B, T, 1, hd)
        causal = key_slot[None, None, :] <= query_slot[None, :, None]          # (1, T, S)
        real_key = key_slot[None, None, :] >= pad[:, :, None]                  # (B, 1, S)
        # a pad query has no real key before it; letting it see itself avoids an all -inf row (NaN)
        itself = key_slot[None, None, :] == query_slot[None, :, None]
        mask = (causal & (real_key | itself))[:, None]                          # (B, 1, T, S)
        return cos, sin, mask

    def _segment_positions(self, segment_ids):
        """cos/sin and mask for packed sequences: each segment (one conversation) restarts its
        positions at 0 and attends only within itself, so packing changes nothing it sees."""
        B, T = segment_ids.shape
        slot = torch.arange(T, device=segment_ids.device)
        starts = torch.ones_like(segment_ids, dtype=torch.bool)
        starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
        first_slot = torch.where(starts, slot[None, :], torch.zeros_like(slot)[None, :]).cummax(dim=1).values
        positions = slot[None, :] - first_slot                                   # (B, T)
        cos, sin = self._rope(T)
        cos, sin = cos[positions][:, :, None], sin[positions][:, :, None]        # (B, T, 1, hd)
        same = segment_ids[:, :, None] == segment_ids[:, None, :]
        causal = slot[None, :, None] >= slot[None, None, :]
        return cos, sin, (same & causal)[:, None]                                # (B, 1, T, T)

    def forward(self, idx, targets=None, cache: KVCache | None = None, loss_mask=None, return_hidden=False,
                segment_ids=None, need_logits=True):
        """idx (B, T) token ids.

        Returns logits (B, T, V) as float32, or (logits, loss) when targets (B, T) are given:
        the mean cross-entropy over positions whose target is not -100 (and loss_mask == 1,
        if given), computed in float32, with the logits then in the compute dtype (bf16
        under autocast). With return_hidden, returns the final-normed hidden states (B, T, d_model)
        instead of logits and skips the LM head (reward/value heads, last-token sampling).
        With a cache, the new tokens are written at cache.pos, attend to everything cached
        before them, and cache.pos advances by T. segment_ids (B, T), for packed training
        sequences, keeps attention and positions inside each segment. With targets and
        need_logits=False, returns (None, loss) from head_loss.head_cross_entropy, which never
        makes the (B, T, V) logits (training losses; not under torch.compile, which fuses the
        plain path itself).
        """
        B, T = idx.shape
        if segment_ids is not None:
            if cache is not None:
                raise ValueError("segment_ids (packed training sequences) cannot be used with a KV cache")
            cos, sin, mask = self._segment_positions(segment_ids)
        elif cache is None:
            cos, sin = self._rope(T)
            cos, sin, mask = cos[:T, None], sin[:T, None], None
        else:
            cos, sin, mask = self._cached_positions(cache, T)
        weights = self.inference_weights() if inference() and not self.sharded else None
        if weights is None:
            x = self.embed(idx)
            for i, layer in enumerate(self.layers):
                x = layer(x, cos, sin, cache, i, mask)
            x = self.norm(x)
        else:
            x = weights.forward(idx, cos, sin, cache, mask)
        if cache is not None:
            cache.pos += T
        if return_hidden:
            if targets is not None:
                raise ValueError("return_hidden skips the LM head, so it cannot compute a loss")
            return x
        if targets is not None and loss_mask is not None:
            targets = torch.where(loss_mask.bool(), targets, torch.full_like(targets, -100))
        if targets is not None and not need_logits and not torch.compiler.is_compiling():
            count = (targets != -100).sum().clamp(min=1)
            return None, head_cross_entropy(x, self.lm_head.weight, targets) / count
        logits = self.lm_head(x) if weights is None else weights.lm_head(x)
        if targets is None:
            return logits.float()   # the one float32 copy (a no-op when already fp32)
        # The loss upcasts inside cross_entropy, and the logits come back in the compute dtype
        # (bf16 under autocast): a training step then never materializes a float32 (B, T, V)
        # tensor, which torch.compile fuses away (-4% step time for gpt2-124m on an H100).
        loss_sum = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                                   ignore_index=-100, reduction="sum")
        # divide by the count ourselves: a batch with nothing to learn gives 0, not NaN
        count = (targets != -100).sum().clamp(min=1)
        return logits, loss_sum / count

    # ------------------------------------------------------------ helpers

    def logits(self, hidden):
        """The LM head on final hidden states (..., d_model) -> (..., V), float32."""
        weights = self.inference_weights() if inference() else None
        return (self.lm_head(hidden) if weights is None else weights.lm_head(hidden)).float()

    def inference_weights(self) -> "InferenceWeights":
        """The weights as the no-grad forward uses them (InferenceWeights), remade when stale."""
        weights = self.__dict__.get("_inference_weights")
        if weights is None or not weights.current():
            weights = self.__dict__["_inference_weights"] = InferenceWeights(self)
        return weights

    def make_cache(self, batch_size: int, max_len: int | None = None, left_pad=None, dtype=None) -> KVCache:
        """An empty KV cache for batch_size rows and max_len slots (default seq_len),
        in the model's dtype and device unless dtype is given."""
        param = self.embed.weight
        return KVCache(self.cfg.n_layer, batch_size, kv_heads(self.cfg), max_len or self.cfg.seq_len,
                       head_dim(self.cfg), dtype or param.dtype, param.device, left_pad)

    def num_params(self, exclude_embedding: bool = False) -> int:
        """Parameter count, shared (tied) matrices counted once.

        exclude_embedding drops the input embedding table (a lookup, not a matmul); with tied
        embeddings that is also the LM head's matrix.
        """
        n = sum(p.numel() for p in self.parameters())
        if exclude_embedding:
            n -= self.embed.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), the PaLM appendix B estimate:

            6 N + 12 L H Q T

        N = parameters that take part in a matmul (everything but the embedding lookup; the
        LM head counts even when it shares the embedding's matrix), L = n_layer, H = n_head,
        Q = head_dim, T = seq_len (the attention scores and their weighted sum; the causal
        half that is skipped is not subtracted, by convention).
        """
        cfg = self.cfg
        T = seq_len or cfg.seq_len
        n_matmul = self.num_params(exclude_embedding=True)
        if cfg.tie_embeddings:
            n_matmul += cfg.vocab_size * cfg.d_model
        return 6 * n_matmul + 12 * cfg.n_layer * cfg.n_head * head_dim(cfg) * T

    def estimate_mfu(self, tokens_per_second: float, peak_flops: float, seq_len: int | None = None) -> float:
        """Model FLOPs utilization: achieved training FLOP/s over the hardware's peak FLOP/s."""
        return self.flops_per_token(seq_len) * tokens_per_second / peak_flops


# ---------------------------------------------------------------- saving and loading

def _unwrap(model: nn.Module) -> nn.Module:
    """The GPT inside torch.compile / DDP wrappers, so saved names carry no prefixes."""
    while not isinstance(model, GPT):
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            raise TypeError(f"save_model expects a GPT, got {type(model).__name__}")
        model = inner
    return model


def save_model(model: GPT, directory) -> None:
    """Write model.safetensors and config.json into directory, each atomically. A sharded
    (FSDP2) model is gathered first: then every rank must call this, and rank 0 writes."""
    from safetensors.torch import save_file

    model = _unwrap(model)
    directory = Path(directory)
    if model.sharded:
        # FSDP2: every rank takes part in gathering the whole model; rank 0 writes it
        from lmforge.train.sharded import full_state_dict
        state = full_state_dict(model)
        if state is None:
            return
    else:
        state = model.state_dict()
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().contiguous().cpu() for name, t in state.items()}
    if model.cfg.tie_embeddings:
        state.pop("lm_head.weight", None)  # the same tensor as embed.weight; safetensors refuses shared storage
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    atomic_write_text(directory / CONFIG_FILE, json.dumps(dataclasses.asdict(model.cfg), indent=2) + "\n")


def load_config_json(directory) -> ModelConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelLoadError(f"{path}: unknown model fields {unknown}")
    return ModelConfig(**data)


def load_model(directory, device="cpu") -> GPT:
    """The GPT saved in directory by save_model. Raises ModelLoadError on a missing,
    truncated, corrupt or mismatched file; never unpickles anything."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg = load_config_json(directory)
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"{path}: not a valid safetensors file ({first_line})") from None
    try:
        model = GPT(cfg)
    except ValueError as err:
        raise ModelLoadError(f"{Path(directory) / CONFIG_FILE}: {err}") from None
    if cfg.tie_embeddings and "embed.weight" in state:
        state["lm_head.weight"] = state["embed.weight"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(f"{path}: does not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ModelLoadError(f"{path}: {name} has shape {tuple(tensor.shape)}, "
                                 f"config.json implies {tuple(expected[name].shape)}")
    model.load_state_dict(state)
    return model.to(device)
