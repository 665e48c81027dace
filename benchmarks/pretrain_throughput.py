"""Pretraining throughput of the shared training loop: forward, backward and optimizer time per
step and tokens/s (MFU on a GPU), for each precision side by side, and what `dtype=auto` picks.

    python benchmarks/pretrain_throughput.py --preset tiny                       # auto, fp32, bf16
    python benchmarks/pretrain_throughput.py --preset tiny --profile             # + where a step's time goes
    python benchmarks/pretrain_throughput.py --preset tiny --modes auto,auto+plain-loss   # the chunked head loss vs logits
    python benchmarks/pretrain_throughput.py --preset gpt2-124m --modes auto,compile+bf16
    python benchmarks/pretrain_throughput.py --preset gpt2-124m --modes compile+bf16,compile+bf16+fp8 \
        --batch-sizes 16,32,64 --profile          # a GPU: the best batch that fits, FP8 (torchao) beside bf16
    python benchmarks/pretrain_throughput.py --preset gpt2-124m --modes compile+bf16+flash,compile+bf16+cudnn  # attention kernels
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/pretrain_throughput.py --preset tiny                   # a CPU without native bf16

Each mode builds the preset's model, runs `--warmup` optimizer steps through
lmforge.train.loop.Trainer (the real loop: Muon + AdamW, accumulation, clipping, autocast) on
random token windows, then times `--steps` more with the loop's own part timers. Random tokens
are fine here: the arithmetic does not depend on what the tokens are. `--profile` runs
torch.profiler over a few steps of the first mode (at its fastest batch size) and sorts the time
into matmuls, attention, cross-entropy over the vocabulary, norms, the optimizer, other ops and
Python (the rest of the wall time). On CUDA it sorts the kernels' GPU time instead, each charged
to the op that launched it, and what the wall time has beyond them is the GPU's idle time
(launch overhead, Python, host waits): the breakdown of what holds MFU under the peak. Prints
tables; never a test.

On CUDA each row also reports peak memory (torch.cuda.max_memory_allocated) and the data wait:
the share of the step spent making the batch (pretraining's own batch_fn, pinned host memory,
non-blocking copies). Attention runs through the kernel torch's SDPA dispatch picks, as in a
training run (cuDNN's on an H100 with torch 2.11, 1.55x flash's speed there:
benchmarks/attention_backends.py); "+flash" or "+cudnn" forces one, so that a fallback is an
error, not a silent slowdown. AdamW is fused. `--batch-sizes` tries each micro-batch size
(grad_accum scaled to keep the tokens per step) and marks the fastest that fits; a "+fp8" mode
converts the linear layers with torchao's float8 training (`pip install torchao`, GPUs with
FP8: H100/H200/L40S/4090), left out where either is missing.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.config import load_config  # noqa: E402
from lmforge.device import cpu_bf16_probe, peak_flops, pick_device, set_threads, train_precision  # noqa: E402
from lmforge.model import GPT  # noqa: E402
from lmforge.train.loop import Trainer  # noqa: E402
from lmforge.train.pretrain import next_token_loss_sum, window_batch_fn  # noqa: E402

# name -> (dtype setting, compile). After any: "+plain-loss" takes the loss from full (B, T, V)
# logits instead of lmforge/head_loss.py's chunks; on CUDA "+flash" or "+cudnn" forces that
# attention kernel (else torch chooses, as in training), "+fp8" converts the linear layers (torchao)
MODES = {
    "auto": ("auto", False),
    "fp32": ("fp32", False),
    "bf16": ("bf16", False),
    "compile": ("auto", True),
    "compile+bf16": ("bf16", True),
}


def plain_loss_sum(model, batch):
    _, loss = model(batch["x"], targets=batch["y"])
    return loss * batch["n_items"]

# profiler op name -> category (the rest is "other ops")
CATEGORIES = [
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention")),
    ("cross-entropy", ("cross_entropy", "log_softmax", "nll_loss", "_log_softmax", "logsumexp")),
    # autocast's and the chunked loss's dtype conversions
    ("dtype casts", ("aten::copy_", "aten::_to_copy", "aten::to")),
    ("norms", ("rms_norm", "vector_norm", "linalg_vector_norm", "rsqrt", "norm")),
    ("matmuls", ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::matmul", "aten::linear",
                 "mkldnn", "aten::_mm")),
]


def to_float8(model) -> None:
    """torchao float8 training for every linear layer but the LM head (its vocabulary
    dimension is the usual exception); raises where torchao or FP8 hardware is missing."""
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9):
        raise RuntimeError("FP8 needs a CUDA GPU with compute capability 8.9 or later")
    from torchao.float8 import convert_to_float8_training
    convert_to_float8_training(model, module_filter_fn=lambda module, name: "lm_head" not in name)


def build(cfg, mode: str, vocab_size: int, device, steps: int):
    fp8 = "+fp8" in mode
    forced = next((name for name in ("flash", "cudnn") if f"+{name}" in mode), None)
    base = mode.replace("+fp8", "").replace("+flash", "").replace("+cudnn", "").removesuffix("+plain-loss")
    setting, compile_ = MODES[base]
    loss_fn = plain_loss_sum if mode.endswith("+plain-loss") else next_token_loss_sum
    tcfg = dataclasses.replace(cfg.pretrain, dtype=setting, compile=compile_, max_steps=10**9,
                               warmup_steps=0, log_every=10**9, eval_every=10**9, checkpoint_every=10**9)
    model_cfg = dataclasses.replace(cfg.model, vocab_size=cfg.model.vocab_size or vocab_size)
    torch.manual_seed(0)
    model = GPT(model_cfg)
    if fp8:
        to_float8(model)
    tokens = np.random.default_rng(0).integers(0, model_cfg.vocab_size, size=2_000_000).astype(np.uint16)
    tmp = tempfile.mkdtemp()
    trainer = Trainer(model, tcfg, out_dir=Path(tmp), log_path=Path(tmp) / "log.jsonl", device=device,
                      flops_per_item=model.flops_per_token(tcfg.seq_len), stage=f"bench-{mode}")
    batch_fn = window_batch_fn(tokens, tcfg.batch_size, tcfg.grad_accum, tcfg.seq_len, 0, trainer.device)

    # torch's own kernel choice, as in training, unless the mode forces one (a new context each
    # step: sdpa_kernel's cannot be entered twice)
    attention = contextlib.nullcontext
    if forced and trainer.device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backend = SDPBackend.CUDNN_ATTENTION if forced == "cudnn" else SDPBackend.FLASH_ATTENTION
        attention = lambda: sdpa_kernel([backend])  # noqa: E731

    def run(n: int) -> None:
        for _ in range(n):
            started = time.perf_counter()
            batches = [batch_fn(trainer.step, m, 0, 1) for m in range(tcfg.grad_accum)]
            trainer.part_seconds["data"] = trainer.part_seconds.get("data", 0.0) + time.perf_counter() - started
            with attention():
                trainer.train_step(batches, loss_fn)
            trainer.step += 1
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
    return trainer, tcfg, model, run


def measure(cfg, mode: str, steps: int, warmup: int, vocab_size: int, device) -> dict:
    trainer, tcfg, model, run = build(cfg, mode, vocab_size, device, steps)
    started = time.perf_counter()
    run(warmup)
    warmup_seconds = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.part_seconds = {k: 0.0 for k in trainer.part_seconds}
    trainer.time_parts = True
    start = time.perf_counter()
    run(steps)
    seconds = time.perf_counter() - start
    parts = {k: v / steps for k, v in trainer.part_seconds.items()}
    tokens_per_step = tcfg.batch_size * tcfg.grad_accum * tcfg.seq_len
    rate = steps * tokens_per_step / seconds
    peak = peak_flops(trainer.device)
    return {"mode": mode, "compute": trainer.precision.record()["compute"],
            "newton_schulz": trainer.precision.record()["newton_schulz"],
            "tokens_per_second": round(rate), "seconds_per_step": round(seconds / steps, 4),
            "forward": round(parts["forward"], 4), "backward": round(parts["backward"], 4),
            "optimizer": round(parts["optimizer"], 4), "optimizer_share": round(parts["optimizer"] / (seconds / steps), 4),
            "warmup_seconds": round(warmup_seconds, 1),
            "data_wait_share": round(parts.get("data", 0.0) / (seconds / steps), 4),
            "batch": f"{tcfg.batch_size}x{tcfg.grad_accum}x{tcfg.seq_len}",
            "peak_memory_gb": (round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                               if device.type == "cuda" else None),
            "mfu": round(rate * model.flops_per_token(tcfg.seq_len) / peak, 4) if peak else None,
            "parameters": model.num_params()}


# CUDA kernel name -> category, tried in order (cuBLAS/CUTLASS GEMMs, the flash kernels, and
# the Triton kernels torch.compile writes, named after the ops they fuse)
KERNEL_CATEGORIES = [
    ("attention", ("flash", "fmha", "attention")),
    ("cross-entropy", ("cross_entropy", "log_softmax", "nll_loss", "logsumexp")),
    ("matmuls", ("gemm", "cutlass", "xmma", "cublas", "nvjet", "sm90_", "sm80_", "triton_tem")),
    ("norms", ("rms_norm", "rsqrt", "norm")),
    ("compiled fused kernels", ("triton_",)),
]


def category(name: str, table=CATEGORIES, default: str = "other ops") -> str:
    for label, keys in table:
        if any(k in name for k in keys):
            return label
    return default


def in_optimizer(event) -> bool:
    """Whether an Optimizer.step event encloses this op (Muon's Newton-Schulz included)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("Optimizer.step"):
            return True
        parent = parent.cpu_parent
    return False


def cpu_breakdown(events, wall: float) -> tuple[Counter, Counter]:
    """Every CPU op's self time by category; Python is the wall time no op accounts for."""
    totals: Counter = Counter()
    other: Counter = Counter()   # which ops make up "other ops", to name the largest
    for event in events:
        if event.name.startswith(("Optimizer.", "ProfilerStep")) or event.device_type != torch.autograd.DeviceType.CPU:
            continue
        label = "optimizer" if in_optimizer(event) else category(event.name)
        totals[label] += event.self_cpu_time_total / 1e6
        if label == "other ops":
            other[event.name] += event.self_cpu_time_total / 1e6
    # self times of ops run on two threads can exceed wall time; Python is what is left, if anything
    totals["python and the rest"] = max(0.0, wall - sum(totals.values()))
    return totals, other


def gpu_breakdown(events, wall: float) -> tuple[Counter, Counter]:
    """Every CUDA kernel's time, charged to the op that launched it (the profiler links them by
    correlation id): the optimizer's when an Optimizer.step encloses that op, else by the
    kernel's name, then the op's. On one stream kernels do not overlap, so what the wall time
    has beyond their sum is time the GPU sat idle: launch overhead, Python, host waits."""
    totals: Counter = Counter()
    other: Counter = Counter()
    for event in events:
        if event.device_type != torch.autograd.DeviceType.CPU or not event.kernels:
            continue
        optimizer = in_optimizer(event)
        for kernel in event.kernels:
            label = "optimizer" if optimizer else category(
                kernel.name, KERNEL_CATEGORIES, category(event.name, default="other kernels"))
            if label == "other ops":          # an op category with no GPU meaning of its own
                label = "other kernels"
            totals[label] += kernel.duration / 1e6
            if label == "other kernels":
                other[kernel.name[:60]] += kernel.duration / 1e6
    totals["GPU idle (launches, Python, waits)"] = max(0.0, wall - sum(totals.values()))
    return totals, other


def profile(cfg, mode: str, steps: int, vocab_size: int, device) -> dict:
    """Seconds per step by category: on a CPU every op's self time (cpu_breakdown), on CUDA every
    kernel's time and the GPU's idle time (gpu_breakdown)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    trainer, _, _, run = build(cfg, mode, vocab_size, device, steps)
    run(2)
    cuda = trainer.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        started = time.perf_counter()
        run(steps)          # ends with a synchronize on CUDA, so the wall time covers every kernel
        wall = time.perf_counter() - started
    totals, other = (gpu_breakdown if cuda else cpu_breakdown)(prof.events(), wall)
    # the profiler's own table of the costliest ops (device time on CUDA), for reading beside the categories
    table = prof.key_averages().table(sort_by="self_device_time_total" if cuda else "self_cpu_time_total", row_limit=30)
    return ({k: round(v / steps, 4) for k, v in totals.most_common()} | {"wall_per_step": round(wall / steps, 4)}
            | {"largest_other_ops": {k: round(v / steps, 4) for k, v in other.most_common(6)}, "table": table})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--modes", default="auto,fp32,bf16", help=f"comma list of {', '.join(MODES)}, each optionally +plain-loss")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = every usable core)")
    parser.add_argument("--profile", action="store_true", help="also print the profiler breakdown of the first mode")
    parser.add_argument("--vocab-size", type=int, default=None,
                        help="used when the preset leaves it to the tokenizer (default: the preset's tokenizer.vocab_size)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--batch-sizes", default="", help="comma list of micro-batch sizes to try (grad_accum "
                        "scaled to keep the tokens per step); the fastest that fits is marked")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.preset, args.overrides)
    threads = set_threads(args.threads)
    device = pick_device(cfg.run.device)
    vocab_size = args.vocab_size or cfg.tokenizer.vocab_size
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"preset {args.preset} on {device} ({name}), torch {torch.__version__}, {threads} threads; "
          f"batch {cfg.pretrain.batch_size}x{cfg.pretrain.grad_accum}x{cfg.pretrain.seq_len} tokens")
    auto = train_precision("auto", device)
    print(f"dtype=auto chooses {auto.record()['compute']} (Newton-Schulz {auto.record()['newton_schulz']}): "
          f"{auto.reason}")
    if device.type == "cpu":
        print(f"probe: {json.dumps(cpu_bf16_probe())}")
    rows = []
    tokens_per_step = cfg.pretrain.batch_size * cfg.pretrain.grad_accum
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()] or [cfg.pretrain.batch_size]
    for mode in args.modes.split(","):
        for size in sizes:
            run_cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(
                cfg.pretrain, batch_size=size, grad_accum=max(1, tokens_per_step // size)))
            try:
                rows.append(measure(run_cfg, mode.strip(), args.steps, args.warmup, vocab_size, device))
            except Exception as err:  # noqa: BLE001 - one mode failing (no compiler, out of memory) must not hide the rest
                rows.append({"mode": mode, "error": f"batch {size}: {type(err).__name__}: "
                                                    f"{str(err).splitlines()[0][:120]}"})
            print(f"measured: {json.dumps(rows[-1])}", flush=True)   # kept if a later mode hangs or is killed
            if device.type == "cuda":
                torch.cuda.empty_cache()
    base = next((r["tokens_per_second"] for r in rows if "tokens_per_second" in r), None)
    fastest = max((r for r in rows if "tokens_per_second" in r), key=lambda r: r["tokens_per_second"], default=None)
    print(f"{'mode':<14}{'batch':>12}{'compute':>8}{'tokens/s':>10}{'s/step':>9}{'fwd':>8}{'bwd':>8}{'opt':>8}"
          f"{'opt %':>7}{'data %':>7}{'vs first':>9}{'MFU':>7}{'mem GB':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['mode']:<14} failed: {r['error']}")
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        memory = f"{r['peak_memory_gb']:.1f}" if r["peak_memory_gb"] is not None else "-"
        print(f"{r['mode']:<14}{r['batch']:>12}{r['compute']:>8}{r['tokens_per_second']:>10,}"
              f"{r['seconds_per_step']:>9.3f}{r['forward']:>8.3f}{r['backward']:>8.3f}{r['optimizer']:>8.3f}"
              f"{r['optimizer_share']:>7.1%}{r['data_wait_share']:>7.1%}{r['tokens_per_second'] / base:>8.2f}x"
              f"{mfu:>7}{memory:>8}" + ("  <- fastest" if r is fastest and len(rows) > 1 else ""))
    result = {"rows": rows, "auto": auto.record()}
    if args.profile:
        mode = args.modes.split(",")[0].strip()
        profile_cfg = cfg
        first = [r for r in rows if r["mode"] == mode and "tokens_per_second" in r]
        if first:   # the first mode at its fastest batch size
            size, accum, _ = (int(v) for v in max(first, key=lambda r: r["tokens_per_second"])["batch"].split("x"))
            profile_cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, batch_size=size,
                                                                                grad_accum=accum))
        breakdown = profile(profile_cfg, mode, max(3, args.steps // 2), vocab_size, device)
        wall = breakdown.pop("wall_per_step")
        largest = breakdown.pop("largest_other_ops")
        table = breakdown.pop("table")
        if args.json:
            Path(args.json).with_suffix(".profile.txt").write_text(table)
        print(f"\nprofile of {mode}, batch {profile_cfg.pretrain.batch_size}x{profile_cfg.pretrain.grad_accum}: "
              f"seconds per step by category (wall {wall:.3f} s)")
        for key, value in breakdown.items():
            print(f"  {key:<22}{value:>8.4f}  {value / wall:>6.1%}")
        print("  largest of the other ops or kernels: " + ", ".join(f"{k} {v:.4f}" for k, v in largest.items()))
        breakdown["largest_other_ops"] = largest
        result["profile"] = {"mode": mode, "wall_per_step": wall, **breakdown}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
