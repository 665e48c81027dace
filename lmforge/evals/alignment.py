"""Evaluation of a preference-tuned model (PPO, DPO) against the SFT model it started from.

    from lmforge.evals.alignment import alignment_metrics
    metrics = alignment_metrics(run, cfg, policy, tokenizer, device, stage="dpo")

On the prompts of datasets/preferences_eval.jsonl, which ask facts (and name unseen
entities) that no training prompt or answer does (split by fact: lmforge/tasks/preferences.py),
the test ones for the headline figures and the dev ones (under "dev") for tuning:

- greedy answers of both models give the "I don't know" rate on unseen entities and the
  accuracy on known ones (lmforge/evals/judge.py decides both);
- one sampled answer per prompt from each model (temperature 1: the models' own
  distributions) is compared by the ground-truth judge and by the reward model; a win
  is a higher score, a tie counts half;
- the policy's samples give the KL divergence to the SFT model, sum over the answer's
  tokens of log p_policy - log p_sft, averaged over prompts.
"""
from __future__ import annotations

import torch

from ..tasks.preferences import encode_answer, load_items
from ..engine import fast_path, generate
from ..checkpoints import load_model
from .card import markdown_table, new_figure, read_log, save_figure, stage_metrics
from .judge import judge, load_index
from .likelihood import answer_logprob_sums
from .reward_model import load_reward_model
from .stats import proportion


def sample_answers(model, tokenizer, items: list[dict], temperature: float, seed: int, max_new_tokens: int) -> list[dict]:
    prompts = [tokenizer.render_chat(item["prompt"], add_generation_prompt=True)[0] for item in items]
    outs = generate(model, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                    stop_ids=(tokenizer.end_id,))
    return [{"text": tokenizer.decode(o.tokens).strip(), "ended": o.finish_reason == "stop"} for o in outs]


def _padded(rows: list[tuple[list[int], list[int]]], pad_id: int, device):
    length = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (row_ids, row_mask) in enumerate(rows):
        ids[i, :len(row_ids)] = torch.tensor(row_ids)
        mask[i, :len(row_mask)] = torch.tensor(row_mask)
    lengths = torch.tensor([len(r[0]) for r in rows])
    return ids.to(device), mask.to(device), lengths.to(device)


@torch.no_grad()
def score_answers(items, answers, tokenizer, device, reward_model=None, policy=None, reference=None,
                  batch_size: int = 32) -> dict:
    """Reward-model scores and/or policy-minus-reference log-likelihood of each answer."""
    rewards, kls = [], []
    encoded = [encode_answer(tokenizer, item["prompt"], a["text"], a["ended"], 10**9) for item, a in zip(items, answers)]
    for start in range(0, len(encoded), batch_size):
        ids, mask, lengths = _padded(encoded[start:start + batch_size], tokenizer.pad_id, device)
        with fast_path(reward_model, policy, reference):
            if reward_model is not None:
                rewards += reward_model(ids, lengths, mask).tolist()
            if policy is not None and reference is not None:
                kls += (answer_logprob_sums(policy, ids, mask) - answer_logprob_sums(reference, ids, mask)).tolist()
    return {"rewards": rewards, "kls": kls}


def _rates(items, answers, index=None) -> dict:
    verdicts = [judge(a["text"], a["ended"], item, index) for item, a in zip(items, answers)]
    unknown = [v for v, item in zip(verdicts, items) if not item["known"]]
    known = [v for v, item in zip(verdicts, items) if item["known"]]
    idk = sum(v.reason.startswith("idk") for v in unknown)
    right = sum(v.reason.startswith("correct") for v in known)
    ended = sum(a["ended"] for a in answers)
    return {"idk_rate": round(idk / max(len(unknown), 1), 4), "known_accuracy": round(right / max(len(known), 1), 4),
            "end_rate": round(ended / max(len(answers), 1), 4),
            "figures": {"idk_rate": proportion(idk, len(unknown)), "known_accuracy": proportion(right, len(known)),
                        "end_rate": proportion(ended, len(answers))}}


def win_rate(ours: list[float], theirs: list[float]) -> tuple[float, dict]:
    wins = sum(a > b for a, b in zip(ours, theirs))
    losses = sum(a < b for a, b in zip(ours, theirs))
    ties = len(ours) - wins - losses
    return round((wins + 0.5 * ties) / max(len(ours), 1), 4), {"wins": wins, "ties": ties, "losses": losses}


