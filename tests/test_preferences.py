"""Preference data, the judge, the automatic annotator, the reward model and DPO."""
import json
import random
from collections import Counter

import pytest
import torch

from lmforge.config import ModelConfig, TokenizerConfig, load_config
from lmforge.data.preferences import (
    append_rows, auto_label, encode_answer, flip_probabilities, judged_pairs, labeled_items, load_pairs,
    pairs_from_ranking, parse_pair)
from lmforge.evals.judge import judge, says_idk
from lmforge.model import GPT
from lmforge.tokenizer import Tokenizer
from lmforge.train.dpo import make_loss_fn as dpo_loss_fn, preference_loss
from lmforge.evals.likelihood import answer_logprob_sums
from lmforge.evals.reward_model import RewardModel, load_reward_model, save_reward_model
from lmforge.train.pairs import collate_pairs
from lmforge.train.reward import make_loss_fn as reward_loss_fn, pair_metrics

KNOWN = {"known": True, "value": "1820", "language": "en"}
UNKNOWN = {"known": False, "value": None, "language": "en"}
USER = [{"role": "user", "content": "When was Odd Dahlheim born?"}]


def test_judge_orders_answers_like_a_careful_labeler():
    correct = judge("Odd Dahlheim was born in 1820.", True, KNOWN)
    rambling = judge("Odd Dahlheim was born in 1820. I hope this helps! Let me know if you want to know more.",
                     True, KNOWN)
    curt = judge("1820.", True, KNOWN)
    idk = judge("I don't know anything about Odd Dahlheim.", True, KNOWN)
    wrong = judge("Odd Dahlheim was born in 1821.", True, KNOWN)
    no_end = judge("Odd Dahlheim was born in 1820.", False, KNOWN)
    assert correct.score > curt.score > rambling.score > idk.score > wrong.score > no_end.score - 2.5
    assert correct.reason == "correct" and "rambling" in rambling.reason and "curt" in curt.reason
    assert no_end.score < correct.score and "no end" in no_end.reason
    assert judge("Jeg vet ingenting om Odd Dahlheim.", True, UNKNOWN).reason == "idk_unknown"
    assert judge("Odd Dahlheim was born in 1777.", True, UNKNOWN).reason == "made_up"
    assert says_idk("I'm sorry, I don't know who or what Briltron is.") and not says_idk("Known for maps.")


def test_bad_rows_are_skipped_and_counted(tmp_path):
    good = {"prompt": USER, "chosen": [{"role": "assistant", "content": "In 1820."}],
            "rejected": [{"role": "assistant", "content": "In 1777."}]}
    rows = [
        json.dumps(good),
        json.dumps({**good, "rejected": good["chosen"]}),                              # identical
        json.dumps({"prompt": USER, "chosen": good["chosen"]}),                       # missing rejected
        json.dumps({"prompt": USER, "chosen": USER + good["chosen"],                  # mismatched prompts
                    "rejected": [{"role": "user", "content": "Other?"}] + good["rejected"]}),
        json.dumps({"chosen": USER + good["chosen"], "rejected": USER + good["rejected"]}),  # implicit prompt: ok
        json.dumps({"prompt": "When?", "chosen": "In 1820.", "rejected": "In 1777."}),       # plain strings: ok
        json.dumps({"chosen": USER + good["chosen"],
                    "rejected": [{"role": "user", "content": "Other?"}] + good["rejected"]}),  # mismatched
        json.dumps([1, 2]),
        '{"prompt": [',                                                              # a torn last line
    ]
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(rows) + "\n")
    pairs, skipped = load_pairs(path)
    assert len(pairs) == 3
    assert skipped == {"identical chosen and rejected": 1, "missing chosen or rejected": 1,
                       "mismatched prompts": 2, "not a JSON object": 1, "bad JSON": 1}
    assert pairs[1].prompt == USER and pairs[2].prompt == [{"role": "user", "content": "When?"}]
    with pytest.raises(ValueError, match="empty answer"):
        parse_pair({**good, "chosen": [{"role": "assistant", "content": "  "}]})


def _item(texts, known=True):
    return {"id": "abc", "prompt": USER, "known": known, "value": "1820",
            "candidates": [{"text": t, "ended": True} for t in texts]}


def test_ranking_makes_every_ordered_pair_and_none_inside_a_tie():
    item = _item(["a", "b", "c", "d"])
    rows = pairs_from_ranking(item, [[2], [0, 1], [3]], "human")
    pairs = {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows}
    assert pairs == {("c", "a"), ("c", "b"), ("c", "d"), ("a", "d"), ("b", "d")}
    assert all(r["source"] == "human" and r["item"] == "abc" for r in rows)


def test_automatic_annotator_prefers_truth_and_flips_at_the_noise_rate():
    item = _item(["Odd Dahlheim was born in 1820.", "Odd Dahlheim was born in 1700.", "1820.",
                  "I don't know anything about Odd Dahlheim."])
    rows, reasons = auto_label([item], 0.0, random.Random(0))
    assert len(rows) == 6 and reasons == {"correct": 2, "wrong": 1, "idk_known": 1}
    scores = {c["text"]: judge(c["text"], True, item).score for c in item["candidates"]}
    assert all(scores[r["chosen"][0]["content"]] > scores[r["rejected"][0]["content"]] for r in rows)
    flipped = sum(bool(r.get("flipped")) for r in auto_label([item] * 200, 0.25, random.Random(0))[0])
    assert 0.18 < flipped / 1200 < 0.32


