"""Pretraining throughput: tokens/s (and MFU on a GPU) of the shared training loop, side by side.

    python benchmarks/pretrain_throughput.py --preset tiny            # CPU: fp32 / bf16 / compile
    python benchmarks/pretrain_throughput.py --preset gpt2-124m --modes bf16,compile+bf16

Each mode builds the preset's model, runs `--warmup` optimizer steps through
lmforge.train.loop.Trainer (the real loop: Muon + AdamW, accumulation, clipping) on
random token windows, then times `--steps` more. Random tokens are fine here: the
arithmetic does not depend on what the tokens are. Prints one table; never a test.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.config import load_config  # noqa: E402
from lmforge.model import GPT  # noqa: E402
from lmforge.train.loop import Trainer, peak_flops, pick_device  # noqa: E402
from lmforge.train.pretrain import make_batch_fn, next_token_loss_sum  # noqa: E402

MODES = {  # name -> (dtype, compile)
    "fp32": ("fp32", False),
    "bf16": ("bf16", False),
    "compile": ("fp32", True),
    "compile+bf16": ("bf16", True),
}


def measure(cfg, mode: str, steps: int, warmup: int, vocab_size: int, device) -> dict:
    dtype, compile_ = MODES[mode]
    tcfg = dataclasses.replace(cfg.pretrain, dtype=dtype, compile=compile_, max_steps=warmup + steps,
                               warmup_steps=0, log_every=10**9, eval_every=10**9, checkpoint_every=10**9)
    model_cfg = dataclasses.replace(cfg.model, vocab_size=cfg.model.vocab_size or vocab_size)
    torch.manual_seed(0)
    model = GPT(model_cfg)
    tokens = np.random.default_rng(0).integers(0, model_cfg.vocab_size, size=2_000_000).astype(np.uint16)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, tcfg, out_dir=Path(tmp), log_path=Path(tmp) / "log.jsonl", device=device,
                          flops_per_item=model.flops_per_token(tcfg.seq_len), stage=f"bench-{mode}")
        batch_fn = make_batch_fn(tokens, tcfg.batch_size, tcfg.grad_accum, tcfg.seq_len, 0, trainer.device)

        def run(n):
            for _ in range(n):
                batches = [batch_fn(trainer.step, m, 0, 1) for m in range(tcfg.grad_accum)]
                trainer.train_step(batches, next_token_loss_sum)
                trainer.step += 1
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()

        compile_start = time.perf_counter()
        run(warmup)
        warmup_seconds = time.perf_counter() - compile_start
        start = time.perf_counter()
        run(steps)
        seconds = time.perf_counter() - start
    tokens_per_step = tcfg.batch_size * tcfg.grad_accum * tcfg.seq_len
    rate = steps * tokens_per_step / seconds
    peak = peak_flops(trainer.device)
    return {"mode": mode, "tokens_per_second": round(rate), "seconds_per_step": round(seconds / steps, 4),
            "warmup_seconds": round(warmup_seconds, 1),
            "mfu": round(rate * model.flops_per_token(tcfg.seq_len) / peak, 4) if peak else None,
            "parameters": model.num_params()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--modes", default="fp32,bf16,compile", help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="used when the preset leaves it to the tokenizer (default: the preset's tokenizer.vocab_size)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.preset, args.overrides)
    device = pick_device(cfg.run.device)
    vocab_size = args.vocab_size or cfg.tokenizer.vocab_size
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"preset {args.preset} on {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"batch {cfg.pretrain.batch_size}x{cfg.pretrain.grad_accum}x{cfg.pretrain.seq_len} tokens")
    rows = []
    for mode in args.modes.split(","):
        try:
            rows.append(measure(cfg, mode.strip(), args.steps, args.warmup, vocab_size, device))
        except Exception as err:  # noqa: BLE001 - one mode failing (e.g. no compiler) must not hide the rest
            rows.append({"mode": mode, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"})
    base = next((r["tokens_per_second"] for r in rows if "tokens_per_second" in r), None)
    print(f"{'mode':<14}{'tokens/s':>12}{'s/step':>10}{'vs first':>10}{'MFU':>8}{'warmup s':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<14} failed: {r['error']}")
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        print(f"{r['mode']:<14}{r['tokens_per_second']:>12,}{r['seconds_per_step']:>10.3f}"
              f"{r['tokens_per_second'] / base:>9.2f}x{mfu:>8}{r['warmup_seconds']:>10.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
