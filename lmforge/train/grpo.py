"""Reasoning RL with verifiable rewards (GRPO): the SFT model learns from answers it can check.

    lmforge grpo --run-dir runs/tiny                      # after sft; writes models/grpo, logs/grpo.jsonl
    lmforge grpo --run-dir runs/tiny grpo.loss_type=dr_grpo grpo.scale_rewards=none grpo.beta=0.04
    lmforge grpo --run-dir runs/tiny grpo.data_path=gsm8k.jsonl grpo.rewards=correctness,format \\
        grpo.reward_weights=1,0.1                         # your data, a small format bonus
    lmforge grpo --run-dir runs/tiny grpo.rewards=correctness,my_pkg.rewards:short_answers

One GRPO step:
  1. take `prompts_per_step` tasks (a seeded order per epoch, so the step alone fixes them);
  2. sample G = `group_size` completions per prompt through the shared generation engine,
     all rows in one batch (lmforge/generate.py), stopping at <|end|>;
  3. score every completion with the reward functions (lmforge/train/rewards.py);
  4. advantage = reward - mean of its group, divided by the group's std, the batch's std
     or nothing (`scale_rewards`); groups whose rewards are all equal carry no signal and
     are skipped (not computed at all) and counted;
  5. `iterations` (mu) optimizer steps on this batch through the shared loop's
     Trainer.train_step, each minimizing the clipped surrogate

        -min(r A, clip(r, 1 - epsilon, 1 + epsilon_high) A) + beta * KL_k3(policy || reference)

     per completion token, r = pi(token) / pi_old(token) (pi_old: the policy that sampled;
     with mu = 1 r is 1 in value and the gradient is A * grad log pi), k3 =
     exp(ref - logp) - (ref - logp) - 1, aggregated as
        token_mean : sum over all tokens / number of tokens           (DAPO)
        grpo       : mean over each completion's tokens, then over completions (the paper)
        dr_grpo    : sum over all tokens / (completions * max_completion_tokens)  (Dr. GRPO)
     The loop divides the summed loss by the batch's item count (tokens, completions or
     completions x max tokens), which is exactly these normalizers.
     Log-probabilities are taken at the rollout temperature (the policy that sampled), and
     the LM head runs on completion positions only. `freeze_embeddings` keeps the token
     embeddings (and a tied head) fixed.

With `grpo.tools` (e.g. calculator, lookup) the prompts declare the tools and rollouts are
multi-turn: a completion may call a tool, the engine runs it and appends the result, and
the completion goes on (the one tool loop, lmforge/tools/session.py). The tool results are
part of the context every log-probability is computed in, but are masked from the loss:
only what the policy sampled is trained. Rewards see the answer's text (calls and results
left out) and each completion's calls in the `tool_calls` column (the optional
`tool_format` reward checks that they parse). Evaluation then measures pass@1 with the
tools and without them, before and after.

Each step writes one row to logs/grpo.jsonl: reward mean and std (and per reward
function), fraction of zero-std groups, completion lengths, entropy, clip fraction, KL,
time (and with tools: calls, malformed calls, seconds inside tools and waiting for them). A reward function that raises or returns a non-number scores 0 for those
completions; the reason is counted in the row and the manifest, and training goes on.
Test pass@1 (greedy) and pass@k, and dev pass@1, are measured before (the SFT model) and
after, per difficulty, for the report card (lmforge/evals/reasoning.py). Test and dev are
the reasoning stage's chain-split files, grpo.eval_path / grpo.dev_path, or, for your own
data_path without them, held-out slices of it; the manifest's `overlap` counts held-out
prompts and solution chains found in the training tasks (0).

Checkpoints are the shared loop's (models/grpo/trainer_state.pt, every `checkpoint_every`
steps); a killed run resumes from the last one. Rollouts depend on the weights, so a
resumed run repeats the steps after the checkpoint with fresh samples, not the same ones.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..tasks.lookup_rl import lookup_tasks
from ..tasks.reasoning import Task, balanced_subset, load_tasks
from ..data.splits import keyed_fraction, pick
from ..device import pick_device, set_threads
from ..evals.card import read_log
from ..evals.overlap import FactFinder, chain_overlap, prompt_overlap
from ..evals.reasoning import evaluate_reasoning
from ..evals.stats import proportion
from ..checkpoints import load_model, save_model
from ..errors import StageError
from ..rundir import StageContext
from ..tokenizer import Tokenizer
from ..tools.registry import ToolBox, ToolError
from .loop import Trainer, budget_line, budget_metrics
from .rewards import resolve_reward, score
from .rollout import fill_logprobs, make_batches, prompts_for_step, rollout, token_logprobs

# ---------------------------------------------------------------- advantages and the loss

def group_advantages(rewards: list[float], group_size: int, scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantage per completion, whether each group's rewards are all equal)."""
    r = torch.tensor(rewards, dtype=torch.float64).view(-1, group_size)
    advantage = r - r.mean(dim=1, keepdim=True)
    if scale == "group":
        advantage = advantage / (r.std(dim=1, keepdim=True) + 1e-4)
    elif scale == "batch":
        advantage = advantage / (r.std() + 1e-4)
    flat = (r.amax(dim=1) - r.amin(dim=1)) <= 1e-9
    return advantage.view(-1).float(), flat


