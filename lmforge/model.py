"""The Transformer: a Llama-style decoder, and nothing else.

    from lmforge.config import ModelConfig
    from lmforge.model import GPT
    model = GPT(ModelConfig(vocab_size=4096, n_layer=4, n_head=4, d_model=256))
    logits, loss = model(idx, targets)           # training: (B, T) ids -> (B, T, V), scalar
    logits = model(prompt_ids, cache=cache)      # with a KV cache (lmforge/engine/cache.py)

Saving and loading are lmforge/checkpoints.py; the KV cache, the fast inference path and
sampling are the engine's (lmforge/engine/).

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

KV cache and padding. `forward` takes any cache with the KVCache interface (k, v, pos,
max_len, left_pad, update): one write position shared by the batch, and each row's count of
left padding, so a row's RoPE position is its slot minus its padding and its pad slots are
masked out of every query's keys.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .head_loss import head_cross_entropy


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
    seven small ops; given eps as a 0-d tensor (the fast inference path does on the CPU
    only), ||x||^2 / d comes from vector_norm and one addcmul instead, the same value in
    four ops, which is faster for one row (docs/LOG.md).
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


# ---------------------------------------------------------------- the model

class GPT(nn.Module):
    # The fast inference path, or None for the modules: set only by the engine's fast_path()
    # (lmforge/engine/inference_weights.py) to an object that computes the blocks, the final
    # norm and the LM head from its own copies of the weights, without autograd.
    fast = None

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
        buffers = self._buffers   # not self.rope_cos: Module.__getattr__ is slow on the decode path
        cos, sin = buffers["rope_cos"], buffers["rope_sin"]
        if n_positions > cos.shape[0]:
            size = max(n_positions, 2 * cos.shape[0])
            # made under generate's inference_mode, they would be unusable in a later training step
            with torch.inference_mode(False):
                cos, sin = rope_tables(size, head_dim(self.cfg), self.cfg.rope_theta, device=cos.device)
            sin = signed_sin(sin)
            self.rope_cos, self.rope_sin = cos, sin
        return cos, sin

    def _cached_positions(self, cache, T: int):
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

    def forward(self, idx, targets=None, cache=None, loss_mask=None, return_hidden=False,
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
        weights = self.fast
        if weights is not None and torch.is_grad_enabled():
            raise RuntimeError("the fast inference path computes no gradients: train outside engine.fast_path()")
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
        # tensor, which torch.compile fuses away (a faster step on the GPU; docs/LOG.md).
        loss_sum = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1),
                                   ignore_index=-100, reduction="sum")
        # divide by the count ourselves: a batch with nothing to learn gives 0, not NaN
        count = (targets != -100).sum().clamp(min=1)
        return logits, loss_sum / count

    # ------------------------------------------------------------ helpers

    def logits(self, hidden):
        """The LM head on final hidden states (..., d_model) -> (..., V), float32."""
        weights = self.fast
        return (self.lm_head(hidden) if weights is None else weights.lm_head(hidden)).float()

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
