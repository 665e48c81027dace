"""The KV cache: keys and values of every layer kept between decoding steps.

    from lmforge.engine import make_cache
    cache = make_cache(model, batch_size=2, max_len=128, left_pad=[3, 0])
    logits = model(prompt_ids, cache=cache)      # prefill; then one token at a time

One write position `cache.pos` is shared by the whole batch. Prompts of different lengths
are left-padded to the same length; the cache remembers each row's pad count
(`cache.left_pad`), so a row's RoPE position is its slot minus its padding and its pad
slots are masked out of every query's keys (GPT.forward does both). This keeps the cache a
plain rectangle that grows by the same amount for every row, which is all that batched
decoding needs; rows that stop early just keep decoding junk that nobody reads.
"""
from __future__ import annotations

import torch

from ..model import head_dim, kv_heads


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



def make_cache(model, batch_size: int, max_len: int | None = None, left_pad=None, dtype=None) -> KVCache:
    """An empty KV cache for the GPT `model`: batch_size rows and max_len slots (default its
    seq_len), in the model's dtype and device unless dtype is given."""
    param = model.embed.weight
    return KVCache(model.cfg.n_layer, batch_size, kv_heads(model.cfg), max_len or model.cfg.seq_len,
                   head_dim(model.cfg), dtype or param.dtype, param.device, left_pad)