def test_gap_annotator_misses_close_calls_more_at_the_same_mean_rate():
    """noise_model=gap: the mean flip rate is still `noise`, but a style difference (a curt
    right answer against a full one, 0.3 apart) is flipped far more often than right against
    wrong (3 apart)."""
    item = _item(["Odd Dahlheim was born in 1820.", "1820.", "Odd Dahlheim was born in 1700."])
    rows, gaps, _ = judged_pairs(item)
    gaps = [round(g, 2) for g in gaps]
    assert sorted(gaps) == [0.3, 2.7, 3.0]
    rates = flip_probabilities(gaps * 50, 0.1, "gap")
    assert abs(sum(rates) / len(rates) - 0.1) < 1e-3
    assert rates[gaps.index(0.3)] > 0.25 > 0.01 > rates[gaps.index(3.0)]
    assert flip_probabilities(gaps, 0.1, "flip") == [0.1] * 3 and flip_probabilities(gaps, 0.0, "gap") == [0.0] * 3
    flipped = Counter()
    for row in auto_label([item] * 300, 0.1, random.Random(1), "gap")[0]:
        texts = {row["chosen"][0]["content"], row["rejected"][0]["content"]}
        flipped[frozenset(texts)] += bool(row.get("flipped"))
    assert flipped[frozenset({"Odd Dahlheim was born in 1820.", "1820."})] > 60       # ~0.29 x 300
    assert flipped[frozenset({"Odd Dahlheim was born in 1820.", "Odd Dahlheim was born in 1700."})] < 10


def test_labels_are_appended_durably_and_resume_knows_them(tmp_path):
    path = tmp_path / "datasets" / "preferences.jsonl"
    item = _item(["x", "y"])
    append_rows(path, pairs_from_ranking(item, [[0], [1]], "human"))
    with open(path, "a") as f:
        f.write('{"torn": ')                       # a crash mid-line loses only that line
    assert labeled_items(path, "human") == {"abc"} and labeled_items(path, "auto") == set()
    pairs, skipped = load_pairs(path)
    assert len(pairs) == 1 and skipped == {"bad JSON": 1}


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["Odd Dahlheim was born in 1820.", "I don't know anything about Briltron.", "When was it made?"] * 20
    return Tokenizer.train(texts, TokenizerConfig(vocab_size=300, min_frequency=1))


def tiny_gpt(tokenizer, seed=0):
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=64, n_layer=1, n_head=2, d_model=32))


def _rows(tokenizer, n=8):
    rows = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"When was it made? {i}"}]
        chosen = encode_answer(tokenizer, prompt, "Odd Dahlheim was born in 1820.", True, 64)
        rejected = encode_answer(tokenizer, prompt, "I don't know anything about Briltron.", i % 2 == 0, 64)
        rows.append((*chosen, *rejected))
    return rows


def test_unended_answers_have_no_end_token(tokenizer):
    ids, mask = encode_answer(tokenizer, USER, "In 1820.", False, 64)
    full, _ = encode_answer(tokenizer, USER, "In 1820.", True, 64)
    assert full[-1] == tokenizer.end_id and ids == full[:-1] and mask[-1] == 1


@pytest.mark.parametrize("likelihood,pooled", [(False, None), (True, False), (True, True)])
def test_reward_model_learns_a_separable_preference(tokenizer, likelihood, pooled, tmp_path):
    rows = _rows(tokenizer)
    model = RewardModel(tiny_gpt(tokenizer), likelihood=likelihood, pooled=pooled)
    batch = collate_pairs(rows, tokenizer.pad_id, "cpu")
    loss_fn = reward_loss_fn(margin=0.0, center_coef=0.01)
    with torch.no_grad():
        start = float(loss_fn(model, batch)) / len(rows)
        if likelihood:
            # the score starts as the answer's mean log-probability under the backbone's LM
            want = answer_logprob_sums(model.backbone, batch["ids"], batch["loss_mask"]) / batch["loss_mask"][:, 1:].sum(-1)
            assert torch.allclose(model(batch["ids"], batch["lengths"], batch["loss_mask"]), want, atol=1e-5)
    if not likelihood:
        assert abs(start - torch.log(torch.tensor(2.0)).item()) < 1e-5  # zero-initialized head: r = 0
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        (loss_fn(model, batch) / len(rows)).backward()
        opt.step()
    metrics = pair_metrics(model, rows, 4, tokenizer.pad_id, "cpu")
    assert metrics["accuracy"] == 1.0 and metrics["mean_margin"] > 1.0
    assert abs(metrics["mean_reward"]) < metrics["mean_margin"]         # centering keeps rewards near 0
    save_reward_model(model, tmp_path / "reward")                       # the likelihood weights travel too
    loaded = load_reward_model(tmp_path / "reward")
    assert (loaded.gate is not None) == bool(pooled)                     # an older head (no gate) loads as it was
    again = pair_metrics(loaded, rows, 4, tokenizer.pad_id, "cpu")
    assert again["mean_margin"] == pytest.approx(metrics["mean_margin"], abs=1e-4)


