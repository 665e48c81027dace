"""CPU precision: bf16 only where it is fast, our Muon against torch's, threads set once."""
import dataclasses
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lmforge import device as device_mod
from lmforge.config import ModelConfig, TrainConfig
from lmforge.model import GPT
from lmforge.train.loop import Trainer
from lmforge.train.muon import Muon, newton_schulz
from lmforge.evals.likelihood import bits_per_byte, window_eval_fn
from lmforge.train.pretrain import next_token_loss_sum

MATMULS = {"mm", "bmm", "addmm", "baddbmm", "matmul", "linear", "_scaled_dot_product_flash_attention_for_cpu",
           "_scaled_dot_product_attention_math", "dot", "mv", "addmv"}


class DtypeRecorder(TorchDispatchMode):
    """Every aten op of a region, with the dtypes of its tensor arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        dtypes = {a.dtype for a in torch.utils._pytree.tree_leaves((args, kwargs or {}))
                  if isinstance(a, torch.Tensor)}
        self.calls.append((func.__name__.split(".")[0], dtypes))
        return func(*args, **(kwargs or {}))


def probe_says(monkeypatch, fast: bool):
    monkeypatch.setattr(device_mod, "cpu_bf16_probe", lambda: {
        "native_bf16": fast, "fp32_matmul_ms": 1.0, "bf16_matmul_ms": 0.3 if fast else 6.6,
        "bf16_fast": fast, "reason": "mocked"})


def one_step_dtypes(tmp_path) -> list:
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, seq_len=16, n_layer=2, n_head=2, d_model=32))
    trainer = Trainer(model, TrainConfig(batch_size=2, seq_len=16), out_dir=tmp_path, log_path=tmp_path / "l.jsonl",
                      device="cpu")
    x = torch.randint(0, 64, (2, 17))
    batch = {"x": x[:, :-1], "y": x[:, 1:], "n_items": 32}
    with DtypeRecorder() as rec:
        trainer.train_step([batch], next_token_loss_sum)
    return rec.calls


def test_without_fast_bf16_no_bf16_tensor_reaches_a_matmul(monkeypatch, tmp_path):
    probe_says(monkeypatch, fast=False)
    calls = one_step_dtypes(tmp_path)
    matmuls = [(name, d) for name, d in calls if name in MATMULS]
    assert len(matmuls) > 20          # forward, backward and Newton-Schulz were all seen
    assert not [c for c in calls if torch.bfloat16 in c[1]], "a bf16 tensor appeared in the step"


def test_with_fast_bf16_the_step_multiplies_in_bf16(monkeypatch, tmp_path):
    """The control for the test above: the recorder does see bf16 when bf16 is chosen."""
    probe_says(monkeypatch, fast=True)
    calls = one_step_dtypes(tmp_path)
    assert [name for name, d in calls if name in MATMULS and torch.bfloat16 in d]


def test_precision_choices(monkeypatch):
    probe_says(monkeypatch, fast=False)
    cpu = torch.device("cpu")
    slow = device_mod.train_precision("auto", cpu)
    assert slow.autocast is None and slow.newton_schulz == torch.float32
    assert slow.record()["compute"] == "fp32" and slow.record()["probe"]["bf16_fast"] is False
    forced = device_mod.train_precision("bf16", cpu)
    assert forced.autocast == torch.bfloat16 and forced.newton_schulz == torch.bfloat16
    probe_says(monkeypatch, fast=True)
    assert device_mod.train_precision("auto", cpu).autocast == torch.bfloat16
    assert device_mod.train_precision("fp32", cpu).newton_schulz == torch.float32
    assert device_mod.train_precision("auto", torch.device("cuda")).autocast == torch.bfloat16


def test_the_real_probe_answers_with_figures():
    probe = device_mod.cpu_bf16_probe()
    assert probe["fp32_matmul_ms"] > 0 and probe["bf16_matmul_ms"] > 0
    assert probe["bf16_fast"] == (bool(probe["native_bf16"]) and probe["bf16_matmul_ms"] <= probe["fp32_matmul_ms"])


SHAPES = [(32, 32), (32, 32), (48, 32), (32, 80), (80, 32)]


def params_and_grads(steps: int):
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(*s, generator=gen) * 0.1 for s in SHAPES]
    grads = [[torch.randn(*s, generator=gen) for s in SHAPES] for _ in range(steps)]
    return params, grads


def run_optimizer(make, steps: int = 4):
    start, grads = params_and_grads(steps)
    params = [torch.nn.Parameter(p.clone()) for p in start]
    opt = make(params)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
    return [p.detach() - s for p, s in zip(params, start)]    # the total update


def test_muon_bf16_matches_torch_muon():
    ours = run_optimizer(lambda ps: Muon(ps, lr=0.02, weight_decay=0.01, ns_dtype=torch.bfloat16))
    theirs = run_optimizer(lambda ps: torch.optim.Muon(ps, lr=0.02, weight_decay=0.01, adjust_lr_fn="original"))
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=0, atol=1e-6 * b.abs().max().item()), (a - b).abs().max()


def test_muon_fp32_agrees_with_bf16_to_bf16_precision():
    fp32 = run_optimizer(lambda ps: Muon(ps, lr=0.02, ns_dtype=torch.float32))
    bf16 = run_optimizer(lambda ps: Muon(ps, lr=0.02, ns_dtype=torch.bfloat16))
    for a, b in zip(fp32, bf16):
        relative = (a - b).norm() / b.norm()
        assert relative < 0.02, relative          # bf16 keeps 8 bits: ~0.4 % per element, a few % after steps
        assert relative > 0, "the two dtypes cannot give identical updates"


def test_newton_schulz_orthogonalizes():
    x = torch.randn(3, 16, 40, generator=torch.Generator().manual_seed(1))
    ortho = newton_schulz(x, dtype=torch.float32)
    singular = torch.linalg.svdvals(ortho)
    assert singular.min() > 0.5 and singular.max() < 1.3    # the quintic's target band around 1


def test_threads_are_set_once_and_clamped(monkeypatch):
    warnings = []
    monkeypatch.setattr(device_mod, "_threads", None)
    monkeypatch.setattr(device_mod, "usable_cores", lambda: 2)
    before = torch.get_num_threads()
    try:
        assert device_mod.set_threads(64, warn=warnings.append) == 2
        assert len(warnings) == 1 and "run.threads=64" in warnings[0] and "using 2" in warnings[0]
        assert device_mod.set_threads(1) == 2          # the first answer stands for the whole process
        monkeypatch.setattr(device_mod, "_threads", None)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")    # torchrun: two processes share two cores
        assert device_mod.set_threads(0) == 1
    finally:
        torch.set_num_threads(before)


def test_bits_per_byte_by_hand():
    """A model whose next-token distribution is uniform: every target costs ln(V) nats, so
    bits per byte = ln(V) x text targets / (their bytes x ln 2), special targets left out."""
    vocab = 8
    model = GPT(ModelConfig(vocab_size=vocab, seq_len=8, n_layer=1, n_head=1, d_model=8)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()         # all-zero logits: uniform over the vocabulary
    byte_lengths = torch.tensor([0, 1, 2, 3, 1, 1, 4, 2]).numpy()    # id 0 is a special token
    tokens = torch.tensor([0, 1, 2, 3, 0, 6, 7, 5, 4, 1]).numpy()
    eval_fn = window_eval_fn(tokens, windows=1, batch_size=1, seq_len=9, device=torch.device("cpu"),
                           byte_lengths=byte_lengths)
    with torch.no_grad():
        result = eval_fn(model)
    targets = tokens[1:]
    text = [t for t in targets if byte_lengths[t] > 0]
    n_bytes = sum(int(byte_lengths[t]) for t in text)
    assert result["loss"] == pytest.approx(math.log(vocab))
    assert result["bpb"] == pytest.approx(math.log(vocab) * len(text) / (n_bytes * math.log(2)))
    assert bits_per_byte(math.log(vocab) * len(text), n_bytes) == pytest.approx(result["bpb"])


def test_trainer_records_its_precision(monkeypatch, tmp_path):
    probe_says(monkeypatch, fast=False)
    model = GPT(ModelConfig(vocab_size=32, seq_len=8, n_layer=1, n_head=1, d_model=8))
    cfg = dataclasses.replace(TrainConfig(), max_steps=2, batch_size=1, seq_len=8, eval_every=10, log_every=1)
    trainer = Trainer(model, cfg, out_dir=tmp_path, log_path=tmp_path / "l.jsonl", device="cpu")
    x = torch.randint(0, 32, (1, 9))
    result = trainer.fit(lambda step, m, r, w: {"x": x[:, :-1], "y": x[:, 1:], "n_items": 8}, next_token_loss_sum)
    assert result.precision["compute"] == "fp32" and result.precision["newton_schulz"] == "fp32"
    assert result.steps == result.planned_steps == 2 and not result.cut_short
