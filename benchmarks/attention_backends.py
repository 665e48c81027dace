"""Causal attention forward + backward through each scaled_dot_product_attention backend, side by
side, at a model's shape: which kernel the training step should ask for on this GPU.

    python benchmarks/attention_backends.py                        # gpt2-124m: 64 x 12 heads x 1024 x 64, bf16
    python benchmarks/attention_backends.py --batch 8 --heads 4 --seq 256 --head-dim 64

Each backend (flash, cuDNN, memory-efficient, and the default dispatch with none forced) runs
`--repeats` forward + backward passes on the same random q, k, v after `--warmup` of them,
timed with CUDA events (the median is reported). TFLOP/s use the MFU convention of
GPT.flops_per_token (12 H Q T per token for forward + backward, the skipped causal half not
subtracted), so they compare directly with the training step's MFU. Each backend's output and
gradients are compared with the first backend's (flash on a GPU) (largest relative difference). A backend this
build or GPU lacks is reported as unavailable, not an error. On a CPU only the default and the
math backend run (timed with the host clock). Prints a table; never a test.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {
    "flash": [SDPBackend.FLASH_ATTENTION],
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
    "default": None,            # torch's own dispatch order, nothing forced
}


def run_once(q, k, v, grad):
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
    return out.detach(), dq, dk, dv


def time_backend(backend, q, k, v, grad, warmup: int, repeats: int) -> tuple[float, tuple]:
    ctx = sdpa_kernel(backend) if backend is not None else torch.enable_grad()
    cuda = q.device.type == "cuda"
    with ctx:
        for _ in range(warmup):
            result = run_once(q, k, v, grad)
        times = []
        for _ in range(repeats):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                result = run_once(q, k, v, grad)
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                started = time.perf_counter()
                result = run_once(q, k, v, grad)
                times.append(time.perf_counter() - started)
    return statistics.median(times), result


def relative_difference(a: tuple, b: tuple) -> float:
    return max(float((x.float() - y.float()).norm() / y.float().norm().clamp(min=1e-12)) for x, y in zip(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    names = ["flash", "cudnn", "efficient", "default"] if cuda else ["math", "default"]
    g = torch.Generator(device=device).manual_seed(0)
    shape = (args.batch, args.heads, args.seq, args.head_dim)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype, generator=g).requires_grad_() for _ in range(3))
    grad = torch.randn(shape, device=device, dtype=dtype, generator=g)
    flops = 12 * args.heads * args.head_dim * args.seq * args.batch * args.seq
    print(f"{device} ({torch.cuda.get_device_name() if cuda else 'cpu'}), torch {torch.__version__}, "
          f"shape {shape} {dtype}, causal, forward + backward")
    print(f"{'backend':<11}{'ms':>9}{'TFLOP/s':>10}{'vs first':>10}{'max rel diff':>14}")
    reference = None
    first_seconds = None
    for name in names:
        try:
            seconds, result = time_backend(BACKENDS[name], q, k, v, grad, args.warmup, args.repeats)
        except RuntimeError as err:       # the backend is not built in, or refuses this shape or GPU
            print(f"{name:<11} unavailable: {str(err).splitlines()[0][:100]}")
            continue
        reference = reference or result
        first_seconds = first_seconds or seconds
        print(f"{name:<11}{seconds * 1e3:>9.3f}{flops / seconds / 1e12:>10.1f}{first_seconds / seconds:>9.2f}x"
              f"{relative_difference(result, reference):>14.2e}")


if __name__ == "__main__":
    main()
