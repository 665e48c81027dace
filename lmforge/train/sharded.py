"""FSDP2 and sharded checkpoints: `train.parallel=fsdp` (pretraining).

    torchrun --nproc_per_node 8 -m lmforge pretrain --run-dir runs/web pretrain.parallel=fsdp
    lmforge convert-checkpoint --run-dir runs/web --stage pretrain   # latest checkpoint -> model.safetensors

Sharding. `shard_model` applies `torch.distributed.fsdp.fully_shard` to every Transformer block
and then to the whole model (embedding, final norm and the LM head, tied or not, form the root
group). Each parameter becomes a DTensor holding a block of rows on each rank; a block's
parameters are all-gathered just before its forward and backward and freed after, and
gradients are reduce-scattered (averaged over ranks, as DDP's all-reduce does, so the loop's
loss scaling is the same for both). On CUDA the policy computes in bf16 and reduces in fp32;
on a CPU (the tests: gloo) everything stays float32. Muon gathers each matrix's update whole
before Newton-Schulz (train/muon.py).

Checkpoints. With `parallel=fsdp` the training state goes through torch.distributed.checkpoint
(DCP) instead of the one-file `trainer_state.pt`: every rank writes its own shards into
`<model dir>/checkpoint/step_<N>/` (on multi-node runs that folder must be on storage every
node sees), rank 0 adds `trainer.json` (step, early-stopping state, RNG, the model's config)
and then points `checkpoint/latest` at the folder (an atomic rename), and only then deletes
the previous step's folder: a crash at any moment leaves one complete checkpoint. DCP stores
each tensor with its global shape, so a checkpoint loads at any world size: 2 ranks to 1, 1
to 8 (the state is resharded on load; tests/test_fsdp.py checks 2 -> 1 and 1 -> 2). A folder
saved from a different model shape is refused with one line naming the first tensor that
differs. `convert_checkpoint` turns the latest one into the model.safetensors + config.json
that every other command reads.
"""
from __future__ import annotations

import base64
import contextlib
import json
import random
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..checkpoints import save_model
from ..config import ModelConfig
from ..files import atomic_write_json, atomic_write_text
from ..model import GPT

CHECKPOINT_DIR = "checkpoint"
LATEST = "latest"
TRAINER_FILE = "trainer.json"


class ShardedCheckpointError(RuntimeError):
    """A sharded checkpoint that cannot be used, in one line (the loop turns it into CheckpointError)."""


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


# ---------------------------------------------------------------- sharding

def shard_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """fully_shard each block, then the root; bf16 compute with fp32 reductions on CUDA."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs = {}
    if device.type == "cuda":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.layers:
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


def set_gradient_sync(model: torch.nn.Module, sync: bool) -> None:
    """FSDP2's no_sync: skip the reduce-scatter on micro-batches before the last one."""
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(sync)


# ---------------------------------------------------------------- DCP checkpoints

def _dcp_state(model, optimizers) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict
    model_state, optim_state = get_state_dict(model, optimizers)
    return {"model": model_state, "optim": optim_state}


def latest_checkpoint(model_dir: Path) -> Path | None:
    pointer = Path(model_dir) / CHECKPOINT_DIR / LATEST
    if not pointer.exists():
        return None
    return pointer.parent / pointer.read_text().strip()


def _encode(values) -> str:
    return base64.b64encode(bytes(values)).decode()


def rng_state() -> dict:
    return {"torch": _encode(torch.get_rng_state().tolist()),
            "numpy": np.random.get_state()[1].tolist(), "python": list(random.getstate()[1])}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.tensor(list(base64.b64decode(state["torch"])), dtype=torch.uint8))
    np_state = np.random.get_state()
    np.random.set_state((np_state[0], np.array(state["numpy"], dtype=np.uint32), *np_state[2:]))
    py_state = random.getstate()
    random.setstate((py_state[0], tuple(state["python"]), py_state[2]))


def save(model_dir: Path, step: int, model, optimizers, trainer: dict, is_main: bool) -> Path:
    """Write step_<step>/ (every rank its shards, rank 0 trainer.json), point `latest` at it,
    drop the previous one. Collective: every rank calls it."""
    import torch.distributed.checkpoint as dcp

    root = Path(model_dir) / CHECKPOINT_DIR
    folder = root / f"step_{step:08d}"
    previous = latest_checkpoint(model_dir)
    same = folder == previous          # saved again at the same step (the end of a run): tensors unchanged
    if is_main and folder.exists() and not same:
        shutil.rmtree(folder)          # a half-written folder from a crash at this step
    _barrier()
    if not same:
        with _quiet():
            dcp.save(_dcp_state(model, optimizers), checkpoint_id=str(folder))
    if is_main:
        extra = dict(trainer, step=step, rng=rng_state())
        cfg = getattr(_plain(model), "cfg", None)
        if cfg is not None:
            import dataclasses
            extra["model_config"] = dataclasses.asdict(cfg)
        atomic_write_json(folder / TRAINER_FILE, extra)
        atomic_write_text(root / LATEST, folder.name + "\n")      # the commit point
        if previous is not None and not same and previous.exists():
            shutil.rmtree(previous)
    _barrier()
    return folder