@torch.no_grad()
def compare(items, policy, sft, reward_model, tokenizer, device, stage: str, cfg, index=None) -> dict:
    """The policy against SFT on one set of prompts: win rates, rates, KL and examples."""
    max_new = cfg.preferences.max_new_tokens
    greedy = {name: sample_answers(m, tokenizer, items, 0.0, cfg.run.seed, max_new) for name, m in
              (("sft", sft), (stage, policy))}
    sampled = {name: sample_answers(m, tokenizer, items, 1.0, cfg.run.seed + 1, max_new) for name, m in
               (("sft", sft), (stage, policy))}
    judged = {name: [judge(a["text"], a["ended"], item, index).score for item, a in zip(items, answers)]
              for name, answers in sampled.items()}
    judge_rate, judge_counts = win_rate(judged[stage], judged["sft"])
    ours = score_answers(items, sampled[stage], tokenizer, device, reward_model, policy, sft)
    theirs = score_answers(items, sampled["sft"], tokenizer, device, reward_model)
    result = {"win_rate": judge_rate, "judge": judge_counts, "eval_prompts": len(items),
              "unknown_entity_prompts": sum(not i["known"] for i in items)}
    figures = {"win_rate": proportion(judge_counts["wins"] + judge_counts["ties"] / 2, len(items))}
    if reward_model is not None:
        rm_rate, rm_counts = win_rate(ours["rewards"], theirs["rewards"])
        result.update({"reward_model_win_rate": rm_rate, "reward_model": rm_counts,
                       "mean_reward": round(sum(ours["rewards"]) / max(len(items), 1), 4),
                       "sft_mean_reward": round(sum(theirs["rewards"]) / max(len(items), 1), 4)})
    result["kl_to_sft"] = round(sum(ours["kls"]) / max(len(ours["kls"]), 1), 4)
    for name, answers in greedy.items():
        prefix = "sft_" if name == "sft" else ""
        rates = _rates(items, answers, index)
        figures.update({prefix + k: v for k, v in rates.pop("figures").items()})
        result.update({prefix + k: v for k, v in rates.items()})
    result["figures"] = figures
    result["examples"] = [{"prompt": item["prompt"][-1]["content"], "known": item["known"],
                           "truth": item["value"] if item["known"] else "(unseen entity)",
                           "sft": greedy["sft"][i]["text"], stage: greedy[stage][i]["text"]}
                          for i, item in enumerate(items[:8])]
    return result


@torch.no_grad()
def alignment_metrics(run, cfg, policy, tokenizer, device, stage: str, limit: int | None = None) -> dict:
    """compare() on the test prompts (the first `limit`; the headline figures) and, under "dev",
    on the dev prompts. Rows without a split (older files) count as test."""
    rows = load_items(run, "preferences_eval.jsonl")
    test = [r for r in rows if r.get("split", "test") == "test"][:limit or None]
    dev = [r for r in rows if r.get("split") == "dev"]
    facts_path = run.world_dir / "facts.jsonl"
    index = load_index(facts_path) if facts_path.exists() else None
    sft = load_model(run.model_dir("sft"), device=device).eval()
    was_training = policy.training
    policy.eval()
    reward_model = None
    if (run.model_dir("reward") / "head.safetensors").exists():
        reward_model = load_reward_model(run.model_dir("reward"), device=device).eval()
    result = compare(test, policy, sft, reward_model, tokenizer, device, stage, cfg, index)
    result["split"] = "test"
    if dev:
        on_dev = compare(dev, policy, sft, reward_model, tokenizer, device, stage, cfg, index)
        result["dev"] = {k: v for k, v in on_dev.items() if k != "examples"}
    if was_training:
        policy.train()
    return result


# ---------------------------------------------------------------- the report card

def plot_ppo(log_path, out_png) -> bool:
    """Reward and KL per PPO step: shows the reward rising while the KL stays on its leash."""
    rows = read_log(log_path, "kl")
    if not rows:
        return False
    fig, ax = new_figure()
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["kl"] for r in rows], color="tab:red", label="KL to SFT (per answer)")
    ax.set_xlabel("PPO step")
    ax.set_ylabel("KL (nats)")
    if any("reward" in r for r in rows):
        twin = ax.twinx()
        twin.plot(steps, [r.get("reward") for r in rows], color="tab:blue", label="reward-model score")
        twin.set_ylabel("reward")
        twin.legend(loc="lower right")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    ax.set_title("PPO: reward and KL")
    return save_figure(fig, out_png)


