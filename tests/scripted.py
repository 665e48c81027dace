"""A model that writes given conversations, for testing the tool loop through the real engine.

    model = ScriptModel(tokenizer, [tokenizer.render_chat(messages, tools=schemas)[0], ...])

Each script is the full token list of a conversation (prompt, tool calls, tool results,
answer). A row's script is the one whose beginning equals the row's context at its prefill;
from then on the model predicts `script[position + 1]` at each position. The script's index
and the position are written into the KV cache like real keys and read back at every decode
step, so the engine's row bookkeeping (left padding, shifts, rows moved when others finish,
rows parked while a tool runs and prefilled again) is exercised as for a real model. Tool
results are context the engine injects: if it injected anything but the script's tokens, the
rest of the answer would come out shifted and the test comparing it would fail.
"""
from __future__ import annotations

import torch

from lmforge.config import ModelConfig
from lmforge.model import GPT


class ScriptModel(GPT):
    def __init__(self, tokenizer, scripts: list[list[int]], seq_len: int = 256):
        super().__init__(ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=seq_len, n_layer=1, n_head=1,
                                     d_model=8))
        self.scripts = [list(s) for s in scripts]
        self.end_id = tokenizer.end_id
        self.eval()

    def _script_of(self, context: list[int]) -> int:
        for index, script in enumerate(self.scripts):
            if script[:len(context)] == context:
                return index
        raise AssertionError(f"no script begins with this context ({len(context)} tokens)")

    def forward(self, idx, targets=None, cache=None, return_hidden=False, **kwargs):
        assert cache is not None and return_hidden, "the engine asks for hidden states with a cache"
        B, T = idx.shape
        start = cache.pos
        pads = cache.left_pad.tolist() if cache.left_pad is not None else [0] * B
        hidden = torch.zeros(B, T, self.cfg.d_model)
        for b in range(B):
            if start == 0 or T > 1:      # a prefill: the row's whole context is here
                script = self._script_of(idx[b, max(0, pads[b] - start):].tolist())
            else:                        # a decode step: the row's script is in its last slot
                script = int(cache.k[0, b, 0, start - 1, 0])
            for t in range(T):
                position = start + t - pads[b]
                cache.k[0, b, 0, start + t, 0] = script
                hidden[b, t, 0], hidden[b, t, 1] = script, position
        cache.pos += T
        return hidden

    def logits(self, hidden):
        rows = hidden.reshape(-1, hidden.shape[-1])
        out = torch.full((rows.shape[0], self.cfg.vocab_size), -1e9)
        for i, (script, position) in enumerate(rows[:, :2].tolist()):
            tokens = self.scripts[int(script)]
            nxt = int(position) + 1
            out[i, tokens[nxt] if nxt < len(tokens) else self.end_id] = 0.0
        return out.view(*hidden.shape[:-1], -1)
