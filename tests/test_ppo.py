"""PPO (RLHF): GAE, the clipped losses, the KL penalty, learning a simple reward, the stage and its resume."""
import json

import pytest
import torch
from torch import nn

from lmforge.config import ModelConfig, TokenizerConfig, load_config
from lmforge.checkpoints import load_model
from lmforge.model import GPT
from lmforge.errors import StageError
from lmforge.run import get_stage
from lmforge.rundir import RunDir, StageContext
from lmforge.tokenizer import Tokenizer
from lmforge.train.ppo import (
    PolicyAndValue,
    Prompt,
    ValueModel,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_per_token,
    load_prompts,
    make_trainer,
    ppo_step,
    reward_normalizer,
    run_stage,
    token_rewards,
    whiten,
)
from lmforge.evals.reward_model import RewardModel


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["Ada Berg was born in 1820 in Oslo.", "I don't know who Knut Dahl is.", "3 + 4 = 7."] * 20
    return Tokenizer.train(texts, TokenizerConfig(vocab_size=300, min_frequency=1))


def tiny_gpt(tokenizer, seed=0):
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=64, n_layer=1, n_head=2, d_model=32))


def ppo_cfg(**overrides):
    cfg = load_config("micro").ppo
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def test_gae_matches_a_hand_computed_example():
    rewards, values = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.5, 0.2, 0.4])
    adv, ret = gae(rewards, values, gamma=0.9, lam=0.95)
    # t=2: delta = 1 - 0.4 = 0.6                 A2 = 0.6
    # t=1: delta = 0.9 * 0.4 - 0.2 = 0.16        A1 = 0.16 + 0.9 * 0.95 * 0.6 = 0.673
    # t=0: delta = 0.9 * 0.2 - 0.5 = -0.32       A0 = -0.32 + 0.855 * 0.673 = 0.255415
    assert adv.tolist() == pytest.approx([0.255415, 0.673, 0.6], abs=1e-6)
    assert ret.tolist() == pytest.approx([0.755415, 0.873, 1.0], abs=1e-6)
    adv, ret = gae(rewards, values, gamma=1.0, lam=1.0)         # Monte Carlo: return - V
    assert adv.tolist() == pytest.approx([0.5, 0.8, 0.6]) and ret.tolist() == pytest.approx([1.0, 1.0, 1.0])
    adv, _ = gae(rewards, values, gamma=1.0, lam=0.0)           # one-step TD
    assert adv.tolist() == pytest.approx([-0.3, 0.2, 0.6])


def test_whitened_advantages_have_zero_mean_unit_std():
    x = whiten(torch.tensor([1.0, 2.0, 3.0, 10.0]))
    assert x.mean().item() == pytest.approx(0.0, abs=1e-6) and x.std(unbiased=False).item() == pytest.approx(1.0)


def test_clipped_policy_loss_matches_hand_computation():
    old = torch.zeros(4)
    logp = torch.log(torch.tensor([1.5, 1.5, 0.5, 1.1]))       # ratios
    adv = torch.tensor([1.0, -1.0, -2.0, 3.0])
    loss, clipped = clipped_policy_loss(logp, old, adv, cliprange=0.2)
    # max(-A r, -A clip(r, 0.8, 1.2)):
    #   A= 1, r=1.5: max(-1.5, -1.2) = -1.2 (clipped)      A=-1, r=1.5: max(1.5, 1.2) = 1.5
    #   A=-2, r=0.5: max(1.0, 1.6) = 1.6 (clipped)         A= 3, r=1.1: max(-3.3, -3.3) = -3.3
    assert loss.tolist() == pytest.approx([-1.2, 1.5, 1.6, -3.3], abs=1e-5)
    assert clipped.tolist() == [True, False, True, False]
    logp = logp.clone().requires_grad_(True)                    # clipped tokens pass no gradient
    clipped_policy_loss(logp, old, adv, 0.2)[0].sum().backward()
    assert logp.grad[0] == 0 and logp.grad[2] == 0 and logp.grad[1] != 0 and logp.grad[3] != 0


def test_clipped_value_loss_matches_hand_computation():
    values, old, returns = torch.tensor([1.0, 0.5, 0.0]), torch.tensor([0.0, 0.4, 0.0]), torch.tensor([2.0, 0.0, 1.0])
    loss, clipped = clipped_value_loss(values, old, returns, cliprange_value=0.2)
    # V=1.0 from 0.0 clips to 0.2: 0.5 max(1, 3.24) = 1.62     V=0.5 from 0.4 is inside: 0.5 * 0.25
    # V=0.0, unchanged: 0.5 * 1
    assert loss.tolist() == pytest.approx([1.62, 0.125, 0.5], abs=1e-6)
    assert clipped.tolist() == [True, False, False]


