"""GRPO: advantages, the clipped surrogate and its aggregations, bad rewards, the stage, resume, learning."""
import json
from collections import Counter

import pytest
import torch

from lmforge.config import ModelConfig, TokenizerConfig, load_config
from lmforge.tasks.reasoning import make_problems
from lmforge.checkpoints import save_model
from lmforge.model import GPT
from lmforge.run import get_stage
from lmforge.rundir import RunDir, StageContext
from lmforge.tokenizer import Tokenizer
from lmforge.train.grpo import group_advantages, grpo_step, make_loss_fn, run_stage
from lmforge.train.rollout import make_batches, prompts_for_step, token_logprobs
from lmforge.train.loop import Trainer

from .conftest import lmforge

PEOPLE = [{"name": "Ada Berg", "gender": "f"}, {"name": "Knut Dahl", "gender": "m"}]


@pytest.fixture(scope="module")
def tokenizer():
    problems = make_problems(PEOPLE, ["en", "nb"], [1, 2], 30, seed=1)
    return Tokenizer.train([p.question + " " + p.solution for p in problems] * 3,
                           TokenizerConfig(vocab_size=320, min_frequency=1))


def tiny_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    return GPT(ModelConfig(vocab_size=tokenizer.vocab_size, seq_len=128, n_layer=1, n_head=2, d_model=32))


def fake_completions(tokenizer, n=4):
    prompt = tokenizer.render_chat([{"role": "user", "content": "Ada Berg has 3 eggs."}], add_generation_prompt=True)[0]
    return [{"prompt_ids": prompt, "ids": tokenizer.encode(f"3 + {i} = {3 + i}.")[: 3 + i] + [tokenizer.end_id],
             "text": "", "ended": True} for i in range(n)]


def grpo_cfg(**overrides):
    cfg = load_config("micro").grpo
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def test_group_advantages():
    rewards = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    adv, flat = group_advantages(rewards, 4, "none")
    assert adv.tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0])
    assert flat.tolist() == [False, True]
    adv, _ = group_advantages(rewards, 4, "group")
    assert adv[:4].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], rel=1e-3)   # std of [1,0,0,0] = 0.5
    adv, _ = group_advantages(rewards, 4, "batch")
    assert adv[0].item() == pytest.approx(0.75 / torch.tensor(rewards).std().item(), rel=1e-3)


def test_prompts_for_step_is_a_pure_function_of_the_step():
    tasks = list(range(10))
    first = [prompts_for_step(tasks, s, 4, seed=1) for s in range(5)]
    assert first == [prompts_for_step(tasks, s, 4, seed=1) for s in range(5)]
    assert sorted(first[0] + first[1] + first[2][:2]) == tasks       # one epoch covers every task once


def test_batches_mask_exactly_the_completion_tokens(tokenizer):
    completions = fake_completions(tokenizer)
    adv = torch.tensor([1.0, -1.0, 2.0, 0.5])
    for loss_type, items in (("token_mean", None), ("grpo", 3), ("dr_grpo", 3 * 8)):
        batches = make_batches(completions, adv, [0, 2, 3], 2, loss_type, 8, tokenizer.pad_id, "cpu")
        assert [b["mask"].shape[0] for b in batches] == [2, 1]
        assert sum(b["n_items"] for b in batches) == (items or sum(len(completions[i]["ids"]) for i in (0, 2, 3)))
    first = batches[0]
    assert first["targets"].tolist() == completions[0]["ids"] + completions[2]["ids"]
    assert first["adv"].tolist() == [1.0] * len(completions[0]["ids"]) + [2.0] * len(completions[2]["ids"])


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_on_policy_loss_is_the_policy_gradient(tokenizer):
    model = tiny_model(tokenizer)
    completions = fake_completions(tokenizer)
    adv = torch.tensor([1.0, -1.0, 2.0, 0.5])
    batch = make_batches(completions, adv, [0, 1, 2, 3], 4, "token_mean", 8, tokenizer.pad_id, "cpu")[0]
    stats = Counter()
    loss = make_loss_fn(model.lm_head, grpo_cfg(), stats)(model, batch)
    assert loss.item() == pytest.approx(-batch["adv"].sum().item(), rel=1e-5)    # ratio is exactly 1
    loss.backward()
    ours = _grads(model)
    model.zero_grad()
    logp, _ = token_logprobs(model, model.lm_head, batch)
    (-(batch["adv"] * logp).sum()).backward()
    assert torch.allclose(ours, _grads(model), atol=1e-6)
    assert stats["tokens"] == batch["n_tokens"] and stats["clipped"] == 0 and stats["entropy_sum"] > 0


