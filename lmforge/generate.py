"""Sampling and generation: the one place where token ids come out of a model.

    from lmforge.generate import generate
    outs = generate(model, [[bos, 17, 42], [bos, 5]], max_new_tokens=32,
                    temperature=0.8, top_p=0.95, seed=0, stop_ids=[end_id])
    outs[0].tokens, outs[0].finish_reason      # new ids (stop token left out), "stop" | "length"

Chat, eval, the server and RL all call this (the serving engine with continuous batching
and speculative decoding will grow here too). A batch of prompts is left-padded, run
through the model once to fill the KV cache (prefill), then decoded one token per step
for all rows together until every row has stopped.

Sampling order, as in transformers: divide logits by the temperature, keep the top_k,
then keep the nucleus (top_p), renormalize, draw. Temperature 0 is greedy (argmax).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Generation:
    tokens: list[int]        # the new ids, without the prompt and without the stop id
    finish_reason: str       # "stop": hit a stop id; "length": max_new_tokens or the context ran out


# ---------------------------------------------------------------- samplers

def next_token_probs(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
    """The distribution the sampler draws from: logits (B, V) -> probabilities (B, V), float32.

    temperature 0 gives all the mass to the argmax. top_k = 0 and top_p = 1.0 are off.
    top_p keeps the smallest set of most likely tokens whose mass reaches top_p (always at
    least one token).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits = logits.float()
    if temperature == 0:
        return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    logits = logits / temperature
    if 0 < top_k < logits.size(-1):
        # keep exactly top_k entries by index (a >= threshold test would keep every tie)
        kept = torch.full_like(logits, float("-inf"))
        values, indices = torch.topk(logits, top_k, dim=-1)
        logits = kept.scatter_(-1, indices, values)
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        # a token is kept while the mass of the more likely tokens has not yet reached top_p;
        # the most likely token is always kept (this also covers top_p == 0)
        keep_sorted = mass_before < top_p
        keep_sorted[..., 0] = True
        keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample_next(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, generator=None):
    """One token per row: logits (B, V) -> ids (B,). Reproducible with a seeded torch.Generator."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ---------------------------------------------------------------- generation

@torch.inference_mode()
def generate(model, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, seed: int | None = None, stop_ids=()) -> list[Generation]:
    """Continue every prompt with up to max_new_tokens ids; one Generation per prompt.

    A row stops at its first stop id (left out of its tokens, finish_reason "stop") or when
    it has max_new_tokens new ids ("length"). The context is the model's seq_len: a prompt
    longer than seq_len - 1 keeps only its last seq_len - 1 ids, and a row gets at most
    seq_len - len(prompt) new ids, also reported as "length". Each row's budget depends only
    on its own prompt, so a row's greedy output is the same alone or in any batch.
    """
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (e.g. <|bos|>)")
    seq_len = model.cfg.seq_len
    prompts = [list(p[-(seq_len - 1):]) for p in prompts]
    budgets = [max(0, min(max_new_tokens, seq_len - len(p))) for p in prompts]
    results = [Generation([], "length") for _ in prompts]
    if max(budgets) == 0:
        return results

    device = model.embed.weight.device
    longest = max(len(p) for p in prompts)
    left_pad = [longest - len(p) for p in prompts]
    # pad ids are never attended to, so any valid id (0) will do
    idx = torch.tensor([[0] * pad + p for pad, p in zip(left_pad, prompts)], dtype=torch.long, device=device)
    cache = model.make_cache(len(prompts), longest + max(budgets), left_pad=left_pad)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    stop_ids = set(stop_ids)
    done = [budget == 0 for budget in budgets]

    # only the last position's logits are needed: skip the LM head for the rest of the prompt
    hidden = model(idx, cache=cache, return_hidden=True)
    while True:
        logits = model.lm_head(hidden[:, -1]).float()
        next_ids = sample_next(logits, temperature, top_k, top_p, generator)
        for row, token in enumerate(next_ids.tolist()):
            if done[row]:
                continue  # finished rows keep decoding in lockstep; their ids are dropped
            if token in stop_ids:
                results[row].finish_reason, done[row] = "stop", True
                continue
            results[row].tokens.append(token)
            if len(results[row].tokens) == budgets[row]:
                done[row] = True
        if all(done):
            return results
        hidden = model(next_ids[:, None], cache=cache, return_hidden=True)


# ---------------------------------------------------------------- display

_EIGHTHS = " ▏▎▍▌▋▊▉"


def format_bar_chart(pairs: list[tuple[str, float]], width: int = 40) -> str:
    """One line per (token, probability): the token's repr, a bar (width = 100%), the percent.

        'the'   ████████████▌                             31.4%
        ' a'    ███▏                                       7.9%
    """
    if not pairs:
        return ""
    labels = [repr(token) for token, _ in pairs]
    label_width = max(len(label) for label in labels)
    lines = []
    for label, (_, prob) in zip(labels, pairs):
        prob = min(max(float(prob), 0.0), 1.0)
        eighths = round(prob * width * 8)
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        lines.append(f"{label:<{label_width}}  {bar:<{width}} {100 * prob:5.1f}%")
    return "\n".join(lines)


# ---------------------------------------------------------------- `lmforge generate` and `lmforge next`

def load_for_sampling(run, stage: str | None):
    """The tokenizer and the model of `stage` (default: the latest finished stage with a model)."""
    from .model import load_model
    from .run import StageError
    from .tokenizer import Tokenizer
    stage = stage or run.latest_model_stage()
    if stage is None or not (run.model_dir(stage) / "model.safetensors").exists():
        raise StageError(f"no trained model in {run.root}" + (f" for stage {stage!r}" if stage else "")
                         + "; run `lmforge run --to pretrain` first")
    return Tokenizer.load(run.tokenizer_dir), load_model(run.model_dir(stage)), stage


def _sampling_args(args, cfg) -> dict:
    pick = lambda value, default: default if value is None else value  # noqa: E731
    settings = {"temperature": pick(args.temperature, cfg.generate.temperature),
                "top_k": pick(args.top_k, cfg.generate.top_k), "top_p": pick(args.top_p, cfg.generate.top_p)}
    from .run import StageError
    if settings["temperature"] < 0 or not 0 < settings["top_p"] <= 1 or settings["top_k"] < 0:
        raise StageError("need --temperature >= 0, 0 < --top-p <= 1 and --top-k >= 0")
    return settings


def cli_generate(args, run, cfg) -> int:
    tokenizer, model, _ = load_for_sampling(run, args.stage)
    settings = _sampling_args(args, cfg)
    prompt_ids = [tokenizer.bos_id] + tokenizer.encode(args.prompt)
    max_new = args.max_new_tokens or cfg.generate.max_new_tokens
    seed = cfg.run.seed if args.seed is None else args.seed
    outs = generate(model, [prompt_ids] * max(1, args.num_samples), max_new_tokens=max_new, seed=seed,
                    stop_ids=(tokenizer.end_id, tokenizer.bos_id), **settings)
    for out in outs:
        print(args.prompt + tokenizer.decode(out.tokens))
    return 0


def cli_next(args, run, cfg) -> int:
    tokenizer, model, stage = load_for_sampling(run, args.stage)
    settings = _sampling_args(args, cfg)
    if args.temperature is None:
        settings["temperature"] = 1.0     # the model's own distribution unless asked otherwise
    ids = torch.tensor([[tokenizer.bos_id] + tokenizer.encode(args.prompt)])
    ids = ids[:, -model.cfg.seq_len:]
    with torch.inference_mode():
        logits = model(ids)[:, -1, :]
    probs = next_token_probs(logits, **settings)[0]
    top = torch.topk(probs, min(args.show, probs.numel()))
    pairs = [(tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(top.values, top.indices) if p > 0]
    print(f"next token after {args.prompt!r} ({stage} model, temperature {settings['temperature']}):")
    print(format_bar_chart(pairs))
    return 0
