"""Model folders: saving and loading a model, and finding the model of a run's stage.

    from lmforge.checkpoints import save_model, load_model, load_for_sampling
    save_model(model, "runs/tiny/models/pretrain"); model = load_model("runs/tiny/models/pretrain")
    tokenizer, model, stage = load_for_sampling(run, None)    # the latest finished stage's model

A model folder holds model.safetensors (never a pickle) and config.json (the ModelConfig).
A folder that cannot be loaded raises ModelLoadError, one line that names the file.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch.distributed as dist
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .device import is_sharded
from .files import atomic_path, atomic_write_text
from .model import GPT
from .errors import StageError
from .rundir import STAGE_NAMES
from .tokenizer import Tokenizer

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class ModelLoadError(ValueError):
    """A model folder that cannot be loaded, phrased as one line that names the file."""


# ---------------------------------------------------------------- saving and loading

def _unwrap(model: nn.Module) -> nn.Module:
    """The GPT inside torch.compile / DDP wrappers, so saved names carry no prefixes."""
    while not isinstance(model, GPT):
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            raise TypeError(f"save_model expects a GPT, got {type(model).__name__}")
        model = inner
    return model


def save_model(model: GPT, directory) -> None:
    """Write model.safetensors and config.json into directory, each atomically. A sharded
    (FSDP2) model is gathered first: then every rank must call this, and rank 0 writes."""
    model = _unwrap(model)
    directory = Path(directory)
    if is_sharded(model):
        # FSDP2: every rank takes part in gathering the whole model; rank 0 writes it
        state = full_state_dict(model)
        if state is None:
            return
    else:
        state = model.state_dict()
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().contiguous().cpu() for name, t in state.items()}
    if model.cfg.tie_embeddings:
        state.pop("lm_head.weight", None)  # the same tensor as embed.weight; safetensors refuses shared storage
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    atomic_write_text(directory / CONFIG_FILE, json.dumps(dataclasses.asdict(model.cfg), indent=2) + "\n")


def load_config_json(directory) -> ModelConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ModelLoadError(f"{path}: unknown model fields {unknown}")
    return ModelConfig(**data)


def load_model(directory, device="cpu") -> GPT:
    """The GPT saved in directory by save_model. Raises ModelLoadError on a missing,
    truncated, corrupt or mismatched file; never unpickles anything."""
    cfg = load_config_json(directory)
    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing")
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"{path}: not a valid safetensors file ({first_line})") from None
    try:
        model = GPT(cfg)
    except ValueError as err:
        raise ModelLoadError(f"{Path(directory) / CONFIG_FILE}: {err}") from None
    if cfg.tie_embeddings and "embed.weight" in state:
        state["lm_head.weight"] = state["embed.weight"]
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelLoadError(f"{path}: does not match config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ModelLoadError(f"{path}: {name} has shape {tuple(tensor.shape)}, "
                                 f"config.json implies {tuple(expected[name].shape)}")
    model.load_state_dict(state)
    return model.to(device)


def full_state_dict(model: nn.Module) -> dict | None:
    """A sharded (FSDP2) model's whole state on rank 0 (CPU tensors); None on the other ranks.
    A collective: every rank must call it."""
    # only a sharded run gets here; the import costs start-up time everywhere else
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return state if dist.get_rank() == 0 else None


# ---------------------------------------------------------------- a run's models

def model_stages(run) -> list[str]:
    """Stages of the run that have a model on disk, in graph order, then any other model
    folder (e.g. one written by `lmforge import`)."""
    models = run.path("models")
    found = [name for name in STAGE_NAMES if (run.model_dir(name) / WEIGHTS_FILE).exists()]
    if models.is_dir():
        found += sorted(p.name for p in models.iterdir()
                        if p.name not in found and (p / WEIGHTS_FILE).exists())
    return found


def resolve_stage(run, stage: str | None) -> str | None:
    """The named stage, else the latest finished one with a model, else any model folder."""
    if stage:
        return stage
    found = run.latest_model_stage()
    if found is None:
        stages = model_stages(run)
        found = stages[-1] if stages else None
    return found


def load_for_sampling(run, stage: str | None):
    """The tokenizer and the model of `stage` (default: the latest finished stage with a model)."""
    stage = resolve_stage(run, stage)
    if stage is None or not (run.model_dir(stage) / WEIGHTS_FILE).exists():
        raise StageError(f"no trained model in {run.root}" + (f" for stage {stage!r}" if stage else "")
                         + "; run `lmforge run --to pretrain` first")
    return Tokenizer.load(run.tokenizer_dir), load_model(run.model_dir(stage)), stage