def make_loss_fn(lm_head, grpo_cfg, stats: Counter):
    """loss_fn(model, batch) for Trainer.train_step: the clipped surrogate (+ k3 KL) summed as the
    loss type wants it; side statistics are added to `stats`."""
    def loss_fn(model, batch) -> torch.Tensor:
        logp, logp_all = token_logprobs(model, lm_head, batch, grpo_cfg.temperature)
        old = batch["old_logp"] if batch["old_logp"] is not None else logp.detach()
        adv = batch["adv"]
        ratio = torch.exp(logp - old)
        clipped = ratio.clamp(1 - grpo_cfg.epsilon, 1 + grpo_cfg.epsilon_high)
        per_token = -torch.minimum(ratio * adv, clipped * adv)
        if grpo_cfg.beta > 0:
            delta = batch["ref_logp"] - logp
            kl = torch.exp(delta) - delta - 1
            per_token = per_token + grpo_cfg.beta * kl
            stats["kl_sum"] += float(kl.detach().sum())
        if grpo_cfg.loss_type == "grpo":
            per_token = per_token / batch["seq_len"]
        with torch.no_grad():
            stats["entropy_sum"] += float(-(logp_all.exp() * logp_all).sum(-1).sum())
            clipped_low = (ratio < 1 - grpo_cfg.epsilon) & (adv < 0)
            clipped_high = (ratio > 1 + grpo_cfg.epsilon_high) & (adv > 0)
            stats["clipped"] += int((clipped_low | clipped_high).sum())
            stats["tokens"] += batch["n_tokens"]
        return per_token.sum()
    return loss_fn


# ---------------------------------------------------------------- one GRPO step