def check_shapes(folder: Path, state: dict) -> None:
    """One line naming the first tensor whose saved global shape differs from this model's."""
    import torch.distributed.checkpoint as dcp
    try:
        saved = dcp.FileSystemReader(str(folder)).read_metadata().state_dict_metadata
    except Exception as err:  # noqa: BLE001 - unreadable metadata: one line
        raise ShardedCheckpointError(f"checkpoint {folder} has no readable DCP metadata "
                                     f"({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})"
                                     ) from None
    for name, tensor in state["model"].items():
        key = f"model.{name}"
        if key not in saved:
            raise ShardedCheckpointError(f"checkpoint {folder} has no tensor {name!r}: it was saved from a "
                                         f"different model; delete it or use the config it was trained with")
        shape = tuple(getattr(saved[key], "size", ()))
        if shape != tuple(tensor.shape):
            raise ShardedCheckpointError(f"checkpoint {folder} was saved from a different model shape: {name} is "
                                         f"{shape} there, {tuple(tensor.shape)} here; delete it or use the config "
                                         f"it was trained with")


def load(model_dir: Path, model, optimizers) -> dict | None:
    """Restore model and optimizer state from the latest checkpoint at this world size;
    returns trainer.json's fields (None when there is no checkpoint). Collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    folder = latest_checkpoint(model_dir)
    if folder is None:
        return None
    if not (folder / TRAINER_FILE).exists():
        raise ShardedCheckpointError(f"checkpoint {folder} is incomplete (no {TRAINER_FILE}); delete "
                                     f"{folder.parent} to start this stage over")
    state = _dcp_state(model, optimizers)
    check_shapes(folder, state)
    try:
        with _quiet():
            dcp.load(state, checkpoint_id=str(folder))
    except Exception as err:  # noqa: BLE001 - any failure here means the folder is unusable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ShardedCheckpointError(f"checkpoint {folder} is corrupt or truncated ({first[:200]}); "
                                     f"delete it to start this stage over") from None
    set_state_dict(model, optimizers, model_state_dict=state["model"], optim_state_dict=state["optim"])
    trainer = json.loads((folder / TRAINER_FILE).read_text())
    set_rng_state(trainer["rng"])
    return trainer


def _plain(model):
    return getattr(model, "_orig_mod", model)


@contextlib.contextmanager
def _quiet():
    """One process without a process group (a 2-process checkpoint resumed by 1, a conversion)
    is an intended use of DCP, not something to warn about on every save and load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def _barrier() -> None:
    if distributed():
        dist.barrier()


# ---------------------------------------------------------------- conversion

def convert_checkpoint(model_dir: Path, out_dir: Path) -> int:
    """The latest checkpoint's model weights as model.safetensors + config.json in out_dir
    (readable by every other command); returns its step. One process, no process group."""
    import torch.distributed.checkpoint as dcp

    folder = latest_checkpoint(model_dir)
    if folder is None:
        raise ShardedCheckpointError(f"no sharded checkpoint under {Path(model_dir) / CHECKPOINT_DIR} "
                                     f"(only train.parallel=fsdp writes one)")
    trainer = json.loads((folder / TRAINER_FILE).read_text())
    if "model_config" not in trainer:
        raise ShardedCheckpointError(f"{folder / TRAINER_FILE} has no model_config: not a GPT checkpoint")
    model = GPT(ModelConfig(**trainer["model_config"]))
    state = {"model": model.state_dict()}
    check_shapes(folder, state)
    with _quiet():
        dcp.load(state, checkpoint_id=str(folder))
    model.load_state_dict(state["model"])
    save_model(model, out_dir)
    return int(trainer["step"])


def cli_convert(args, run, cfg) -> int:
    """lmforge convert-checkpoint: the latest sharded checkpoint of a stage -> a model folder."""
    stage = args.stage or "pretrain"
    out = Path(args.out) if args.out else run.model_dir(f"{stage}-checkpoint")
    try:
        step = convert_checkpoint(run.model_dir(stage), out)
    except ShardedCheckpointError as err:
        print(f"lmforge: {err}", file=sys.stderr)
        return 1
    print(f"step {step} of {stage} -> {out}/model.safetensors")
    return 0
