"""The `lmforge` command: parses arguments, loads the config, calls a stage. No logic of its own.

    lmforge run [--preset tiny] [--run-dir runs/tiny] [--from STAGE] [--to STAGE] [section.key=value ...]
    lmforge status [--run-dir DIR]
    lmforge collect|tokenizer|pretrain|report [--run-dir DIR] [--force] [section.key=value ...]
    lmforge generate "Nikola Tesla was" [--run-dir DIR] [--stage pretrain] [--temperature 0.8] ...
    lmforge next "Det er bedre med en fugl i hånden enn ti på" [--top-k 10] [--temperature 1.0]
    lmforge chat | serve | export --format hf | import FOLDER | compare "prompt" | neighbours WORD
    lmforge label [--run-dir DIR] [--terminal] [--host H] [--port P] [--password-file F] [--stage sft]
    lmforge eval [--run-dir DIR] [--stage pretrain] [eval.tasks=hellaswag,arc_easy] [eval.data_dir=DIR]
    lmforge convert-checkpoint [--run-dir DIR] [--stage pretrain] [--out DIR]
    lmforge draft prepare DRAFT_DIR [--run-dir TARGET] | draft distill DRAFT_DIR [--run-dir TARGET] [--steps N]

Exit codes: 0 done, 1 failed, 2 bad usage or config.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import ConfigError, load_config
from .errors import StageError
from .run import execute_stage, get_stage, run_pipeline, stage_state
from .rundir import STAGE_NAMES, RunDir


def _add_common(p: argparse.ArgumentParser, preset: bool = True) -> None:
    p.add_argument("--run-dir", help="the run folder (default runs/<preset>)")
    if preset:
        p.add_argument("--preset", help="preset name or YAML path (default: the run's config.yaml, else tiny)")
        p.add_argument("overrides", nargs="*", metavar="section.key=value")


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stage", help="which stage's model (default: the latest that finished)")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmforge", description="From raw text to a chat model.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the stage graph, skipping stages that are up to date")
    _add_common(p)
    p.add_argument("--from", dest="from_stage", choices=STAGE_NAMES, help="rerun from this stage on")
    p.add_argument("--to", dest="to_stage", choices=STAGE_NAMES, help="stop after this stage")
    p = sub.add_parser("status", help="each stage's state, headline metric and time")
    _add_common(p, preset=False)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    for name in STAGE_NAMES:
        p = sub.add_parser(name, help=get_stage(name).about)
        _add_common(p)
        p.add_argument("--force", action="store_true", help="run even when up to date")
    p = sub.add_parser("generate", help="continue a prompt with a trained model")
    _add_common(p, preset=False)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    p.add_argument("prompt")
    _add_sampling(p)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("-n", "--num-samples", type=int, default=1)
    p = sub.add_parser("next", help="bar chart of the next-token distribution")
    _add_common(p, preset=False)
    p.add_argument("--preset", help=argparse.SUPPRESS)
    p.add_argument("prompt")
    _add_sampling(p)
    p.add_argument("--show", type=int, default=10, help="how many tokens to list")
    _add_inference_commands(sub)
    return parser


# command -> "module:function(args, run, cfg) -> exit code"; imported only when used
INFERENCE_COMMANDS = {
    "generate": "lmforge.inspect:cli_generate",
    "next": "lmforge.inspect:cli_next",
    "chat": "lmforge.chat:cli_chat",
    "serve": "lmforge.serve.api:cli_serve",
    "label": "lmforge.serve.label:cli_label",
    "export": "lmforge.export:cli_export",
    "import": "lmforge.export:cli_import",
    "compare": "lmforge.inspect:cli_compare",
    "neighbours": "lmforge.inspect:cli_neighbours",
    "convert-checkpoint": "lmforge.train.sharded:cli_convert",
    "eval": "lmforge.evals.standard:cli_eval",
    "draft": "lmforge.draft:cli_draft",
}


def _add_inference_commands(sub) -> None:
    def command(name, help_text):
        p = sub.add_parser(name, help=help_text)
        _add_common(p, preset=False)
        p.add_argument("--preset", help=argparse.SUPPRESS)
        return p
    p = command("chat", "talk to a model in the terminal (/help lists the commands)")
    _add_sampling(p)
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--draft", default=None, metavar="DRAFT_RUN_DIR",
                   help="speculative decoding with this draft run's model (lmforge draft prepare)")
    p.add_argument("--prompt-lookup", action="store_true", help="speculative decoding with n-gram prompt lookup")
    p.add_argument("--tools", default=None, help="tools the model may call, comma-separated (calculator, lookup, "
                   "module:function), or none (default: calculator and lookup when the run's SFT taught tool use)")
    p = command("serve", "OpenAI-compatible HTTP API and web chat page")
    p.add_argument("--stage", help="which stage's model (default: the latest that finished)")
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--api-key", default=None, help="require this bearer key (shows in `ps`: prefer --api-key-file "
                   "or $LMFORGE_API_KEY; default none, which a non-loopback --host refuses)")
    p.add_argument("--api-key-file", default=None, help="require the key on this file's first line")
    p.add_argument("--max-batch", type=int, default=None, help="sequences decoded together")
    p.add_argument("--tools", default=None, help="tools the server runs itself (serve.builtin_tools), "
                   "comma-separated: calculator, lookup, module:function; none = off")
    p = command("label", "label preference pairs by hand: a web page (or --terminal) over datasets/label_items.jsonl")
    p.add_argument("--stage", help="the model that samples the answers when there are no label items yet "
                   "(default sft)")
    p.add_argument("--terminal", action="store_true", help="label in the terminal instead of a web page")
    p.add_argument("--host", default=None, help="address to bind (default preferences.host: 127.0.0.1, this machine "
                   "only; any other needs a password)")
    p.add_argument("--port", type=int, default=None, help="default preferences.port")
    p.add_argument("--password", default=None, help="ask for this password (HTTP Basic, any user name); shows in "
                   "`ps`: prefer --password-file or $LMFORGE_LABEL_PASSWORD")
    p.add_argument("--password-file", default=None, help="ask for the password on this file's first line")
    p = command("export", "write a Hugging Face transformers folder")
    p.add_argument("--format", default="hf", help="hf (the only format)")
    p.add_argument("--stage", help="which stage's model (default: the latest that finished)")
    p.add_argument("--out", help="output folder (default <run-dir>/export/hf)")
    p = command("import", "read a Hugging Face Llama / Qwen3 folder into a run")
    p.add_argument("folder")
    p.add_argument("--stage", help="model folder name in the run (default imported)")
    p.add_argument("--force", action="store_true", help="replace the run's tokenizer")
    p = command("compare", "one prompt answered by every stage's model, side by side")
    p.add_argument("prompt")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--raw", action="store_true", help="continue the text instead of rendering it as a chat turn")
    p.add_argument("--tools", default=None, help="tools offered to the chat stages, comma-separated, or none "
                   "(default: calculator and lookup when the run's SFT taught tool use)")
    p = command("convert-checkpoint", "a stage's latest sharded (parallel=fsdp) checkpoint -> model.safetensors")
    p.add_argument("--stage", help="which stage's checkpoint (default pretrain)")
    p.add_argument("--out", help="output folder (default <run-dir>/models/<stage>-checkpoint)")
    p = command("eval", "standard benchmarks: bits per byte, HellaSwag, ARC, MMLU (log-likelihood), GSM8K")
    p.add_argument("--stage", help="which stage's model (default: the latest that finished)")
    p.add_argument("overrides", nargs="*", metavar="eval.key=value")
    p = sub.add_parser("draft", help="a draft model for speculative decoding next to this run (--run-dir: the target)")
    draft = p.add_subparsers(dest="draft_command", required=True)
    q = draft.add_parser("prepare", help="start a draft run folder from the target run")
    _add_common(q, preset=False)
    q.add_argument("--preset", help=argparse.SUPPRESS)
    q.add_argument("draft_run_dir")
    q = draft.add_parser("distill", help="fine-tune the draft's pretrained model toward the target (KL)")
    _add_common(q, preset=False)
    q.add_argument("--preset", help=argparse.SUPPRESS)
    q.add_argument("draft_run_dir")
    q.add_argument("--steps", type=int, default=1000, help="training steps (the budget)")
    q.add_argument("--lr-scale", type=float, default=0.5, help="times the draft's pretraining learning rates")
    q.add_argument("--stage", default=None, help="the target's model (default: its latest)")
    q.add_argument("--device", default="auto")
    p = command("neighbours", "nearest tokens in embedding space")
    p.add_argument("word")
    p.add_argument("--stage", help="which stage's model (default: the latest that finished)")
    p.add_argument("-k", "--count", type=int, default=10)


def resolve(args) -> tuple:
    """The run folder and the config: the run's saved config.yaml unless a preset is named."""
    preset = getattr(args, "preset", None)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / (Path(preset).stem if preset else "tiny")
    run = RunDir(run_dir)
    overrides = getattr(args, "overrides", None) or []
    if preset is None and run.config_path.exists():
        cfg = load_config(None, overrides, base=run.config_path)
    else:
        cfg = load_config(preset or "tiny", overrides)
        if args.run_dir is None:
            run = RunDir(Path("runs") / cfg.run.name)
    return run, cfg