def test_kl_penalty_lowers_the_reward_of_tokens_the_policy_likes_more_than_the_reference():
    logp, ref = torch.log(torch.tensor([0.8, 0.1, 0.5])), torch.log(torch.tensor([0.4, 0.2, 0.5]))
    k1 = kl_per_token(logp, ref, "k1")
    assert k1[0] > 0 and k1[1] < 0 and k1[2] == 0
    k3 = kl_per_token(logp, ref, "k3")
    assert (k3 >= 0).all() and k3[2] == 0 and k3[0] == pytest.approx(0.5 - torch.log(torch.tensor(0.5)) - 1)
    rewards = token_rewards(2.0, k1, kl_coef=0.1)
    assert rewards[0] < 0 < rewards[1] and rewards[2] == pytest.approx(2.0)    # the score lands on the last token
    assert rewards[0] == pytest.approx(-0.1 * k1[0].item())


def test_value_model_starts_as_the_reward_model(tokenizer):
    reward_model = RewardModel(tiny_gpt(tokenizer))
    nn.init.normal_(reward_model.head.weight)
    value = ValueModel.from_reward_model(reward_model)
    ids = torch.tensor([tokenizer.encode("Ada Berg was born in 1820.")])
    with torch.no_grad():
        assert value(ids)[0, -1].item() == pytest.approx(reward_model(ids, torch.tensor([ids.shape[1]])).item(), rel=1e-5)
    value.value_head.weight.data += 1                           # a copy, not shared weights
    assert not torch.equal(value.value_head.weight, reward_model.head.weight)


def test_load_prompts_counts_bad_rows(tmp_path, tokenizer):
    path = tmp_path / "prompts.jsonl"
    rows = [json.dumps({"prompt": [{"role": "user", "content": "Who was Ada Berg?"}], "known": True}),
            json.dumps({"prompt": "Who is Knut Dahl?"}), "{broken", json.dumps({"prompt": []}),
            json.dumps({"prompt": [{"role": "assistant", "content": "hi"}]}),
            json.dumps({"prompt": "word " * 200})]
    path.write_text("\n".join(rows) + "\n")
    prompts, stats = load_prompts(path, tokenizer, max_prompt_tokens=40)
    assert len(prompts) == 2 and prompts[0].item["known"] is True
    assert stats == {"kept": 2, "skipped:bad_json": 1, "skipped:bad_prompt": 2, "skipped:too_long": 1}
    assert prompts[1].prompt_ids[-1] == tokenizer.assistant_id


class FirstTokenScorer(nn.Module):
    """A stand-in reward model: 1 when the answer's first token is in the lower half of the vocabulary."""

    def __init__(self, tokenizer, prompt_len: int, nan: bool = False):
        super().__init__()
        self.cut, self.prompt_len, self.nan = tokenizer.vocab_size // 2, prompt_len, nan

    def forward(self, ids, lengths, answer_mask=None):
        scores = (ids[:, self.prompt_len] < self.cut).float()
        return scores * float("nan") if self.nan else scores


def _trainer(tokenizer, cfg):
    policy = tiny_gpt(tokenizer, seed=3)
    model = PolicyAndValue(policy, ValueModel.from_reward_model(RewardModel(tiny_gpt(tokenizer, seed=4))))
    trainer = make_trainer(model, cfg, "unused", "unused", seed=0, device="cpu")
    reference = tiny_gpt(tokenizer, seed=3).requires_grad_(False)
    return trainer, reference


