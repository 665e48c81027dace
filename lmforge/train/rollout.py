"""Rollouts for the RL stages (PPO, GRPO): which prompts a step takes, sampling completions
through the shared engine, and turning them into training batches with their log-probabilities.

    from lmforge.train.rollout import make_batches, prompts_for_step, rollout, token_logprobs
    tasks = prompts_for_step(all_tasks, step, count=8, seed=0)      # a pure function of the step
    completions = rollout(model, tokenizer, tasks, group_size=4, max_new_tokens=64, temperature=1.0,
                          top_p=1.0, top_k=0, seed=step)
    batches = make_batches(completions, advantages, keep, batch_size, "token_mean", 64, pad_id, device)

A prompt is anything with `prompt_ids` (GRPO's Task, PPO's Prompt). Log-probabilities are
taken at the rollout temperature (the policy that sampled, as TRL does), and the LM head runs
on completion positions only.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import fast_path, generate


def prompts_for_step(tasks: list, step: int, count: int, seed: int) -> list:
    """`count` tasks for this step: a fresh seeded permutation each epoch, a pure function of the step."""
    picked = []
    for position in range(step * count, (step + 1) * count):
        epoch, index = divmod(position, len(tasks))
        order = np.random.default_rng([seed, epoch]).permutation(len(tasks))
        picked.append(tasks[int(order[index])])
    return picked


def rollout(model, tokenizer, tasks: list, group_size: int, max_new_tokens: int, temperature: float,
            top_p: float, top_k: int, seed: int, tools=None) -> list[dict]:
    """G completions per task in one batched generate call: ids (with <|end|> when the model
    stopped, so stopping is learned too), which of them the policy sampled (`learn`: 0 for
    tool results the engine appended), the answer's text, its tool calls, whether it ended."""
    prompts = [task.prompt_ids for task in tasks for _ in range(group_size)]
    outs = generate(model, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                    top_k=top_k, seed=seed, stop_ids=(tokenizer.end_id,), tokenizer=tokenizer, tools=tools)
    completions = []
    for prompt, out in zip(prompts, outs):
        ended = out.finish_reason == "stop"
        learn = [1 - i for i in out.injected] if out.injected is not None else [1] * len(out.tokens)
        completions.append({"prompt_ids": prompt, "ids": list(out.tokens) + ([tokenizer.end_id] if ended else []),
                            "learn": learn + ([1] if ended else []), "text": out.text.strip(), "ended": ended,
                            "tool_calls": out.tool_calls or []})
    return completions


def make_batches(completions: list[dict], advantages: torch.Tensor, keep: list[int], batch_size: int,
                 loss_type: str, max_completion_tokens: int, pad_id: int, device) -> list[dict]:
    """Micro-batches of the kept completions: right-padded prompt+completion rows, the mask of
    completion targets, and each target token's advantage and completion length."""
    batches = []
    for start in range(0, len(keep), batch_size):
        rows = [completions[i] for i in keep[start:start + batch_size]]
        length = max(len(r["prompt_ids"]) + len(r["ids"]) for r in rows) - 1
        x = torch.full((len(rows), length), pad_id, dtype=torch.long)
        y = torch.full((len(rows), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.bool)
        adv = torch.zeros((len(rows), length))
        seq_len = torch.ones((len(rows), length))
        for row, (i, c) in enumerate(zip(keep[start:start + batch_size], rows)):
            ids = c["prompt_ids"] + c["ids"]
            x[row, :len(ids) - 1] = torch.tensor(ids[:-1])
            y[row, :len(ids) - 1] = torch.tensor(ids[1:])
            first = len(c["prompt_ids"]) - 1            # the position that predicts the first completion id
            # tool results the engine appended are context, never trained on
            mask[row, first:first + len(c["ids"])] = torch.tensor(c.get("learn") or [1] * len(c["ids"]),
                                                                  dtype=torch.bool)
            adv[row] = advantages[i]
            seq_len[row] = max(len(c["ids"]), 1)
        n_completions = len(rows)
        n_tokens = int(mask.sum())
        n_items = {"token_mean": n_tokens, "grpo": n_completions,
                   "dr_grpo": n_completions * max_completion_tokens}[loss_type]
        batches.append({"x": x.to(device), "mask": mask.to(device), "targets": y[mask].to(device),
                        "adv": adv[mask].to(device), "seq_len": seq_len[mask].to(device),
                        "n_items": max(n_items, 1), "n_tokens": n_tokens, "old_logp": None, "ref_logp": None})
    return batches


def token_logprobs(model, lm_head, batch, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of the completion tokens (flat, N) and the full log-softmax rows (N, V),
    under the sampling temperature (the policy that actually sampled them, as TRL does).
    The LM head runs on completion positions only: prompts need no logits."""
    hidden = model(batch["x"], return_hidden=True)
    logits = lm_head(hidden[batch["mask"]]).float() / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    return logp_all.gather(-1, batch["targets"][:, None]).squeeze(-1), logp_all


@torch.no_grad()
def fill_logprobs(model, lm_head, batches: list[dict], key: str, temperature: float) -> None:
    with fast_path(model):
        for batch in batches:
            batch[key] = token_logprobs(model, lm_head, batch, temperature)[0].detach()
