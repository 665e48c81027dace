"""The time estimate `lmforge run` prints before it starts (lmforge/estimate.py)."""
from lmforge.config import load_config
from lmforge.estimate import estimate_run, format_estimate, total_seconds
from lmforge.rundir import RunDir


def test_estimate_measures_every_model_stage_of_a_micro_run(tmp_path):
    cfg = load_config("micro")
    names = ["collect", "pretrain", "sft", "preferences", "reward", "dpo", "ppo", "grpo", "report"]
    plan = estimate_run(cfg, RunDir(tmp_path), names)
    for name in ("pretrain", "sft", "reward", "dpo", "ppo", "grpo"):
        part = plan[name]
        assert part["measured"] and part["per_step"] > 0 and part["steps"] == getattr(cfg, name).max_steps
        assert part["train"] == part["per_step"] * part["steps"]
    assert plan["preferences"]["after"] > 0 and plan["grpo"]["before"] > 0     # generation is costed too
    assert not plan["collect"]["measured"]
    assert total_seconds(plan) == sum(p["before"] + p["train"] + p["after"] for k, p in plan.items()
                                      if not k.startswith("_"))


def fake_plan(train_seconds: float) -> dict:
    return {"pretrain": {"before": 0.0, "train": train_seconds, "after": 10.0, "per_step": train_seconds / 100,
                         "steps": 100, "measured": True},
            "_probe_seconds": {"before": 3.0, "train": 0.0, "after": 0.0}}


def test_a_cap_shorter_than_the_estimate_warns_before_the_start():
    cfg = load_config("micro", ["pretrain.max_minutes=1"])
    lines = format_estimate(fake_plan(600.0), cfg)
    assert any("pretrain.max_minutes=1 is shorter than its 10.0 estimated minutes" in line for line in lines)
    assert any("cut short of its 100 planned steps" in line for line in lines)
    assert not any("warning" in line for line in format_estimate(fake_plan(30.0), cfg))


def test_far_above_the_reference_time_warns_without_failing():
    cfg = load_config("micro")
    lines = format_estimate(fake_plan(3000.0), cfg, reference_minutes=10)
    assert any("5.0x this preset's reference time" in line for line in lines)
    assert not any("warning" in line for line in format_estimate(fake_plan(300.0), cfg, reference_minutes=10))


def test_the_pretrain_estimate_plans_the_steps_tokens_per_param_gives(micro_copy):
    """With pretrain.tokens_per_param the estimate counts the steps the stage then plans
    (train/pretrain.py's planned_steps), not max_steps."""
    import json
    import math

    from .conftest import lmforge
    ratio = ["pretrain.tokens_per_param=0.05", "pretrain.max_steps=1000"]
    cfg = load_config("micro", ratio)
    part = estimate_run(cfg, RunDir(micro_copy), ["pretrain"])["pretrain"]
    # by hand: micro's 139,584 parameters (512-token vocabulary, tied) x 0.05 / (8 rows x 64 tokens)
    assert part["steps"] == math.ceil(0.05 * 139_584 / (8 * 64)) == 14
    assert part["train"] == part["per_step"] * 14
    lmforge("pretrain", "--run-dir", str(micro_copy), "--force", *ratio)
    metrics = json.loads((micro_copy / "stages" / "pretrain.json").read_text())["metrics"]
    assert metrics["planned_steps"] == metrics["steps"] == part["steps"]