def test_clipping_stops_the_gradient_past_the_trust_region(tokenizer):
    model = tiny_model(tokenizer)
    completions = fake_completions(tokenizer, 2)
    cfg = grpo_cfg(epsilon=0.2, epsilon_high=0.28)
    for sign, expect_clipped in ((1.0, True), (-1.0, False)):
        batch = make_batches(completions, torch.tensor([sign, sign]), [0, 1], 4, "token_mean", 8, tokenizer.pad_id,
                             "cpu")[0]
        with torch.no_grad():
            batch["old_logp"] = token_logprobs(model, model.lm_head, batch)[0] - 1.0    # ratio = e > 1.28
        stats = Counter()
        model.zero_grad()
        make_loss_fn(model.lm_head, cfg, stats)(model, batch).backward()
        grad_norm = _grads(model).norm().item()
        if expect_clipped:   # positive advantage, ratio above 1 + epsilon_high: no push further
            assert grad_norm == 0.0 and stats["clipped"] == stats["tokens"]
        else:                # negative advantage: the pessimistic min keeps the unclipped term
            assert grad_norm > 0 and stats["clipped"] == 0


def test_k3_kl_is_zero_at_the_reference_and_positive_away(tokenizer):
    model = tiny_model(tokenizer)
    completions = fake_completions(tokenizer, 2)
    cfg = grpo_cfg(beta=0.5)
    batch = make_batches(completions, torch.zeros(2), [0, 1], 4, "token_mean", 8, tokenizer.pad_id, "cpu")[0]
    with torch.no_grad():
        logp = token_logprobs(model, model.lm_head, batch)[0]
    for shift, positive in ((0.0, False), (0.7, True)):
        batch["ref_logp"] = logp + shift
        stats = Counter()
        loss = make_loss_fn(model.lm_head, cfg, stats)(model, batch)
        assert (loss.item() > 1e-4) == positive and (stats["kl_sum"] > 1e-4) == positive


def test_grpo_loss_type_weights_each_completion_equally(tokenizer):
    model = tiny_model(tokenizer)
    completions = fake_completions(tokenizer, 2)     # lengths 4 and 5
    batch = make_batches(completions, torch.tensor([1.0, 1.0]), [0, 1], 4, "grpo", 8, tokenizer.pad_id, "cpu")[0]
    loss = make_loss_fn(model.lm_head, grpo_cfg(loss_type="grpo"), Counter())(model, batch)
    assert loss.item() == pytest.approx(-2.0, rel=1e-5)      # each completion's mean is -A = -1


def _broken_reward(prompts, completions, **columns):
    raise ValueError("this reward function is broken")


def _digit_reward(prompts, completions, **columns):
    return [1.0 if c[:1].isdigit() else 0.0 for c in completions]