def grpo_step(trainer: Trainer, ref_model, tokenizer, tasks: list[Task], reward_fns: list, grpo_cfg, seed: int,
              tools=None) -> dict:
    """Rollout, rewards, advantages and `iterations` optimizer steps; returns the log row's numbers.
    tools: a ToolBox the rollouts may call (the tasks' prompts declare it)."""
    model, lm_head = trainer.model, trainer.model.lm_head
    started = time.perf_counter()
    before = dict(tools.stats) if tools is not None else {}
    model.eval()
    completions = rollout(model, tokenizer, tasks, grpo_cfg.group_size, grpo_cfg.max_completion_tokens, grpo_cfg.temperature,
                          grpo_cfg.top_p, grpo_cfg.top_k, seed, tools)
    model.train()
    rollout_seconds = time.perf_counter() - started

    g = grpo_cfg.group_size
    columns: dict[str, list] = {"answer": [t.answer for t in tasks for _ in range(g)]}
    for name in sorted({key for t in tasks for key in t.columns} - {"answer", "prompts", "completions"}):
        columns[name] = [t.columns.get(name) for t in tasks for _ in range(g)]
    if tools is not None:
        columns["tool_calls"] = [c["tool_calls"] for c in completions]
    step_errors: Counter = Counter()
    rewards, per_function = score(reward_fns, [t.prompt for t in tasks for _ in range(g)],
                                  [c["text"] for c in completions], columns, step_errors)
    advantages, flat = group_advantages(rewards, g, grpo_cfg.scale_rewards)
    # A flat group's advantages are all 0: it adds nothing to the gradient, so by default it
    # is not computed at all (skip_flat_groups=false computes it, as TRL does).
    keep = [i for i in range(len(completions)) if not (grpo_cfg.skip_flat_groups and flat[i // g])]

    stats: Counter = Counter()
    losses = []
    if keep:
        batches = make_batches(completions, advantages, keep, grpo_cfg.batch_size, grpo_cfg.loss_type,
                               grpo_cfg.max_completion_tokens, tokenizer.pad_id, trainer.device)
        if grpo_cfg.iterations > 1:       # the sampling policy's log-probs, fixed while the weights move
            fill_logprobs(model, lm_head, batches, "old_logp", grpo_cfg.temperature)
        if grpo_cfg.beta > 0:
            fill_logprobs(ref_model, ref_model.lm_head, batches, "ref_logp", grpo_cfg.temperature)
        loss_fn = make_loss_fn(lm_head, grpo_cfg, stats)
        for _ in range(grpo_cfg.iterations):
            losses.append(trainer.train_step(batches, loss_fn))
    lengths = [len(c["ids"]) for c in completions]
    reward_tensor = torch.tensor(rewards)
    row = {
        "loss": round(float(np.mean(losses)), 5) if losses else None,
        "reward_mean": round(float(reward_tensor.mean()), 4),
        "reward_std": round(float(reward_tensor.std()), 4),
        **{f"reward_{name}": round(float(np.mean(values)), 4) for name, values in per_function.items()},
        "zero_std_fraction": round(float(flat.float().mean()), 4),
        "groups_skipped": int(flat.sum()) if grpo_cfg.skip_flat_groups else 0,
        "completion_length_mean": round(float(np.mean(lengths)), 2),
        "completion_length_max": int(max(lengths)),
        "truncated_fraction": round(1 - float(np.mean([c["ended"] for c in completions])), 4),
        "entropy": round(stats["entropy_sum"] / stats["tokens"], 4) if stats["tokens"] else None,
        "clip_fraction": round(stats["clipped"] / stats["tokens"], 4) if stats["tokens"] else None,
        "rollout_seconds": round(rollout_seconds, 3),
        "step_seconds": round(time.perf_counter() - started, 3),
        "completions_per_second": round(len(completions) / max(rollout_seconds, 1e-9), 1),
    }
    if tools is not None:
        calls = [call for c in completions for call in c["tool_calls"]]
        row.update({"tool_calls": len(calls), "malformed_calls": sum(bool(c["malformed"]) for c in calls),
                    "tool_seconds": round(tools.stats["tool_seconds"] - before["tool_seconds"], 4),
                    "tool_wait_seconds": round(tools.stats["wait_seconds"] - before["wait_seconds"], 4)})
    if grpo_cfg.beta > 0 and stats["tokens"]:
        row["kl"] = round(stats["kl_sum"] / stats["tokens"], 5)
    if step_errors:
        row["reward_errors"] = dict(step_errors)
    return row


# ---------------------------------------------------------------- the stage

def build_rewards(grpo_cfg) -> list[tuple[str, object, float]]:
    weights = [float(w) for w in grpo_cfg.reward_weights] or [1.0] * len(grpo_cfg.rewards)
    if not grpo_cfg.rewards:
        raise StageError("grpo.rewards is empty; name at least one reward (e.g. correctness)")
    try:
        return [(str(spec), resolve_reward(str(spec)), weight) for spec, weight in zip(grpo_cfg.rewards, weights)]
    except ValueError as err:
        raise StageError(f"grpo.rewards: {err}") from None


def run_stage(ctx: StageContext) -> dict:
    cfg, run = ctx.cfg, ctx.run
    grpo_cfg = cfg.grpo
    # the seed of what training draws (task order, invented names, rollouts); held-out splits and
    # evaluation keep run.seed, so runs of several GRPO seeds share their test set
    train_seed = grpo_cfg.seed or cfg.run.seed
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    reward_fns = build_rewards(grpo_cfg)
    set_threads(cfg.run.threads)
    device = pick_device(cfg.run.device)
    policy = load_model(run.model_dir("sft"), device=device)
    max_prompt = policy.cfg.seq_len - grpo_cfg.max_completion_tokens
    lookup = grpo_cfg.tasks == "lookup"
    if lookup and "lookup" not in grpo_cfg.tools:
        raise StageError("grpo.tasks=lookup: offer the lookup tool too, e.g. grpo.tools=[lookup]")
    if lookup and grpo_cfg.data_path:
        raise StageError("grpo.tasks=lookup makes its own tasks; leave grpo.data_path empty")
    data_path = Path(grpo_cfg.data_path) if grpo_cfg.data_path else run.path("datasets", "reasoning.jsonl")
    if not lookup and not data_path.exists():
        raise StageError(f"{data_path} does not exist; run `lmforge reasoning` or set grpo.data_path")
    box = None
    if grpo_cfg.tools:
        if not tokenizer.has_tools:
            raise StageError("grpo.tools: this run's tokenizer has no tool tokens (it was trained before tool use); "
                             "set grpo.tools=[] or retrain from the tokenizer stage")
        try:
            box = ToolBox.from_config(grpo_cfg.tools, run, cfg.tools)
        except ToolError as err:
            raise StageError(f"grpo.tools: {err}") from None
    if lookup:
        sft_data = Path(cfg.sft.data_path) if cfg.sft.data_path else run.path("datasets", "sft.jsonl")
        made, counts, sources = lookup_tasks(run, tokenizer, max_prompt, box.schemas(), train_seed, sft_data,
                                               values=cfg.grpo.lookup_values)
        tasks, stats, data_path = made["train"], counts["train"], run.path("data", "index", "practice.jsonl")
        held = {"train": tasks, "test": (made["test"], counts["test"]), "dev": (made["dev"], counts["dev"])}
    else:
        tasks, stats = load_tasks(data_path, tokenizer, max_prompt, grpo_cfg.answer_column,
                                  tools=box.schemas() if box is not None else None)
        held, sources = held_out_tasks(run, grpo_cfg, tokenizer, max_prompt, tasks, cfg.run.seed)
    tasks = held.pop("train")
    if not tasks:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "the file is empty"
        raise StageError(f"no usable training tasks in {data_path} ({reasons})")
    test_tasks = balanced_subset(held["test"][0], grpo_cfg.eval_per_difficulty)
    dev_tasks = balanced_subset(held["dev"][0], grpo_cfg.dev_per_difficulty) if grpo_cfg.dev_per_difficulty else []
    overlap = task_overlap(tasks, {"test": test_tasks, "dev": dev_tasks})
    ctx.progress(f"{len(tasks):,} training tasks ({dict(stats)}); {len(test_tasks)} test problems "
                 f"({sources['test']}), {len(dev_tasks)} dev ({sources['dev']}); test overlap with training: "
                 f"{overlap['test']}")

    def evaluate(model, eval_tasks, k: int, tools=box) -> dict:
        return evaluate_reasoning(model, tokenizer, eval_tasks, k, grpo_cfg.eval_temperature,
                                  grpo_cfg.max_completion_tokens, seed=cfg.run.seed, examples=grpo_cfg.eval_examples,
                                  k_per_difficulty=grpo_cfg.eval_k_per_difficulty, tools=tools)

    eval_started = time.perf_counter()
    before = evaluate(policy, test_tasks, grpo_cfg.eval_k)
    eval_seconds = time.perf_counter() - eval_started
    dev_before = evaluate(policy, dev_tasks, 0)
    # with tools, the same model is also measured without them (pass@1 only)
    plain_before = evaluate(policy, test_tasks, 0, None) if box is not None else None
    ctx.progress(f"SFT model: test pass@1 {before['pass@1']:.1%}, pass@{grpo_cfg.eval_k} {before['pass@k']:.1%}; "
                 f"dev pass@1 {dev_before['pass@1']:.1%}"
                 + (f"; without tools test pass@1 {plain_before['pass@1']:.1%}" if plain_before else ""))

    ref_model = None
    if grpo_cfg.beta > 0:
        ref_model = load_model(run.model_dir("sft"), device=device).eval()
        ref_model.requires_grad_(False)
    if grpo_cfg.freeze_embeddings:
        # Adam moves every row it gets a gradient for by about lr, however tiny that gradient:
        # the softmax touches the whole vocabulary, and with a tied head that drags the input
        # embeddings of tokens the prompts rely on.
        policy.embed.weight.requires_grad_(False)
    trainer = Trainer(policy, grpo_cfg, out_dir=run.model_dir("grpo"), log_path=run.log_path("grpo"), seed=train_seed,
                      device=device, save_fn=save_model, stage="grpo")
    warned = False

    def step_fn(step: int) -> dict:
        nonlocal warned
        batch_tasks = prompts_for_step(tasks, step, grpo_cfg.prompts_per_step, train_seed)
        seed = train_seed * 1_000_003 + step * 10_007
        row = grpo_step(trainer, ref_model, tokenizer, batch_tasks, reward_fns, grpo_cfg, seed, box)
        if row.get("reward_errors") and not warned:
            warned = True
            ctx.progress(f"reward function problems (counted as reward 0, see logs/grpo.jsonl): "
                         f"{row['reward_errors']}")
        return row

    def dev_fn(model) -> dict:
        # the output is the dev-best of the SFT weights (step 0) and every validation after it:
        # at tiny a few dozen RL steps can as well lose a point as win one
        if trainer.step == 0:
            result = dev_before                                   # measured above
        else:
            # in float32 like every other evaluation (the loop validates in the training precision)
            with torch.autocast(device_type=device.type, enabled=False):
                result = evaluate(model, dev_tasks, 0)
        return {"loss": -result["pass@1"], "pass_at_1": result["pass@1"]}

    result = trainer.run(step_fn, resume=ctx.resume, eval_fn=dev_fn if dev_tasks else None,
                         eval_start=True, postfix=lambda row: {
                             "reward": f"{row['reward_mean']:.3f}", "zero_std": f"{row['zero_std_fraction']:.2f}",
                             "len": f"{row['completion_length_mean']:.0f}"})
    if dev_tasks:
        policy = load_model(run.model_dir("grpo"), device=device)   # the dev-best weights
    after = evaluate(policy, test_tasks, grpo_cfg.eval_k)
    dev_after = evaluate(policy, dev_tasks, 0)
    chosen = ("the SFT weights (no validation beat them)" if result.best_step == 0
              else f"step {result.best_step}'s weights" if result.best_step else "the last weights")
    ctx.progress(f"GRPO output, chosen on dev: {chosen}")
    plain_after = evaluate(policy, test_tasks, 0, None) if box is not None else None
    if box is not None:
        box.close()
    ctx.progress(f"GRPO model: test pass@1 {after['pass@1']:.1%} (was {before['pass@1']:.1%}; dev "
                 f"{dev_after['pass@1']:.1%}, was {dev_before['pass@1']:.1%}), "
                 f"pass@{grpo_cfg.eval_k} {after['pass@k']:.1%} (was {before['pass@k']:.1%}); "
                 f"{budget_line(result)} in {result.wall_seconds:.0f}s")
    examples = []
    for b, a in zip(before["examples"], after["examples"]):
        examples.append({**b, "sft_completion": b["completion"], "sft_correct": b["correct"],
                         "grpo_completion": a["completion"], "grpo_correct": a["correct"]})
    for e in examples:
        del e["completion"], e["correct"]
    strip = lambda result: {k: v for k, v in result.items() if k != "examples"}  # noqa: E731
    # the whole run, also across a resume; training rows only (validation-only rows have no reward)
    rows = read_log(trainer.log_path, "reward_mean")
    last = rows[-10:]
    reward_errors: Counter = Counter()
    for r in rows:
        reward_errors.update(r.get("reward_errors", {}))
    groups = len(rows) * grpo_cfg.prompts_per_step
    result = {
        "held_out_split": "test",
        "held_out_source": sources["test"],
        "dev_source": sources["dev"],
        "figures": {"test_pass_at_1": proportion(after["correct"], after["n"]),
                    "test_pass_at_1_sft": proportion(before["correct"], before["n"]),
                    "dev_pass_at_1": proportion(dev_after["correct"], dev_after["n"]),
                    "dev_pass_at_1_sft": proportion(dev_before["correct"], dev_before["n"])},
        "dev_pass_at_1": dev_after["pass@1"],
        "dev_pass_at_1_sft": dev_before["pass@1"],
        "skip_flat_groups": grpo_cfg.skip_flat_groups,
        "overlap": overlap,
        "held_out_pass_at_1": after["pass@1"],
        "held_out_pass_at_1_sft": before["pass@1"],
        "held_out_pass_at_k": after["pass@k"],
        "held_out_pass_at_k_sft": before["pass@k"],
        "pass_at_1_gain": round(after["pass@1"] - before["pass@1"], 4),
        "chosen_step": result.best_step,   # 0: no dev validation beat the SFT weights
        "chosen_dev_pass_at_1": result.best_eval.get("pass_at_1"),   # as validated; dev_pass_at_1 measures it again
        "k": grpo_cfg.eval_k,
        **budget_metrics(result),
        "eval_seconds_each": round(eval_seconds, 2),
        "final_reward_mean": round(float(np.mean([r["reward_mean"] for r in last])), 4) if last else None,
        "first_reward_mean": rows[0]["reward_mean"] if rows else None,
        "zero_std_group_fraction": round(float(np.mean([r["zero_std_fraction"] for r in rows])), 4) if rows else 0.0,
        "groups_skipped": sum(r["groups_skipped"] for r in rows),
        "steps_without_update": sum(r["loss"] is None for r in rows),
        "completions": groups * grpo_cfg.group_size,
        "reward_errors": dict(reward_errors),
        "tasks": dict(sorted(stats.items())),
        "eval_tasks": dict(sorted(held["test"][1].items())),
        "dev_tasks": dict(sorted(held["dev"][1].items())),
        "data": str(data_path),
        "before": strip(before),
        "after": strip(after),
        "dev_before": strip(dev_before),
        "dev_after": strip(dev_after),
        "examples": examples,
        "tools": grpo_cfg.tools,
        "task_kind": grpo_cfg.tasks,
    }
    if lookup:
        result["train_source"] = sources["train"]
    if box is not None:
        extra = tool_metrics(rows, strip(plain_before), strip(plain_after), before, after)
        result["figures"].update(extra.pop("figures_tools"))
        result.update(extra)
    return result


def tool_metrics(rows: list[dict], plain_before: dict, plain_after: dict, before: dict, after: dict) -> dict:
    """GRPO with tools: pass@1 without them, before and after; calls, malformed calls and the
    share of rollout time spent in tools and waiting for them."""
    rollout = sum(r.get("rollout_seconds", 0.0) for r in rows)
    calls = sum(r.get("tool_calls", 0) for r in rows)
    malformed = sum(r.get("malformed_calls", 0) for r in rows)
    eval_calls = {k: before.get("tool_calls", {}).get(k, 0) + after.get("tool_calls", {}).get(k, 0)
                  for k in ("calls", "malformed")}
    return {"before_no_tools": plain_before, "after_no_tools": plain_after,
            "held_out_pass_at_1_no_tools": plain_after["pass@1"],
            "held_out_pass_at_1_sft_no_tools": plain_before["pass@1"],
            "rollout_tool_calls": calls, "rollout_malformed_calls": malformed,
            "tool_seconds": round(sum(r.get("tool_seconds", 0.0) for r in rows), 3),
            "tool_wait_seconds": round(sum(r.get("tool_wait_seconds", 0.0) for r in rows), 3),
            "tool_share_of_rollout": round(sum(r.get("tool_seconds", 0.0) + r.get("tool_wait_seconds", 0.0)
                                               for r in rows) / max(rollout, 1e-9), 4),
            "figures_tools": {"test_pass_at_1_no_tools": proportion(plain_after["correct"], plain_after["n"]),
                              "test_pass_at_1_sft_no_tools": proportion(plain_before["correct"], plain_before["n"]),
                              "malformed_tool_calls_eval": proportion(eval_calls["malformed"], eval_calls["calls"]),
                              "malformed_tool_calls_rollouts": proportion(malformed, calls)}}


def held_out_tasks(run, grpo_cfg, tokenizer, max_prompt: int, tasks: list[Task], seed: int) -> tuple[dict, dict]:
    """({"train": tasks, "test": (tasks, load stats), "dev": (tasks, load stats)}, where each came from).

    test and dev come from grpo.eval_path / grpo.dev_path when set; for the built-in problems
    (no grpo.data_path) from the reasoning stage's reasoning_eval.jsonl / reasoning_dev.jsonl,
    split by solution chain; for your own data_path, a held-out slice of it
    (`holdout_fraction` each, by a keyed hash of the prompt: the same prompt never lands on
    two sides), which then leaves training."""
    result: dict = {"train": tasks}
    sources = {}
    slices = []
    for name, path_value, default in (("test", grpo_cfg.eval_path, "reasoning_eval.jsonl"),
                                      ("dev", grpo_cfg.dev_path, "reasoning_dev.jsonl")):
        if path_value or not grpo_cfg.data_path:
            path = Path(path_value) if path_value else run.path("datasets", default)
            result[name] = (load_tasks(path, tokenizer, max_prompt, grpo_cfg.answer_column) if path.exists()
                            else ([], Counter({f"missing:{path.name}": 1})))
            sources[name] = str(path)
        else:
            slices.append(name)
            sources[name] = f"held-out slice of {grpo_cfg.data_path} ({grpo_cfg.holdout_fraction:.0%}, by prompt)"
    if slices:
        shares = [(name, grpo_cfg.holdout_fraction) for name in slices]
        picked: dict[str, list[Task]] = {"train": []}
        for task in tasks:
            key = " ".join(m["content"] for m in task.prompt)
            picked.setdefault(pick(keyed_fraction(f"grpo-holdout:{key}", seed), shares, "train"), []).append(task)
        result["train"] = picked["train"]
        for name in slices:
            result[name] = (picked.get(name, []), Counter({"kept": len(picked.get(name, []))}))
    return result, sources


def task_overlap(train: list[Task], held: dict[str, list[Task]]) -> dict:
    """Held-out tasks against training tasks, from their text (lmforge/evals/overlap.py): the same
    prompt text and, where rows carry a worked `solution`, its chain of equations."""
    train_prompts = [" ".join(m["content"] for m in t.prompt) for t in train]
    train_solutions = [t.columns.get("solution") or "" for t in train]
    result = {}
    for name, tasks in held.items():
        texts = prompt_overlap(train_prompts, [" ".join(m["content"] for m in t.prompt) for t in tasks], FactFinder([]))
        counts = {key: texts[key] for key in ("held_out_prompts", "same_prompt_in_training")}
        solutions = [t.columns.get("solution") for t in tasks if t.columns.get("solution")]
        if solutions:
            chains = chain_overlap(train_solutions, solutions)
            counts.update({k: v for k, v in chains.items() if k != "held_out_problems"})
        result[name] = counts
    return result

