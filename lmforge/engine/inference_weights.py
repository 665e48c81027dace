"""The fast inference path: the model's forward from flat weight copies, asked for explicitly.

    from lmforge.engine import fast_path
    with torch.no_grad(), fast_path(model):      # evaluation, RL log-probabilities, the engine
        logits = model(ids)

GPT.forward computes its blocks with the modules unless `model.fast` is set; `fast_path`
sets it, on every GPT inside the module it is given, to that model's InferenceWeights
(remade when stale) and clears it on the way out. Nothing switches on grad mode: the
engine, evaluation and the RL stages' no-gradient passes ask for this path, training
never does (GPT.forward refuses the fast path with gradients on). A model sharded with
FSDP2 keeps to its modules, whose hooks gather the weights.

InferenceWeights is the same forward as the modules (Block, Attention, MLP, RMSNorm) from a
flat list of weights. A one-token decode step of a small model is mostly per-op cost, not
arithmetic, so:
  * q, k and v are one matmul, and gate and up another (three calls fewer per layer);
  * RoPE turns q and k together (two ops instead of eight);
  * no module attribute lookups or Module.__call__;
  * RMSNorm on the CPU takes rms_norm's four-op form;
  * on the CPU with 2 or more rows (batched decode, the speculative verify, prefill), the
    matrices are multiplied from contiguous (in, out) copies: MKL multiplies a few rows by a
    transposed (out, in) matrix far slower, while one row is as fast as F.linear does it
    (benchmarks/cpu_matmul_layout.py; the figures are in docs/LOG.md).
The logits equal the modules' up to float rounding (tests/test_model.py). There is one set of
parameters and these are copies: `fast_path` remakes them when any parameter changed in
place (the sum of version counters moved: an optimizer step, load_state_dict), when the
model moved (the first parameter's storage moved), or when a Parameter or submodule was
replaced. RL stages that decode between updates therefore always decode with the current
weights.
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from ..device import is_sharded
from ..model import GPT, apply_rope, head_dim, kv_heads, rms_norm


class fast_path:
    """Every GPT inside the modules (None ones skipped) runs its forward on InferenceWeights
    until the block ends. Nested use is harmless: a model already on the fast path is left as it is.
    A class rather than a generator: the engine enters it once per decoding step."""

    def __init__(self, *modules: torch.nn.Module | None):
        self.modules = modules
        self.models: list[GPT] = []

    def __enter__(self) -> None:
        for module in self.modules:
            if module is None:
                continue
            inside = [module] if isinstance(module, GPT) else module.modules()   # a bare GPT (the engine): no walk
            for model in inside:
                if isinstance(model, GPT) and model.fast is None and not is_sharded(model) and model not in self.models:
                    self.models.append(model)
        for model in self.models:
            # a plain attribute: written straight into the instance, past Module.__setattr__'s checks
            model.__dict__["fast"] = inference_weights(model)

    def __exit__(self, *exc) -> None:
        for model in self.models:
            model.__dict__["fast"] = None
        self.models = []


def inference_weights(model: GPT) -> InferenceWeights:
    """The model's InferenceWeights, remade when stale (see InferenceWeights.current)."""
    weights = model.__dict__.get("_inference_weights")
    if weights is None or not weights.current():
        weights = model.__dict__["_inference_weights"] = InferenceWeights(model)
    return weights


_version = operator.attrgetter("_version")


class InferenceWeights:
    """GPT's blocks, final norm and LM head computed from flat copies of its weights (see above)."""

    def __init__(self, model: GPT):
        cfg = model.cfg
        self.params = list(model.parameters())
        # where each parameter and submodule hangs: a replaced Parameter or module shows up here
        owners = [(owner._parameters, name, p) for owner in model.modules()
                  for name, p in owner._parameters.items() if p is not None]
        owners += [(owner._modules, name, child) for owner in model.modules()
                   for name, child in owner._modules.items()]
        self.where, self.names, self.objects = (list(column) for column in zip(*owners))
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
        return self.params[0].data_ptr(), sum(map(_version, self.params))

    def current(self) -> bool:
        """Whether these copies still match the model: no in-place change (version counters), no
        move (storage), no Parameter or submodule replaced (the same objects in the same places)."""
        # checked once per decoding step, so in C loops: each slot still holds the same object
        return self._key() == self.key and all(map(operator.is_, map(dict.get, self.where, self.names), self.objects))

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