def test_grpo_learns_a_simple_reward_and_survives_a_broken_one(tokenizer):
    model = tiny_model(tokenizer, seed=3)
    cfg = grpo_cfg(optimizer="adamw", lr=2e-2, prompts_per_step=8, group_size=8, max_completion_tokens=3,
                   batch_size=64, temperature=1.0)
    trainer = Trainer(model, cfg, out_dir="unused", log_path="unused", device="cpu", stage="grpo")
    from lmforge.tasks.reasoning import Task
    prompt = tokenizer.render_chat([{"role": "user", "content": "Ada Berg has"}], add_generation_prompt=True)[0]
    tasks = [Task([{"role": "user", "content": "x"}], "1", prompt, {}) for _ in range(8)]
    rewards = [("digit", _digit_reward, 1.0), ("broken", _broken_reward, 1.0)]
    rows = [grpo_step(trainer, None, tokenizer, tasks, rewards, cfg, seed=step * 100) for step in range(30)]
    first, last = sum(r["reward_mean"] for r in rows[:3]) / 3, sum(r["reward_mean"] for r in rows[-3:]) / 3
    assert last > first + 0.3, (first, last)
    assert rows[0]["reward_errors"] == {"broken:raised:ValueError": 64}
    for key in ("reward_mean", "reward_std", "zero_std_fraction", "completion_length_mean", "entropy",
                "clip_fraction", "rollout_seconds", "completions_per_second"):
        assert key in rows[0]


def _length_reward(prompts, completions, **columns):
    return [len(c) / 50 for c in completions]     # differs between samples, so every group trains


def _write_run(tmp_path, tokenizer) -> RunDir:
    run = RunDir(tmp_path / "run")
    tokenizer.save(run.tokenizer_dir)
    save_model(tiny_model(tokenizer), run.model_dir("sft"))
    problems = make_problems(PEOPLE, ["en", "nb"], [1, 2], 12, seed=5)
    rows = [json.dumps(p.row()) for p in problems[:30]]
    rows += ["{broken", json.dumps({"prompt": [{"role": "user", "content": "hi"}]}), json.dumps(["x"])]
    run.path("datasets").mkdir(parents=True)
    run.path("datasets", "reasoning.jsonl").write_text("\n".join(rows) + "\n")
    run.path("datasets", "reasoning_eval.jsonl").write_text(
        "".join(json.dumps(p.row()) + "\n" for p in problems[30:]))
    return run