def report_section(run, cfg) -> str | None:
    prefs, reward = stage_metrics(run, "preferences"), stage_metrics(run, "reward")
    tuned = {name: stage_metrics(run, name) for name in ("ppo", "dpo")}
    tuned = {name: m for name, m in tuned.items() if m}
    if prefs is None:
        return None
    noise = f"{prefs['noise']:.0%} of pairs flipped" + (
        ", close calls more often" if prefs.get("noise_model") == "gap" else " at random")
    text = ["## Preference tuning: reward model, PPO and DPO", "",
            f"{prefs['prompts']} prompts ({prefs['unknown_entity_prompts']} about entities the model never saw; "
            + ", ".join(f"{v} {k}" for k, v in (prefs.get("prompts_by_split") or {}).items())
            + ", split by fact and unseen entity), "
            f"{prefs['candidates_per_prompt']} sampled answers each, labeled by the {prefs['annotator']} annotator "
            f"({noise}): {prefs['pairs']:,} preference pairs. The SFT model's sampled answers: "
            + ", ".join(f"{k} {v}" for k, v in prefs.get("candidate_verdicts", {}).items()) + "."]
    if reward:
        truth = ""
        if "held_out_label_ceiling" in reward and prefs["annotator"] == "auto":
            truth = (f"; against the annotator's truth {reward['held_out_accuracy_vs_truth']:.1%}, and a model "
                     f"always right about the truth would score {reward['held_out_label_ceiling']:.1%} "
                     "against these noisy labels")
        split = reward.get("held_out_split", "held-out")
        dev = (f" Checkpoint chosen on {reward['dev_pairs']} dev pairs ({reward['dev_accuracy']:.1%} there); the "
               "test pairs ask facts and unseen entities no training pair asks." if "dev_pairs" in reward else "")
        text += ["", f"Reward model: {split} pair accuracy **{reward['held_out_accuracy']:.1%}** "
                     f"({reward['held_out_pairs']} pairs){truth}; mean margin {reward['held_out_mean_margin']:.2f}, "
                     f"{reward['steps']} steps in {reward['train_seconds']:.0f}s.{dev}"]
    if tuned:
        first = next(iter(tuned.values()))
        rows = [["SFT", "-", "-", f"{first['sft_idk_rate']:.1%}", f"{first['sft_known_accuracy']:.1%}",
                 f"{first['sft_end_rate']:.1%}", "0"]]
        for name, m in tuned.items():
            rows.append([name.upper(), f"{m['win_rate']:.1%}",
                         f"{m['reward_model_win_rate']:.1%}" if "reward_model_win_rate" in m else "-",
                         f"{m['idk_rate']:.1%}", f"{m['known_accuracy']:.1%}", f"{m['end_rate']:.1%}",
                         f"{m['kl_to_sft']:.2f}"])
        text += ["", f"On {first['eval_prompts']} {first.get('split', 'held-out')} prompts "
                     f"({first['unknown_entity_prompts']} about unseen entities; no training prompt asks their facts "
                     "or names their unseen entities); win rate against SFT with ties counted half:", "",
                 markdown_table(["model", "win rate (ground truth)", "win rate (reward model)",
                                 "\"I don't know\" on unseen entities", "known-entity accuracy", "answers ending",
                                 "KL to SFT"], rows)]
        if "ppo" in tuned and plot_ppo(run.log_path("ppo"), run.report_dir / "ppo_kl.png"):
            text += ["", "![PPO reward and KL](ppo_kl.png)"]
        examples = first.get("examples", [])
        if examples:
            names = list(tuned)
            by_prompt = {name: {e["prompt"]: e.get(name, "") for e in tuned[name].get("examples", [])}
                         for name in names}
            text += ["", markdown_table(["prompt", "truth", "SFT", *[n.upper() for n in names]],
                                        [[e["prompt"], e["truth"], e["sft"][:70],
                                          *[by_prompt[n].get(e["prompt"], "")[:70] for n in names]]
                                         for e in examples[:6]])]
    return "\n".join(text)