def cmd_status(run: RunDir, cfg) -> int:
    if not run.root.exists():
        print(f"no run at {run.root}")
        return 1
    print(f"run {run.root}")
    print(f"{'stage':<11} {'state':<9} {'headline':<34} {'steps':>17} {'time':>7} {'estimate':>9}")
    cut = []
    for name in STAGE_NAMES:
        stage = get_stage(name)
        manifest = run.read_manifest(name)
        steps = estimate = ""
        if manifest is None:
            state, headline, wall = "-", "", ""
        else:
            state = manifest.get("status", "?")
            if state == "done" and stage_state(run, cfg, stage) != "done":
                state = "stale"
            metrics = manifest.get("metrics") or {}
            value = metrics.get(stage.headline)
            headline = f"{stage.headline}={value}" if value is not None else (manifest.get("error") or "")[:34]
            wall = f"{manifest['wall_seconds']:.0f}s" if "wall_seconds" in manifest else ""
            if "planned_steps" in metrics:      # a training stage: planned vs done
                steps = f"{metrics['steps']}/{metrics['planned_steps']}"
                if metrics.get("cut_short"):
                    steps = "CUT " + steps
                    cut.append(name)
            if manifest.get("estimate"):
                e = manifest["estimate"]
                estimate = f"{e['before'] + e['train'] + e['after']:.0f}s"
        print(f"{name:<11} {state:<9} {headline:<34} {steps:>17} {wall:>7} {estimate:>9}")
    for name in cut:
        print(f"{name}: cut short by {name}.max_minutes before its planned steps; its figures are not the "
              f"preset's (rerun without the cap: lmforge run --from {name} {name}.max_minutes=0)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run, cfg = resolve(args)
        if args.command != "status":     # status stays quick: it never imports torch
            from .device import init_distributed, pick_device, set_threads
            set_threads(cfg.run.threads)     # once per process, for every stage and command after it
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:     # under torchrun: join the group first
                init_distributed(pick_device(cfg.run.device))
        if args.command == "run":
            run_pipeline(cfg, run, from_stage=args.from_stage, to_stage=args.to_stage)
            cmd_status(run, cfg)
            return 0
        if args.command == "status":
            return cmd_status(run, cfg)
        if args.command in INFERENCE_COMMANDS:
            import importlib
            module_name, func_name = INFERENCE_COMMANDS[args.command].split(":")
            return getattr(importlib.import_module(module_name), func_name)(args, run, cfg)
        run.root.mkdir(parents=True, exist_ok=True)
        run.save_config(cfg)
        execute_stage(run, cfg, get_stage(args.command), force=args.force)
        return 0
    except ConfigError as err:
        print(f"lmforge: config error: {err}", file=sys.stderr)
        return 2
    except StageError as err:
        print(f"lmforge: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lmforge: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - one line for the user, the manifest keeps the traceback
        from .checkpoints import ModelLoadError
        from .train.loop import CheckpointError
        if isinstance(err, (CheckpointError, ModelLoadError)):
            print(f"lmforge: {err}", file=sys.stderr)
            return 1
        raise


def entry() -> int:
    """Console entry point: main(), then leave the torchrun process group cleanly."""
    code = main()
    if "torch.distributed" in sys.modules:          # only if something imported it: a torchrun process
        from .device import leave_process_group
        leave_process_group(code)                   # all ranks together; ends the process if one was joined
    return code


if __name__ == "__main__":
    sys.exit(entry())
