"""Where the work runs: the device, CPU threads (set once per process), the torchrun process
group, and the precision a training step computes in.

    from lmforge.device import pick_device, set_threads, train_precision
    device = pick_device("auto")
    set_threads(cfg.run.threads)             # once per process; clamped to the cores this process may use
    precision = train_precision("auto", device)
    precision.autocast                       # torch.bfloat16 or None (plain float32)
    precision.newton_schulz                  # the dtype Muon orthogonalizes in
    precision.record()                       # what a manifest stores: the choice and why

bf16 is only worth it where the hardware multiplies in it. CUDA does; on a CPU it depends
on the chip: with AVX-512-BF16 or AMX a bf16 matmul is several times faster than fp32, while
an AVX2-only CPU emulates bf16 and was measured 6.6x *slower* (issue 16: a tiny pretraining
step spent 8 of its 10 s in bf16 Newton-Schulz). So `dtype=auto` asks, once per process,
whether torch's oneDNN has native bf16 here and then times the two on a small matmul: bf16
is used only when both say it is fast. Everything else runs in float32. The choice is
recorded in each training manifest and never fingerprinted: the same planned steps on any
machine, only sooner or later.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist


# ---------------------------------------------------------------- devices and processes

def pick_device(preference: str = "auto") -> torch.device:
    if preference != "auto":
        return torch.device(preference)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the torchrun process group if there is one; returns (rank, world_size)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def leave_process_group(code: int = 0) -> None:
    """End a torchrun process: every rank leaves together, then the process exits with `code`.
    Does nothing (returns) when no process group was joined.

    The ranks wait for each other first (rank 0 works on after training, evaluating and writing
    the manifest, while the others are done), then the group is destroyed and output flushed.
    The process then ends through os._exit, skipping the interpreter's and C++'s teardown: gloo's
    threads, still owned by objects Python frees at exit in no set order, could abort a finished
    rank there ("terminate called without an active exception", SIGABRT) and turn a run whose
    every file was written into a failure (seen once in CI on the FSDP test; never on the
    machine that ran it 25 times under load). Every file this project writes is closed before."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    dist.destroy_process_group()
    import logging
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def all_reduce_sums(*values: float) -> list[float]:
    """Sum plain numbers over all processes (identity outside torchrun)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(values)
    backend_cuda = dist.get_backend() == "nccl"
    tensor = torch.tensor(values, dtype=torch.float64, device="cuda" if backend_cuda else "cpu")
    dist.all_reduce(tensor)
    return tensor.tolist()


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether FSDP2 shards this module (train/sharded.py); only a process that imported FSDP can
    hold one, so this never imports it (a slow import, docs/LOG.md)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return fsdp is not None and isinstance(model, fsdp.FSDPModule)


# ---------------------------------------------------------------- CPU threads

def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS, Windows
        return os.cpu_count() or 1


_threads: int | None = None


def set_threads(requested: int = 0, warn=None) -> int:
    """Set torch's intra-op threads once for this process and return the count.

    0 means all usable cores, shared out between the processes torchrun started on this
    machine (LOCAL_WORLD_SIZE): N processes with a full thread pool each would fight over the
    same cores. A request above the cores is clamped with a one-line warning. Later calls
    return the first answer: every stage of one `lmforge run` keeps the same threads, and a
    mid-run change would make timings incomparable.
    """
    global _threads
    if _threads is not None:
        return _threads
    cores = usable_cores()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    share = max(1, cores // local)
    if requested > share:
        message = (f"run.threads={requested} is more than the {share} core(s) this process can use"
                   + (f" ({cores} cores, {local} processes)" if local > 1 else "") + f"; using {share}")
        (warn or (lambda m: print(f"lmforge: warning: {m}", file=sys.stderr)))(message)
    _threads = min(requested, share) if requested else share
    torch.set_num_threads(_threads)
    return _threads


# ---------------------------------------------------------------- precision

PROBE_SHAPE = (256, 704, 256)   # a tiny-preset MLP matmul: (rows, inner, cols)


def native_cpu_bf16() -> bool | None:
    """Whether torch's oneDNN reports native bf16 on this CPU (AVX-512-BF16 or AMX); None
    where this torch build does not say."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is None:
        return None
    try:
        return bool(probe())
    except (RuntimeError, AttributeError):
        return None