def test_ppo_learns_a_simple_reward_and_logs_every_number(tokenizer):
    cfg = ppo_cfg(optimizer="adamw", lr=1e-2, value_lr=1e-2, prompts_per_step=16, batch_size=8,
                  max_completion_tokens=3, temperature=1.0, kl_coef=0.01, iterations=2, missing_end_penalty=0.0)
    trainer, reference = _trainer(tokenizer, cfg)
    ids = tokenizer.render_chat([{"role": "user", "content": "Ada Berg was born in"}], add_generation_prompt=True)[0]
    prompts = [Prompt([], ids, {}) for _ in range(16)]
    scorer = FirstTokenScorer(tokenizer, len(ids))
    rows = [ppo_step(trainer, reference, scorer, tokenizer, prompts, cfg, seed=step * 100) for step in range(25)]
    first, last = sum(r["reward"] for r in rows[:3]) / 3, sum(r["reward"] for r in rows[-3:]) / 3
    assert last > first + 0.25 and last > 0.8, (first, last)
    assert rows[-1]["kl"] > 0                      # it moved away from the reference to get there
    for key in ("reward", "kl", "entropy", "clip_fraction", "value_clip_fraction", "value_loss", "policy_loss",
                "response_length", "ended_fraction", "rollout_seconds", "update_seconds"):
        assert all(isinstance(r[key], float) and r[key] == r[key] for r in rows), key


def test_reward_normalizer_measures_the_reference_models_answers(tokenizer):
    reference = tiny_gpt(tokenizer, seed=3)
    ids = tokenizer.render_chat([{"role": "user", "content": "Ada"}], add_generation_prompt=True)[0]
    prompts = [Prompt([], ids, {})] * 40
    cfg = ppo_cfg(prompts_per_step=16, max_completion_tokens=3, reward_norm_samples=40)
    scorer = FirstTokenScorer(tokenizer, len(ids))
    mean, std = reward_normalizer(reference, scorer, tokenizer, prompts, cfg, seed=0, device="cpu")
    assert 0 < mean < 1 and std == pytest.approx((mean * (1 - mean) * 40 / 39) ** 0.5, rel=1e-4)   # Bernoulli scores
    assert reward_normalizer(reference, scorer, tokenizer, prompts, cfg, seed=0, device="cpu") == (mean, std)
    cfg.reward_norm_samples = 0
    assert reward_normalizer(reference, scorer, tokenizer, prompts, cfg, seed=0, device="cpu") == (0.0, 1.0)


def test_a_non_finite_loss_stops_with_one_line(tokenizer):
    cfg = ppo_cfg(optimizer="adamw", prompts_per_step=4, batch_size=4, max_completion_tokens=3)
    trainer, reference = _trainer(tokenizer, cfg)
    ids = tokenizer.render_chat([{"role": "user", "content": "Ada"}], add_generation_prompt=True)[0]
    with pytest.raises(StageError, match="ppo: the loss became nan at step 1"):
        ppo_step(trainer, reference, FirstTokenScorer(tokenizer, len(ids), nan=True), tokenizer,
                 [Prompt([], ids, {})] * 4, cfg, seed=0)


def test_stage_runs_end_to_end_and_resumes(micro_copy):
    run = RunDir(micro_copy)
    overrides = ["ppo.max_steps=2", "ppo.checkpoint_every=1", "ppo.eval_prompts=6", "ppo.iterations=2"]
    metrics = run_stage(StageContext(run=run, cfg=load_config("micro", overrides), stage=get_stage("ppo"),
                                     resume=False))
    assert metrics["steps"] == 2 and not metrics["resumed"]
    sft, ppo = load_model(run.model_dir("sft")), load_model(run.model_dir("ppo"))
    assert not torch.equal(sft.layers[0].mlp.up_proj.weight, ppo.layers[0].mlp.up_proj.weight)
    for key in ("win_rate", "reward_model_win_rate", "kl_to_sft", "idk_rate", "known_accuracy", "sft_idk_rate",
                "sft_known_accuracy"):
        assert key in metrics, key
    assert set(metrics["kl_curve"]) >= {"at_step", "max", "final"} and metrics["eval_prompts"] == 6
    assert metrics["reward_normalizer"]["std"] > 0
    rows = [json.loads(line) for line in run.log_path("ppo").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    # a longer run with the same settings continues from the checkpoint: only step 3 is new
    before = torch.load(run.model_dir("ppo") / "trainer_state.pt", weights_only=True)
    cfg = load_config("micro", overrides[1:] + ["ppo.max_steps=3"])
    metrics = run_stage(StageContext(run=run, cfg=cfg, stage=get_stage("ppo"), resume=True))
    rows = [json.loads(line) for line in run.log_path("ppo").read_text().splitlines()]
    assert metrics["steps"] == 3 and metrics["resumed"] and [r["step"] for r in rows] == [1, 2, 3]
    assert before["step"] == 2 and len(before["optimizers"]) == 2       # policy and value optimizers
    assert any(k.startswith("value.") for k in before["model"])         # the value model is checkpointed
