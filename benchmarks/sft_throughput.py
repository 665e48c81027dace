"""SFT throughput: packing vs padding on the same conversations, side by side.

    python benchmarks/sft_throughput.py --run-dir runs/tiny          # after `lmforge run --to synth`
    python benchmarks/sft_throughput.py --run-dir runs/tiny --steps 20 --batch-size 16

For each batching mode it builds the rows exactly as the sft stage does, runs `--steps`
optimizer steps of the shared training loop on the run's base model, and reports
computed tokens/s, label (assistant) tokens/s, the share of computed positions that were
padding, and seconds per step. Prints one table; never a test.
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.checkpoints import load_model  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402
from lmforge.tokenizer import Tokenizer  # noqa: E402
from lmforge.train.loop import Trainer  # noqa: E402
from lmforge.train.sft import load_examples, row_batch_fn, masked_loss_sum, pack_rows, single_rows  # noqa: E402


def measure(run: RunDir, cfg, examples, packing: bool, steps: int, warmup: int) -> dict:
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    rows = pack_rows(examples, cfg.sft.seq_len + 1, tokenizer.pad_id) if packing else single_rows(examples)
    tcfg = dataclasses.replace(cfg.sft, max_steps=steps + warmup, log_every=10**9, eval_every=10**9,
                               checkpoint_every=10**9)
    model = load_model(run.model_dir("pretrain"))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, tcfg, out_dir=Path(tmp), log_path=Path(tmp) / "log.jsonl", device="cpu")
        batch_fn = row_batch_fn(rows, tcfg.batch_size, tcfg.grad_accum, 0, tokenizer.pad_id, trainer.device)
        computed = labels = real = 0
        for step in range(warmup + steps):
            if step == warmup:
                start = time.perf_counter()
            batches = [batch_fn(step, m, 0, 1) for m in range(tcfg.grad_accum)]
            trainer.train_step(batches, masked_loss_sum)
            if step >= warmup:
                computed += sum(b["n_computed"] for b in batches)
                labels += sum(b["n_items"] for b in batches)
                real += sum(b["n_real"] for b in batches)
        seconds = time.perf_counter() - start
    return {"mode": "packed" if packing else "padded", "rows": len(rows),
            "computed_tokens_per_second": computed / seconds, "label_tokens_per_second": labels / seconds,
            "padding_fraction": 1 - real / computed, "seconds_per_step": seconds / steps,
            "rows_per_epoch_steps": len(rows) / tcfg.batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    run = RunDir(args.run_dir)
    cfg = run.load_config()
    if args.batch_size:
        cfg.sft.batch_size = args.batch_size
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    examples, _ = load_examples(run.path("datasets", "sft.jsonl"), tokenizer, cfg.sft.seq_len + 1)
    random.Random(0).shuffle(examples)
    print(f"{len(examples):,} conversations, batch {cfg.sft.batch_size} rows of up to {cfg.sft.seq_len} tokens, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = [measure(run, cfg, examples, packing, args.steps, args.warmup) for packing in (True, False)]
    print(f"{'mode':<8}{'rows':>8}{'computed tok/s':>16}{'label tok/s':>13}{'padding':>9}{'s/step':>8}"
          f"{'steps/epoch':>13}")
    for r in rows:
        print(f"{r['mode']:<8}{r['rows']:>8,}{r['computed_tokens_per_second']:>16,.0f}"
              f"{r['label_tokens_per_second']:>13,.0f}{r['padding_fraction']:>9.1%}{r['seconds_per_step']:>8.3f}"
              f"{r['rows_per_epoch_steps']:>13,.0f}")
    packed, padded = rows
    print(f"packing trains on {packed['label_tokens_per_second'] / padded['label_tokens_per_second']:.2f}x the "
          f"assistant tokens per second of padding")


if __name__ == "__main__":
    main()