def time_matmuls(device: torch.device, repeats: int = 15) -> tuple[float, float]:
    """Milliseconds of one PROBE_SHAPE matmul in float32 and in bfloat16 on device: the fastest
    of `repeats`, the two dtypes taking turns, so that other work on the machine slows both
    alike and the minimum sees through it."""
    m, k, n = PROBE_SHAPE
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    pairs = {dtype: (a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype))
             for dtype in (torch.float32, torch.bfloat16)}
    best = {dtype: float("inf") for dtype in pairs}
    for i in range(repeats + 2):
        for dtype, (x, y) in pairs.items():
            start = time.perf_counter()
            x @ y
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= 2:   # the first calls pick kernels and warm caches
                best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] * 1e3, best[torch.bfloat16] * 1e3


@functools.cache
def cpu_bf16_probe() -> dict:
    """Is bf16 fast on this CPU? Asked once per process: the capability oneDNN reports, then a
    measured matmul in both dtypes (a few ms). Fast means native and no slower than fp32."""
    native = native_cpu_bf16()
    device = torch.device("cpu")
    fp32_ms, bf16_ms = time_matmuls(device)
    fast = bool(native) and bf16_ms <= fp32_ms
    if native is False:
        reason = "no native bf16 (no AVX-512-BF16 or AMX)"
    elif native is None:
        reason = "this torch build does not report native bf16"
    else:
        reason = "native bf16" + (" and faster" if fast else ", but measured slower")
    return {"native_bf16": native, "fp32_matmul_ms": round(fp32_ms, 4), "bf16_matmul_ms": round(bf16_ms, 4),
            "bf16_fast": fast, "reason": f"{reason}: {PROBE_SHAPE[0]}x{PROBE_SHAPE[1]} @ "
            f"{PROBE_SHAPE[1]}x{PROBE_SHAPE[2]} bf16 {bf16_ms:.3f} ms vs fp32 {fp32_ms:.3f} ms"}


@dataclass(frozen=True)
class Precision:
    """What a training step computes in: autocast's dtype (None = plain float32) and the dtype
    of Muon's Newton-Schulz iteration. Master weights and optimizer states stay float32."""
    setting: str                         # the config's dtype: auto | fp32 | bf16
    device: str
    autocast: torch.dtype | None
    newton_schulz: torch.dtype
    reason: str
    probe: dict | None = None

    def record(self) -> dict:
        """The manifest's account of the choice."""
        name = lambda d: "fp32" if d in (None, torch.float32) else str(d).replace("torch.", "")  # noqa: E731
        return {"setting": self.setting, "device": self.device, "compute": name(self.autocast),
                "newton_schulz": name(self.newton_schulz), "reason": self.reason,
                **({"probe": self.probe} if self.probe else {})}

    def autocast_context(self, device: torch.device):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast)


def train_precision(setting: str, device: torch.device) -> Precision:
    """auto: bf16 on CUDA, bf16 on a CPU where cpu_bf16_probe() finds it fast, else float32
    everywhere (MPS included). fp32 and bf16 force the choice, Newton-Schulz included."""
    dev = str(device)
    if setting == "fp32":
        return Precision(setting, dev, None, torch.float32, "dtype=fp32 set in the config")
    if setting == "bf16":
        return Precision(setting, dev, torch.bfloat16, torch.bfloat16, "dtype=bf16 set in the config")
    if device.type == "cuda":
        return Precision(setting, dev, torch.bfloat16, torch.bfloat16, "CUDA multiplies in bf16")
    if device.type == "cpu":
        probe = cpu_bf16_probe()
        dtype = torch.bfloat16 if probe["bf16_fast"] else None
        return Precision(setting, dev, dtype, dtype or torch.float32, probe["reason"], probe)
    return Precision(setting, dev, None, torch.float32, f"{device.type}: float32")


# ---------------------------------------------------------------- GPU peak FLOPs (for MFU)

# Dense bf16 peak FLOP/s, matched on whole words of the device name: "L4" must not match
# "L40S", nor "A10" "A100". The H100's PCIe and NVL boards are slower than its SXM one, so the
# longer keys come first.
PEAK_BF16_FLOPS = {("H100", "PCIe"): 756e12, ("H100", "NVL"): 835e12, ("H100",): 989e12, ("H200",): 989e12,
                   ("A100",): 312e12, ("L40S",): 362e12, ("L4",): 121e12, ("A10",): 125e12, ("4090",): 165e12}


def peak_flops_of(name: str) -> float | None:
    """Dense bf16 peak of a GPU by its CUDA name ("NVIDIA H100 80GB HBM3"); None where unknown."""
    words = set(name.replace("-", " ").split())
    for key, value in PEAK_BF16_FLOPS.items():
        if words.issuperset(key):
            return value
    return None


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of the GPU, for MFU; None where unknown (CPU)."""
    return peak_flops_of(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