def test_gate_pools_the_answer_tokens_and_its_weights_train_faster(tokenizer):
    from lmforge.train.optim import build_optimizers
    from lmforge.evals.reward_model import answer_likelihood
    model = RewardModel(tiny_gpt(tokenizer), likelihood=True)
    batch = collate_pairs(_rows(tokenizer)[:2], tokenizer.pad_id, "cpu")
    with torch.no_grad():
        hidden = model.backbone(batch["ids"], return_hidden=True)
        mean, lowest, pooled = answer_likelihood(model.backbone, hidden, batch["ids"], batch["loss_mask"], model.gate).T
        assert torch.allclose(pooled, mean, atol=1e-5) and (lowest <= mean).all()   # a zero gate is the mean
        model.gate.weight.normal_()
        _, lowest, pooled = answer_likelihood(model.backbone, hidden, batch["ids"], batch["loss_mask"], model.gate).T
        assert (pooled >= lowest - 1e-5).all() and not torch.allclose(pooled, mean)   # a weighted mean of the same tokens
    cfg = load_config("micro").reward
    lrs = {id(p): group["lr"] for opt in build_optimizers(model, cfg, torch.device("cpu"))
           for group in opt.param_groups for p in group["params"]}
    assert lrs[id(model.gate.weight)] == lrs[id(model.likelihood)] == pytest.approx(cfg.lr * 30)
    assert lrs[id(model.head.weight)] == pytest.approx(cfg.lr)


def test_dpo_losses_and_one_step_moves_toward_chosen(tokenizer):
    h = torch.tensor([0.0, 2.0])
    assert torch.allclose(preference_loss(h, "sigmoid", 0.5, 0.0)[0], torch.log(torch.tensor(2.0)))
    assert preference_loss(h, "sigmoid", 0.5, 0.0)[1] < preference_loss(h, "sigmoid", 0.5, 0.0)[0]
    assert torch.allclose(preference_loss(h, "ipo", 0.5, 0.0), (h - 1.0) ** 2)
    smoothed = preference_loss(torch.tensor([50.0]), "sigmoid", 1.0, 0.1)
    assert smoothed > 4.0                                   # conservative DPO never trusts a label fully

    rows = _rows(tokenizer)
    policy = tiny_gpt(tokenizer)
    batch = collate_pairs(rows, tokenizer.pad_id, "cpu")
    with torch.no_grad():
        batch["ref"] = answer_logprob_sums(policy, batch["ids"], batch["loss_mask"])
    cfg = load_config("micro").dpo
    stats = Counter()
    loss_fn = dpo_loss_fn(cfg, stats)
    with torch.no_grad():
        first = float(loss_fn(policy, batch)) / len(rows)
    assert abs(first - torch.log(torch.tensor(2.0)).item()) < 1e-5
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        loss_fn(policy, batch).backward()
        opt.step()
    logratio = answer_logprob_sums(policy, batch["ids"], batch["loss_mask"]) - batch["ref"]
    assert (logratio[:len(rows)] - logratio[len(rows):]).min() > 0    # every chosen answer gained on its rejected


def test_micro_run_has_the_preference_stages(micro_run):
    """The stage graph runs preferences -> reward -> ppo / dpo and the report shows them."""
    def metrics(stage):
        return json.loads((micro_run / "stages" / f"{stage}.json").read_text())["metrics"]
    prefs = metrics("preferences")
    assert prefs["pairs"] > 0 and prefs["prompts"] > 0
    pairs, skipped = load_pairs(micro_run / "datasets" / "preferences.jsonl")
    assert len(pairs) + sum(skipped.values()) == prefs["pairs"]
    items = [json.loads(line) for line in (micro_run / "datasets" / "label_items.jsonl").read_text().splitlines()]
    assert all(len(item["candidates"]) == 3 for item in items)
    reward = metrics("reward")
    assert 0.0 <= reward["held_out_accuracy"] <= 1.0 and "held_out_mean_margin" in reward
    assert reward["held_out_label_ceiling"] == round(1 - reward["held_out_flipped_labels"] / reward["held_out_pairs"], 4)
    assert (micro_run / "models" / "reward" / "head.safetensors").exists()
    assert not (micro_run / "models" / "reward" / "model.safetensors").exists()    # never a chat model
    dpo = metrics("dpo")
    for key in ("win_rate", "reward_model_win_rate", "kl_to_sft", "idk_rate", "sft_idk_rate", "known_accuracy",
                "val_reward_accuracy"):
        assert key in dpo, key
    log = [json.loads(line) for line in (micro_run / "logs" / "dpo.jsonl").read_text().splitlines()]
    assert all("reward_accuracy" in row for row in log)
    assert "## Preference tuning" in (micro_run / "report" / "report.md").read_text()