def test_stage_runs_resumes_and_reports(tmp_path, tokenizer):
    run = _write_run(tmp_path, tokenizer)
    overrides = ["grpo.max_steps=3", "grpo.checkpoint_every=1", "grpo.prompts_per_step=2", "grpo.group_size=3",
                 "grpo.max_completion_tokens=12", "grpo.eval_per_difficulty=2", "grpo.eval_k=2",
                 "grpo.eval_k_per_difficulty=1",
                 "grpo.rewards=correctness,format,steps,tests.test_grpo:_length_reward,tests.test_grpo:_broken_reward",
                 "grpo.reward_weights=1,0.1,0.5,1,1",
                 "grpo.beta=0.1", "grpo.iterations=2", "grpo.freeze_embeddings=true", "grpo.lr=1e-2"]
    cfg = load_config("micro", overrides)
    metrics = run_stage(StageContext(run=run, cfg=cfg, stage=get_stage("grpo"), resume=False))
    assert metrics["steps"] == 3 and (run.model_dir("grpo") / "model.safetensors").exists()
    from lmforge.checkpoints import load_model
    sft, grpo = load_model(run.model_dir("sft")), load_model(run.model_dir("grpo"))
    assert torch.equal(sft.embed.weight, grpo.embed.weight)                   # frozen
    assert not torch.equal(sft.layers[0].mlp.up_proj.weight, grpo.layers[0].mlp.up_proj.weight)
    assert metrics["tasks"] == {"kept": 30, "skipped:bad_json": 1, "skipped:no_answer": 1, "skipped:wrong_type": 1}
    assert metrics["reward_errors"] == {"tests.test_grpo:_broken_reward:raised:ValueError": 18}
    assert set(metrics["before"]["by_difficulty"]) == {"1", "2"} and metrics["before"]["n"] == 4
    assert metrics["before"]["n_sampled"] == 2 and metrics["before"]["by_difficulty"]["1"]["n_sampled"] == 1
    assert len(metrics["examples"]) == 4 and "grpo_completion" in metrics["examples"][0]
    rows = [json.loads(line) for line in run.log_path("grpo").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and all("reward_format" in r and "reward_steps" in r for r in rows)
    # a longer run with the same settings resumes from the checkpoint: steps 4-5 only
    cfg = load_config("micro", overrides + ["grpo.max_steps=5"])
    metrics = run_stage(StageContext(run=run, cfg=cfg, stage=get_stage("grpo"), resume=True))
    rows = [json.loads(line) for line in run.log_path("grpo").read_text().splitlines()]
    assert metrics["steps"] == 5 and [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    from lmforge.evals.reasoning import report_section
    run.write_manifest("grpo", {"status": "done", "metrics": metrics})
    section = report_section(run, cfg)
    assert "pass@1 GRPO" in section and "Worked examples" in section and "_broken_reward" in section


def test_own_data_without_eval_path_holds_out_a_slice_of_itself(tmp_path, tokenizer):
    """grpo.data_path with no eval_path / dev_path: test and dev are slices of that file,
    never the built-in problems, and no held-out prompt is trained on."""
    from lmforge.train.grpo import held_out_tasks, task_overlap
    run = _write_run(tmp_path, tokenizer)
    own = run.path("own.jsonl")
    problems = make_problems(PEOPLE, ["en", "nb"], [1, 2], 40, seed=9)
    own.write_text("".join(json.dumps({"question": p.question, "answer": f"{p.solution} #### {p.answer}"}) + "\n"
                           for p in problems))
    overrides = ["grpo.max_steps=1", "grpo.prompts_per_step=2", "grpo.group_size=2", "grpo.max_completion_tokens=8",
                 "grpo.eval_per_difficulty=50", "grpo.dev_per_difficulty=50", "grpo.eval_k=1",
                 f"grpo.data_path={own}", "grpo.holdout_fraction=0.2"]
    cfg = load_config("micro", overrides)
    from lmforge.tasks.reasoning import load_tasks
    tasks, _ = load_tasks(own, tokenizer, 100)
    held, sources = held_out_tasks(run, cfg.grpo, tokenizer, 100, tasks, cfg.run.seed)
    sizes = {name: len(held[name][0]) for name in ("test", "dev")}
    assert all(10 <= n <= 50 for n in sizes.values()) and len(held["train"]) + sum(sizes.values()) == len(tasks)
    assert all("held-out slice of" in sources[name] for name in ("test", "dev"))
    counts = task_overlap(held["train"], {name: held[name][0] for name in ("test", "dev")})
    assert counts["test"]["same_prompt_in_training"] == counts["dev"]["same_prompt_in_training"] == 0
    leak = task_overlap(held["train"], {"test": held["train"][:3]})
    assert leak["test"]["same_prompt_in_training"] == 3                 # the count can fail
    metrics = run_stage(StageContext(run=run, cfg=cfg, stage=get_stage("grpo"), resume=False))
    assert metrics["held_out_source"].startswith("held-out slice of") and metrics["before"]["n"] == sizes["test"]
    assert metrics["dev_before"]["n"] == sizes["dev"] and metrics["figures"]["test_pass_at_1"]["n"] == sizes["test"]


def _constant_reward(prompts, completions, **columns):
    return [0.5] * len(completions)           # every group flat


def test_flat_groups_are_computed_when_skipping_is_off(tokenizer):
    """skip_flat_groups=false runs the update on every completion (the work TRL does); true skips a flat batch."""
    from lmforge.tasks.reasoning import Task
    prompt = [{"role": "user", "content": "Ada Berg has 3 eggs."}]
    tasks = [Task(prompt, "3", tokenizer.render_chat(prompt, add_generation_prompt=True)[0], {})] * 2
    rows = []
    for skip in (True, False):
        cfg = grpo_cfg(prompts_per_step=2, group_size=2, max_completion_tokens=4, skip_flat_groups=skip)
        trainer = Trainer(tiny_model(tokenizer), cfg, out_dir="unused", log_path="unused", device="cpu", stage="grpo")
        rows.append(grpo_step(trainer, None, tokenizer, tasks, [("const", _constant_reward, 1.0)], cfg, seed=1))
    assert rows[0]["groups_skipped"] == 2 and rows[0]["loss"] is None and rows[0]["entropy"] is None
    assert rows[1]["groups_skipped"] == 0 and rows[1]["zero_std_fraction"] == 1.0
    assert rows[1]["loss"] == 0.0 and rows[1]["entropy"] is not None


# ---------------------------------------------------------------- GRPO with tools

def test_tool_results_are_context_but_never_trained_on(tokenizer):
    """Rollouts through the engine's tool loop (a scripted policy), then the batches the loss sees:
    the injected <|tool|> result <|end|> <|assistant|> tokens are inputs but never targets."""
    from lmforge.train.rewards import tool_format_reward
    from lmforge.tools.registry import ToolBox, load_tools
    from lmforge.train.rollout import rollout
    from tests.scripted import ScriptModel
    from lmforge.tasks.reasoning import Task
    box = ToolBox(load_tools(["calculator"]))
    question = [{"role": "user", "content": "Ada Berg has 3 eggs and gets 4 more."}]
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": "3 + 4"}}}
    answers = [([{"role": "assistant", "content": "", "tool_calls": [call]}, {"role": "tool", "content": "7"},
                 {"role": "assistant", "content": "3 + 4 = 7. The answer is 7."}]),
               ([{"role": "assistant", "content": "3 + 4 = 8. The answer is 8."}])]
    scripts = [tokenizer.render_chat(question + a, tools=box.schemas())[0] for a in answers]
    prompt = tokenizer.render_chat(question, add_generation_prompt=True, tools=box.schemas())[0]
    task = Task(question, "7", prompt, {"difficulty": 1})
    completions = []
    for script in scripts:          # one script per policy: the same prompt, two different answers
        completions += rollout(ScriptModel(tokenizer, [script]), tokenizer, [task], 1, 60, 1.0, 1.0, 0, seed=0,
                               tools=box)
    assert [c["text"] for c in completions] == ["3 + 4 = 7. The answer is 7.", "3 + 4 = 8. The answer is 8."]
    assert [len(c["tool_calls"]) for c in completions] == [1, 0]
    assert tool_format_reward(None, [c["text"] for c in completions],
                              tool_calls=[c["tool_calls"] for c in completions]) == [1.0, None]
    batches = make_batches(completions, torch.tensor([1.0, -1.0]), [0, 1], 2, "token_mean", 60, tokenizer.pad_id,
                           "cpu")
    targets = tokenizer.decode(batches[0]["targets"].tolist())
    assert targets == ('<|tool_call|>calculator {"expression": "3 + 4"}<|tool_call_end|>3 + 4 = 7. The answer is '
                       '7.<|end|>3 + 4 = 8. The answer is 8.<|end|>')
    # ... while the model still reads the result in the input
    first = batches[0]["x"][0].tolist()
    assert tokenizer.decode(first).count("<|tool|>7<|end|><|assistant|>") == 1
    box.close()


def test_stage_with_tools_measures_with_and_without_them(tmp_path, tokenizer):
    run = _write_run(tmp_path, tokenizer)
    overrides = ["grpo.max_steps=2", "grpo.prompts_per_step=2", "grpo.group_size=3", "grpo.max_completion_tokens=24",
                 "grpo.eval_per_difficulty=2", "grpo.eval_k=2", "grpo.eval_k_per_difficulty=1",
                 "grpo.tools=[calculator]", "grpo.rewards=correctness,tool_format", "grpo.lr=1e-2"]
    metrics = run_stage(StageContext(run=run, cfg=load_config("micro", overrides), stage=get_stage("grpo"),
                                     resume=False))
    assert metrics["tools"] == ["calculator"] and metrics["steps"] == 2
    assert metrics["before_no_tools"]["n"] == metrics["before"]["n"] == 4
    assert {"test_pass_at_1_no_tools", "test_pass_at_1_sft_no_tools", "malformed_tool_calls_eval",
            "malformed_tool_calls_rollouts"} <= set(metrics["figures"])
    assert 0.0 <= metrics["tool_share_of_rollout"] <= 1.0 and set(metrics["before"]["errors"]) == {
        "misread_operand", "wrong_result", "other"}
    rows = [json.loads(line) for line in run.log_path("grpo").read_text().splitlines()]
    assert all("tool_calls" in r and "tool_wait_seconds" in r for r in rows)
    from lmforge.evals.tools import report_section
    run.write_manifest("grpo", {"status": "done", "metrics": metrics})
    assert "with and without tools" in report_section(run, None)


# ---------------------------------------------------------------- GRPO on lookup questions

def test_fact_rows_are_judged_by_the_fact_judge_and_others_by_their_answer():
    """`judge: "fact"` rows (grpo.tasks=lookup) get the ground-truth judge in the reward and the
    evaluation alike: the asked fact stated is right, another value or "I don't know" is not; for
    an unanswerable name only "I don't know" is. A numeric row in the same batch keeps its check."""
    from lmforge.evals.reasoning import is_right
    from lmforge.train.rewards import correctness_reward
    known = {"judge": "fact", "known": True, "value": "Ulhavn", "entity": "Odd Haugen", "attribute": "birthplace",
             "language": "en"}
    unknown = {**known, "known": False, "value": None}
    number = {"judge": None, "known": None, "value": None, "entity": None, "attribute": None, "language": None}
    rows = [(known, "Odd Haugen came from Ulhavn."), (known, "Odd Haugen came from Brustad."),
            (known, "I don't know who Odd Haugen is."), (unknown, "I don't know anything about Odd Haugen."),
            (unknown, "Odd Haugen came from Ulhavn."), (number, "3 + 4 = 7. The answer is 7.")]
    columns = {name: [row[name] for row, _ in rows] for name in known}
    rewards = correctness_reward(None, [text for _, text in rows], ["ulhavn"] * 5 + ["7"], **columns)
    assert rewards == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert [is_right(text, answer, row) for (row, text), answer in zip(rows, ["ulhavn"] * 5 + ["7"])] == \
        [r == 1.0 for r in rewards]


def test_grpo_on_lookup_questions(micro_copy):
    """grpo.tasks=lookup: trains on the shelf's practice entities (and invented names), tests on the
    unseen test entities and half the unanswerable names, with the lookup tool; refuses without it."""
    settings = ["grpo.tasks=lookup", "grpo.max_steps=2", "grpo.prompts_per_step=2", "grpo.group_size=2",
                "grpo.eval_per_difficulty=3", "grpo.dev_per_difficulty=2", "grpo.eval_k=2",
                "grpo.max_completion_tokens=16"]
    bad = lmforge("grpo", "--run-dir", str(micro_copy), *settings, check=False)
    assert bad.returncode != 0 and "grpo.tasks=lookup: offer the lookup tool too" in bad.stderr
    lmforge("grpo", "--run-dir", str(micro_copy), *settings, "grpo.tools=[lookup]")
    metrics = RunDir(micro_copy).read_manifest("grpo")["metrics"]
    assert metrics["task_kind"] == "lookup" and metrics["steps"] == 2
    assert set(metrics["before"]["by_difficulty"]) == {"unseen", "unanswerable"}
    # the unseen questions again, by the kind of answer (unanswerable ones have none)
    kinds, unseen = metrics["before"]["by_value_kind"], metrics["before"]["by_difficulty"]["unseen"]
    assert set(kinds) <= {"number", "word"}
    assert sum(v["n"] for v in kinds.values()) == unseen["n"] and sum(v["correct"] for v in kinds.values()) == unseen["correct"]
    from lmforge.evals.reasoning import report_section
    run = RunDir(micro_copy)
    section = report_section(run, run.load_config())
    assert all(f"unseen, a {kind} for answer | {v['n']} |" in section for kind, v in kinds.items()), section
    assert metrics["overlap"]["test"]["same_prompt_in_training"] == 0
    practice = {json.loads(line)["entity"] for line in (micro_copy / "data/index/practice.jsonl").open()}
    tested = {json.loads(line)["entity"] for line in (micro_copy / "datasets/lookup_eval.jsonl").open()}
    assert practice and not practice & tested
    assert metrics["before_no_tools"]["n"] == metrics["before"]["n"] == 6


def test_synth_can_leave_practice_entities_to_grpo(micro_copy):
    """synth.lookup_entities=N: SFT's lookup conversations name at most N practice entities, so
    the others stay unnamed for grpo.tasks=lookup even when synth.lookup_questions covers the shelf."""
    practice = {json.loads(line)["entity"] for line in (micro_copy / "data/index/practice.jsonl").open()}
    lmforge("synth", "--run-dir", str(micro_copy), "--force", "synth.lookup_entities=3", "synth.lookup_questions=40")
    queries = set()
    for line in (micro_copy / "datasets/sft.jsonl").open():
        for message in json.loads(line)["messages"]:
            for call in message.get("tool_calls") or []:
                if call["function"]["name"] == "lookup":
                    queries.add(call["function"]["arguments"]["query"])
    assert len(practice) == 8 and len(queries & practice) == 3


def test_lookup_test_and_dev_are_the_same_sample_for_every_seed(micro_copy):
    """The evaluation takes the first questions of each level: the unseen ones come in a fixed
    shuffled order (the file lists entities kind by kind), the same for every run seed, and all of
    them are there."""
    from lmforge.files import read_jsonl
    from lmforge.tasks.lookup_rl import lookup_tasks
    run, tokenizer = RunDir(micro_copy), Tokenizer.load(micro_copy / "tokenizer")
    one, _, _ = lookup_tasks(run, tokenizer, 256, None, seed=1)
    two, _, _ = lookup_tasks(run, tokenizer, 256, None, seed=2)
    rows = read_jsonl(micro_copy / "datasets" / "lookup_eval.jsonl")
    for name in ("test", "dev"):
        asked = [t.prompt[-1]["content"] for t in one[name] if t.columns["difficulty"] == "unseen"]
        assert asked == [t.prompt[-1]["content"] for t in two[name] if t.columns["difficulty"] == "unseen"]
        in_file = [r["question"] for r in rows if r["split"] == f"unseen_{name}"]
        assert sorted(asked) == sorted(in_file) and len(in_file) >= 5
        assert asked != in_file          # shuffled (a fixed order: this holds or fails every time)


def test_lookup_values_trains_on_one_kind_of_answer_and_keeps_every_kind_in_test(micro_copy):
    """grpo.lookup_values=number: only practice questions answered by a number (and the invented
    names asked the same questions) are trained on; test and dev are the same as with all."""
    from lmforge.evals.judge import value_kind
    from lmforge.tasks.lookup_rl import lookup_tasks
    run, tokenizer = RunDir(micro_copy), Tokenizer.load(micro_copy / "tokenizer")
    every, _, _ = lookup_tasks(run, tokenizer, 256, None, seed=1)
    numbers, _, sources = lookup_tasks(run, tokenizer, 256, None, seed=1, values="number")
    kinds = {value_kind(t.columns["value"]) for t in every["train"] if t.columns["known"]}
    assert kinds == {"number", "word"}
    known = [t for t in numbers["train"] if t.columns["known"]]
    assert known and {value_kind(t.columns["value"]) for t in known} == {"number"}
    assert len(known) == sum(1 for t in every["train"] if t.columns["known"] and value_kind(t.columns["value"]) == "number")
    assert any(not t.columns["known"] for t in numbers["train"])          # "I don't know" stays in training
    assert "with a number for answer" in sources["train"]
    for name in ("test", "dev"):
        assert [t.prompt for t in numbers[name]] == [t.prompt for t in every[name]]
