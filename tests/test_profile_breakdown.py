"""The pretraining benchmark's profiler breakdown and the MFU peak table, on the profiler's own
event objects: CUDA kernels are charged to the op that launched them (the optimizer's when an
Optimizer.step encloses it), and the GPU's idle time is the wall time beyond the kernels.

    python -m pytest tests/test_profile_breakdown.py -q
"""
import importlib.util
from pathlib import Path

from torch.autograd.profiler_util import FunctionEvent

from lmforge.device import peak_flops_of

spec = importlib.util.spec_from_file_location(
    "pretrain_throughput", Path(__file__).resolve().parents[1] / "benchmarks" / "pretrain_throughput.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def op(name, start, end, kernels=(), parent=None):
    event = FunctionEvent(id=start, name=name, thread=0, start_us=start, end_us=end)
    for kernel, microseconds in kernels:
        event.append_kernel(kernel, 0, microseconds)
    if parent is not None:
        event.set_cpu_parent(parent)
    return event


def test_kernels_are_charged_by_name_and_by_the_optimizer_around_them():
    step = op("Optimizer.step#Muon.step", 500, 900)
    events = [
        op("aten::mm", 0, 10, [("sm90_xmma_gemm_bf16bf16_bf16f32", 300)]),
        op("aten::_flash_attention_forward", 10, 20, [("flash_fwd_kernel", 100)]),
        op("aten::add_", 20, 30, [("vectorized_elementwise_kernel", 40)]),
        op("CompiledFunction", 30, 40, [("triton_red_fused__to_copy_mean_pow_rsqrt_0", 60),
                                        ("triton_poi_fused_mul_silu_1", 20)]),
        op("aten::_log_softmax", 40, 50, [("cunn_SoftMaxForward", 30)]),
        step,
        op("aten::mm", 510, 520, [("nvjet_tst_gemm", 200)], parent=step),
        op("aten::to", 60, 61),                        # no kernel: contributes nothing
    ]
    totals, other = bench.gpu_breakdown(events, wall=1.0e-3)
    seconds = {k: round(v * 1e6) for k, v in totals.items()}
    assert seconds == {"matmuls": 300, "attention": 100, "other kernels": 40, "norms": 60,
                       "compiled fused kernels": 20, "cross-entropy": 30, "optimizer": 200,
                       "GPU idle (launches, Python, waits)": 250}
    assert set(other) == {"vectorized_elementwise_kernel"}


def test_cpu_breakdown_takes_self_times_and_leaves_python_the_rest():
    step = op("Optimizer.step#AdamW.step", 100, 400)
    events = [op("aten::mm", 0, 50), op("aten::scaled_dot_product_attention", 50, 70), step,
              op("aten::mul_", 120, 220, parent=step), op("aten::sum", 300, 310)]
    totals, other = bench.cpu_breakdown(events, wall=500e-6)
    seconds = {k: round(v * 1e6) for k, v in totals.items()}
    assert seconds == {"matmuls": 50, "attention": 20, "optimizer": 100, "other ops": 10, "python and the rest": 320}
    assert set(other) == {"aten::sum"}


def test_peak_flops_matches_whole_words_of_the_gpu_name():
    assert peak_flops_of("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops_of("NVIDIA H200") == 989e12
    assert peak_flops_of("NVIDIA H100 PCIe") == 756e12    # the PCIe board, not the SXM one
    assert peak_flops_of("NVIDIA H100 NVL") == 835e12
    assert peak_flops_of("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops_of("NVIDIA L40S") == 362e12        # not L4's
    assert peak_flops_of("NVIDIA L4") == 121e12
    assert peak_flops_of("NVIDIA A10") == 125e12         # not A100's
    assert peak_flops_of("NVIDIA GeForce RTX 4090") == 165e12
    assert peak_flops_of("NVIDIA GeForce RTX 3090") is None
