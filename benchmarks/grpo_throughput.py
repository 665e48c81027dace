"""GRPO throughput: lmforge's grpo step next to TRL's GRPOTrainer, same model, same batch, one run.

    pip install -e ".[trl]"
    python benchmarks/grpo_throughput.py --run-dir runs/tiny [--steps 4] [--prompts 16] [--group-size 8]
                                         [--max-completion-tokens 64] [--threads 2] [--out grpo_bench.json]

Both sides start from the run's SFT model (models/sft); TRL gets it exported to a stock
transformers folder by lmforge/export.py. Both take the same first `--prompts` prompts of
datasets/reasoning.jsonl per step, G completions each at temperature 1, AdamW at the same
learning rate, beta = 0, one iteration per rollout, token-mean loss ("dapo" in TRL), group
reward scaling and the same correctness reward. The first step of each side is a warm-up
and is not timed. Reported per side: seconds per GRPO step (rollout + rewards + update),
completions per second over the whole step, and for lmforge the rollout share; then the
ratio TRL / lmforge. A benchmark, never a test.

The two sides do not do the same work per step, and the result says so (`work`):
  - lmforge (grpo.skip_flat_groups=true, the stage's default) leaves groups whose G rewards
    are all equal out of the update: no forward, no backward (their advantages are 0, so
    they carry no gradient). With a weak model most groups are flat, so this is most of
    the saving;
  - lmforge without skipping (`lmforge_no_skip`, grpo.skip_flat_groups=false) computes the
    forward and backward of every completion, as TRL does;
  - TRL computes the forward and backward of every completion, flat groups included (their
    loss terms are 0).
So the like-for-like ratio is trl / lmforge_no_skip; trl / lmforge adds what skipping buys.

`--tools calculator,lookup` times lmforge once more with those tools offered (`lmforge_tools`:
multi-turn rollouts through the engine's tool loop, prompts that declare the tools) and
reports the seconds spent inside the tools (their threads) and the decoding thread's
seconds waiting for them, as a share of rollout time (`tool_share_of_rollout`). TRL does not
run this side.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.config import load_config  # noqa: E402
from lmforge.tasks.reasoning import load_tasks  # noqa: E402
from lmforge.train.rewards import correctness_reward  # noqa: E402
from lmforge.checkpoints import load_model  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402
from lmforge.tokenizer import Tokenizer  # noqa: E402
from lmforge.train.grpo import grpo_step  # noqa: E402
from lmforge.train.loop import Trainer  # noqa: E402


def grpo_settings(run: RunDir, args):
    cfg = run.load_config() if run.config_path.exists() else load_config("tiny")
    g = cfg.grpo
    g.prompts_per_step, g.group_size = args.prompts, args.group_size
    g.max_completion_tokens = args.max_completion_tokens
    g.temperature, g.top_p, g.top_k, g.beta, g.iterations = 1.0, 1.0, 0, 0.0, 1
    g.loss_type, g.scale_rewards, g.rewards, g.reward_weights = "token_mean", "group", ["correctness"], []
    g.optimizer, g.schedule, g.warmup_steps = "adamw", "constant", 0
    g.batch_size = args.prompts * args.group_size      # one micro-batch, as TRL does with these settings
    return g


def bench_lmforge(run: RunDir, tasks, args, skip_flat_groups: bool = True, tools=None) -> dict:
    g = grpo_settings(run, args)
    g.skip_flat_groups = skip_flat_groups
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    model = load_model(run.model_dir("sft"))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, g, out_dir=Path(tmp), log_path=Path(tmp) / "log.jsonl", device="cpu", stage="grpo")
        rewards = [("correctness", correctness_reward, 1.0)]
        rows = []
        for step in range(args.steps + 1):
            started = time.perf_counter()
            row = grpo_step(trainer, None, tokenizer, tasks, rewards, g, seed=1000 + step, tools=tools)
            row["wall"] = time.perf_counter() - started
            rows.append(row)
    timed = rows[1:]
    seconds = statistics.mean(r["wall"] for r in timed)
    rollout = statistics.mean(r["rollout_seconds"] for r in timed)
    n = args.prompts * args.group_size
    result = {"seconds_per_step": round(seconds, 3), "completions_per_second": round(n / seconds, 1),
              "rollout_seconds_per_step": round(rollout, 3), "rollout_completions_per_second": round(n / rollout, 1),
              "completion_length_mean": round(statistics.mean(r["completion_length_mean"] for r in timed), 1),
              "reward_mean": round(statistics.mean(r["reward_mean"] for r in timed), 3),
              "flat_group_fraction": round(statistics.mean(r["zero_std_fraction"] for r in timed), 3),
              "skip_flat_groups": skip_flat_groups}
    if tools is not None:
        running, waiting = (sum(r[key] for r in timed) for key in ("tool_seconds", "tool_wait_seconds"))
        result.update({"tools": tools.names, "tool_calls_per_step": statistics.mean(r["tool_calls"] for r in timed),
                       "malformed_calls_per_step": statistics.mean(r["malformed_calls"] for r in timed),
                       "tool_seconds_per_step": round(running / len(timed), 4),
                       "tool_wait_seconds_per_step": round(waiting / len(timed), 4),
                       "tool_share_of_rollout": round((running + waiting) / (rollout * len(timed)), 4)})
    return result


def bench_trl(run: RunDir, tasks, args) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from lmforge.export import export_hf
    g = grpo_settings(run, args)
    hf_dir = Path(tempfile.mkdtemp()) / "hf"
    export_hf(run.model_dir("sft"), run.tokenizer_dir, hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    # every step gets the same prompts as lmforge's: the dataset is those prompts, repeated
    rows = [{"prompt": t.prompt, "answer": t.answer} for t in tasks] * (args.steps + 2)
    dataset = Dataset.from_list(rows)

    def correctness(prompts, completions, answer, **kwargs):
        return correctness_reward(prompts, [c[0]["content"] if isinstance(c, list) else c for c in completions],
                                  answer)

    step_times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.started = time.perf_counter()

        def on_step_end(self, *a, **k):
            step_times.append(time.perf_counter() - self.started)

    config = GRPOConfig(
        output_dir=str(hf_dir.parent / "out"), per_device_train_batch_size=args.prompts * args.group_size,
        gradient_accumulation_steps=1, num_generations=args.group_size,
        max_completion_length=args.max_completion_tokens,
        max_steps=args.steps + 1, learning_rate=g.lr, lr_scheduler_type="constant", warmup_steps=0,
        optim="adamw_torch", adam_beta1=g.beta1, adam_beta2=g.beta2, weight_decay=g.weight_decay,
        max_grad_norm=g.clip_grad, beta=0.0, epsilon=g.epsilon, epsilon_high=g.epsilon_high, loss_type="dapo",
        scale_rewards="group", num_iterations=1, temperature=1.0, top_p=1.0, top_k=0, use_cpu=True, bf16=False,
        report_to="none", logging_steps=1, save_strategy="no", shuffle_dataset=False, disable_dropout=True,
        dataloader_num_workers=0, seed=1)
    trainer = GRPOTrainer(model=model, reward_funcs=[correctness], args=config, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[Timer()])
    trainer.train()
    logs = [r for r in trainer.state.log_history if "reward" in r]
    timed = step_times[1:]
    seconds = statistics.mean(timed)
    n = args.prompts * args.group_size
    return {"seconds_per_step": round(seconds, 3), "completions_per_second": round(n / seconds, 1),
            "completion_length_mean": round(statistics.mean(r.get("completions/mean_length", 0) for r in logs[1:]), 1)
            if len(logs) > 1 else None,
            "reward_mean": round(statistics.mean(r["reward"] for r in logs[1:]), 3) if len(logs) > 1 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per side (after one warm-up step)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-completion-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    parser.add_argument("--skip-trl", action="store_true")
    parser.add_argument("--tools", default="", help="also time lmforge with these tools offered (e.g. "
                        "calculator,lookup): the tool loop's share of rollout time")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = RunDir(args.run_dir)
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    model_seq_len = load_model(run.model_dir("sft")).cfg.seq_len
    tasks, _ = load_tasks(run.path("datasets", "reasoning.jsonl"), tokenizer,
                          model_seq_len - args.max_completion_tokens, limit=args.prompts)
    if len(tasks) < args.prompts:
        sys.exit(f"only {len(tasks)} usable prompts in {run.path('datasets', 'reasoning.jsonl')}")
    result = {"run_dir": str(run.root), "prompts_per_step": args.prompts, "group_size": args.group_size,
              "max_completion_tokens": args.max_completion_tokens, "timed_steps": args.steps,
              "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "load_average_before": os.getloadavg()}
    result["work"] = {
        "lmforge": "rollout + rewards; forward and backward of the completions in groups with unequal rewards only",
        "lmforge_no_skip": "rollout + rewards; forward and backward of every completion (flat groups too)",
        "trl": "rollout + rewards; forward and backward of every completion (flat groups too)"}
    result["lmforge"] = bench_lmforge(run, tasks, args)
    print("lmforge:", json.dumps(result["lmforge"]), flush=True)
    result["lmforge_no_skip"] = bench_lmforge(run, tasks, args, skip_flat_groups=False)
    print("lmforge, flat groups computed:", json.dumps(result["lmforge_no_skip"]), flush=True)
    if args.tools:
        from lmforge.tools.registry import ToolBox
        cfg = run.load_config() if run.config_path.exists() else load_config("tiny")
        box = ToolBox.from_config([t for t in args.tools.split(",") if t], run, cfg.tools)
        tool_tasks, _ = load_tasks(run.path("datasets", "reasoning.jsonl"), tokenizer,
                                   model_seq_len - args.max_completion_tokens, limit=args.prompts,
                                   tools=box.schemas())
        result["lmforge_tools"] = bench_lmforge(run, tool_tasks, args, tools=box)
        print("lmforge, with tools:", json.dumps(result["lmforge_tools"]), flush=True)
        box.close()
    if not args.skip_trl:
        import trl
        result["trl_version"] = trl.__version__
        result["trl"] = bench_trl(run, tasks, args)
        print("trl:    ", json.dumps(result["trl"]), flush=True)
        result["trl_seconds_per_step_over_lmforge"] = round(
            result["trl"]["seconds_per_step"] / result["lmforge"]["seconds_per_step"], 2)
        result["trl_seconds_per_step_over_lmforge_no_skip"] = round(
            result["trl"]["seconds_per_step"] / result["lmforge_no_skip"]["seconds_per_step"], 2)
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
