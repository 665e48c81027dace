"""The Transformer: a Llama-style decoder, its KV cache, and saving / loading it.

    from lmforge.config import ModelConfig
from lmforge.files import atomic_path, atomic_write_text
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

def linear(x, weight):
    """F.linear(x, weight), but on the CPU outside autograd with 4 or more rows, x @ weight.T
    from a cached contiguous transpose.

    MKL multiplies a few rows by a transposed (out, in) matrix far slower than by a
    contiguous (in, out) one: for a 704x256 matrix, 9 rows take 55 vs 45 us and 32 rows 116
    vs 80 us, while 1 or 2 rows are as fast or faster as F.linear does them
    (benchmarks/cpu_matmul_layout.py). Those are the speculative verify forward, batched
    decode and prefill. Training (autograd needs the parameter itself) and GPUs (cuBLAS does
    not care) take F.linear. The copy is remade whenever the weight changes in place (an
    optimizer step, load_state_dict: its version moves) or is replaced (its storage moves),
    so RL stages that decode between updates stay exact.
    """
    if weight.device.type != "cpu" or x.numel() < 4 * x.shape[-1] or torch.is_grad_enabled():
        return F.linear(x, weight)
    key = (weight._version, weight.data_ptr())
    cached = getattr(weight, "_lmforge_transposed", None)
    if cached is None or cached[0] != key:
        cached = (key, weight.t().contiguous())
        weight._lmforge_transposed = cached
    return x @ cached[1]


class RMSNorm(nn.Module):
    """RMSNorm, normalized in float32 (bf16 squares lose too much) and scaled after the cast back."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # F.rms_norm is the same x * rsqrt(mean(x^2) + eps) * weight as one op (bit-identical in
        # float32); one op instead of seven matters in one-token decode steps, and so does
        # skipping the two no-op casts when x is already float32
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return self.weight * F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)


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
    """x: (B, heads, T, head_dim); cos/sin_signed broadcast to it: (1, 1, T, hd) or (B, 1, T, hd).

    The rotate-half rotation x * cos + rotate_half(x) * sin, written with signed_sin's table.
    """
    if cos.dtype != x.dtype:
        cos, sin_signed = cos.to(x.dtype), sin_signed.to(x.dtype)
    return x * cos + x.roll(x.shape[-1] // 2, -1) * sin_signed


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
        # linear() on the weights rather than calling the nn.Linear modules: the modules are
        # kept for their parameter names (the Hugging Face mapping), but a module call costs
        # about as much as a small matmul in a one-token decode step (-5% per token on CPU)
        q = linear(x, self.q_proj.weight).view(B, T, self.n_head, self.head_dim)
        k = linear(x, self.k_proj.weight).view(B, T, self.n_kv_head, self.head_dim)
        v = linear(x, self.v_proj.weight).view(B, T, self.n_kv_head, self.head_dim)
        if self.qk_norm:
            # Qwen3 order: normalize each head's q and k, then rotate
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # all cached keys so far, this chunk included
        # With no mask the only cases are a plain causal forward (keys == queries, or a
        # prefill from slot 0) and a one-token decode that sees every cached key.
        causal = mask is None and T > 1
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           enable_gqa=self.n_kv_head != self.n_head)
        return linear(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim), self.o_proj.weight)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = ffn_hidden_size(cfg)
        self.gate_proj = nn.Linear(cfg.d_model, hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, cfg.d_model, bias=False)

    def forward(self, x):
        # linear() on the weights for the reasons given in Attention.forward and linear()
        return linear(F.silu(linear(x, self.gate_proj.weight)) * linear(x, self.up_proj.weight),
                      self.down_proj.weight)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, cache=None, layer=0, mask=None):
        # the parts' forward methods directly, not through Module.__call__ (the hook machinery
        # costs ~2.5 us a call, 16 calls a decode step); hooks and wrappers belong on the Block
        x = x + self.attn.forward(self.attn_norm.forward(x), cos, sin, cache, layer, mask)
        return x + self.mlp.forward(self.mlp_norm.forward(x))


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
        if n_positions > self.rope_cos.shape[0]:
            size = max(n_positions, 2 * self.rope_cos.shape[0])
            # made under generate's inference_mode, they would be unusable in a later training step
            with torch.inference_mode(False):
                cos, sin = rope_tables(size, head_dim(self.cfg), self.cfg.rope_theta, device=self.rope_cos.device)
            self.rope_cos, self.rope_sin = cos, signed_sin(sin)
        return self.rope_cos, self.rope_sin

    def _cached_positions(self, cache: KVCache, T: int):
        """cos/sin and the attention mask for T new tokens written at cache.pos."""
        start = cache.pos
        if start + T > cache.max_len:
            raise ValueError(f"KV cache is full: {start} + {T} tokens > max_len {cache.max_len}")
        device = self.rope_cos.device
        if cache.left_pad is None:
            cos, sin = self._rope(start + T)
            cos, sin = cos[start:start + T][None, None], sin[start:start + T][None, None]
            # prefill from 0 is the plain causal case, a single token sees everything; only a
            # chunk after earlier tokens needs the causal mask shifted by `start`
            mask = None
            if start != 0 and T != 1:
                key_slot = torch.arange(start + T, device=device)
                mask = key_slot[None, :] <= torch.arange(start, start + T, device=device)[:, None]
            return cos, sin, mask
        query_slot = torch.arange(start, start + T, device=device)
        key_slot = torch.arange(start + T, device=device)
        pad = cache.left_pad[:, None]                             # (B, 1)
        positions = (query_slot[None, :] - pad).clamp(min=0)      # (B, T): pad slots get position 0
        cos, sin = self._rope(start + T)  # an upper bound on positions, without a device sync
        cos, sin = cos[positions][:, None], sin[positions][:, None]  # (B, 1, T, hd)
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
        cos, sin = cos[positions][:, None], sin[positions][:, None]              # (B, 1, T, hd)
        same = segment_ids[:, :, None] == segment_ids[:, None, :]
        causal = slot[None, :, None] >= slot[None, None, :]
        return cos, sin, (same & causal)[:, None]                                # (B, 1, T, T)

    def forward(self, idx, targets=None, cache: KVCache | None = None, loss_mask=None, return_hidden=False,
                segment_ids=None):
        """idx (B, T) token ids.

        Returns logits (B, T, V) as float32, or (logits, loss) when targets (B, T) are given:
        the mean cross-entropy over positions whose target is not -100 (and loss_mask == 1,
        if given), computed in float32, with the logits then in the compute dtype (bf16
        under autocast). With return_hidden, returns the final-normed hidden states (B, T, d_model)
        instead of logits and skips the LM head (reward/value heads, last-token sampling).
        With a cache, the new tokens are written at cache.pos, attend to everything cached
        before them, and cache.pos advances by T. segment_ids (B, T), for packed training
        sequences, keeps attention and positions inside each segment.
        """
        B, T = idx.shape
        if segment_ids is not None:
            if cache is not None:
                raise ValueError("segment_ids (packed training sequences) cannot be used with a KV cache")
            cos, sin, mask = self._segment_positions(segment_ids)
        elif cache is None:
            cos, sin = self._rope(T)
            cos, sin, mask = cos[:T][None, None], sin[:T][None, None], None
        else:
            cos, sin, mask = self._cached_positions(cache, T)
        x = self.embed(idx)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, i, mask)
        x = self.norm(x)
        if cache is not None:
            cache.pos += T
        if return_hidden:
            if targets is not None:
                raise ValueError("return_hidden skips the LM head, so it cannot compute a loss")
            return x
        logits = self.logits(x) if targets is None else self.lm_head(x)
        if targets is None:
            return logits.float()   # the one float32 copy (a no-op when already fp32)
        if loss_mask is not None:
            targets = torch.where(loss_mask.bool(), targets, torch.full_like(targets, -100))
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
        """The LM head on final hidden states (..., d_model) -> (..., V), through linear()
        (the fast layout for sampling several rows on the CPU); float32."""
        return linear(hidden, self.lm_head.weight).float()

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
    """Write model.safetensors and config.json into directory, each atomically."""
    from safetensors.torch import save_file

    model = _unwrap(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    if model.cfg.tie_embeddings:
        state.pop("lm_head.weight")  # the same tensor as embed.weight; safetensors refuses shared storage
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
