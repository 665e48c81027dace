"""Hugging Face export and import: our model folder <-> a stock transformers folder.

    lmforge export --format hf --run-dir runs/tiny [--stage pretrain] [--out runs/tiny/export/hf]
    lmforge import runs/tiny/export/hf --run-dir runs/imported [--stage imported]

    from lmforge.export import export_hf, import_hf
    export_hf(run.model_dir("pretrain"), run.tokenizer_dir, "out/hf")
    model, tokenizer_dir = import_hf("out/hf")

The exported folder loads with `AutoModelForCausalLM.from_pretrained(path)` and
`AutoTokenizer.from_pretrained(path)` without custom code: a Llama architecture, or Qwen3
when the model uses QK-norm (that is the only difference between the two for our weights).
It holds config.json, generation_config.json, model.safetensors (fp32, HF names, lm_head
left out when tied), tokenizer.json, tokenizer_config.json (with the chat template, whose
tool calls, tool messages and `tools` declaration are lmforge/chat_format.py's),
chat_template.jinja and special_tokens_map.json (the tool tokens among the additional ones). The config is written as plain JSON, so
exporting does not need transformers installed.

Weight names differ only by a renaming (see lmforge/model.py); `hf_state_dict` and
`from_hf_state_dict` are that renaming, nothing else.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch

from .config import ModelConfig
from .files import atomic_path, atomic_write_bytes
from .checkpoints import ModelLoadError, load_model, save_model
from .engine import fast_path
from .model import ffn_hidden_size, GPT, head_dim, kv_heads


class ExportError(ValueError):
    """An export / import problem, phrased as one line for the user."""


# ---------------------------------------------------------------- names

_OURS_TO_HF_LAYER = (("attn_norm.", "input_layernorm."), ("mlp_norm.", "post_attention_layernorm."),
                     ("attn.", "self_attn."))
_OURS_TO_HF_TOP = {"embed.": "model.embed_tokens.", "norm.": "model.norm.", "lm_head.": "lm_head."}


def hf_name(name: str) -> str:
    """One of our parameter names -> the transformers Llama / Qwen3 name."""
    if name.startswith("layers."):
        head, index, rest = name.split(".", 2)
        for ours, theirs in _OURS_TO_HF_LAYER:
            if rest.startswith(ours):
                rest = theirs + rest[len(ours):]
                break
        return f"model.layers.{index}.{rest}"
    for ours, theirs in _OURS_TO_HF_TOP.items():
        if name.startswith(ours):
            return theirs + name[len(ours):]
    raise ExportError(f"no Hugging Face name for parameter {name!r}")


def our_name(name: str) -> str:
    """A transformers Llama / Qwen3 name -> ours (the inverse of hf_name)."""
    if name.startswith("model.layers."):
        _, _, index, rest = name.split(".", 3)
        for ours, theirs in _OURS_TO_HF_LAYER:
            if rest.startswith(theirs):
                rest = ours + rest[len(theirs):]
                break
        return f"layers.{index}.{rest}"
    for ours, theirs in _OURS_TO_HF_TOP.items():
        if name.startswith(theirs):
            return ours + name[len(theirs):]
    raise ExportError(f"unknown Hugging Face parameter {name!r}")


def hf_state_dict(model: GPT) -> dict:
    """Our state dict under transformers' names (lm_head included even when tied)."""
    return {hf_name(name): tensor for name, tensor in model.state_dict().items()}


def from_hf_state_dict(state: dict) -> dict:
    return {our_name(name): tensor for name, tensor in state.items()}


# ---------------------------------------------------------------- config

def hf_config(cfg: ModelConfig, tokenizer=None) -> dict:
    """The config.json of the transformers model with our architecture."""
    qwen = cfg.qk_norm
    config = {
        "architectures": ["Qwen3ForCausalLM" if qwen else "LlamaForCausalLM"],
        "model_type": "qwen3" if qwen else "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": ffn_hidden_size(cfg),
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": kv_heads(cfg),
        "head_dim": head_dim(cfg),
        "max_position_embeddings": cfg.seq_len,
        "rms_norm_eps": cfg.norm_eps,
        # both spellings: older transformers read rope_theta, newer read rope_parameters
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "hidden_act": "silu",
        "attention_bias": False,
        "tie_word_embeddings": cfg.tie_embeddings,
        "initializer_range": cfg.init_std,
        "torch_dtype": "float32",
        "dtype": "float32",
        "use_cache": True,
    }
    if not qwen:
        config["mlp_bias"] = False
    else:
        config["use_sliding_window"] = False
        config["sliding_window"] = None
        config["max_window_layers"] = cfg.n_layer
    if tokenizer is not None:
        config.update(bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.end_id, pad_token_id=tokenizer.pad_id)
    return config


def config_from_hf(config: dict, where: str) -> ModelConfig:
    """Our ModelConfig from a transformers Llama / Qwen3 config.json (as a dict)."""
    model_type = config.get("model_type")
    if model_type not in ("llama", "qwen3"):
        raise ExportError(f"{where}: model_type {model_type!r} is not supported; lmforge reads llama and qwen3")
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    if config.get("head_dim", hidden // heads) * heads != hidden:
        raise ExportError(f"{where}: head_dim * num_attention_heads != hidden_size, which lmforge does not support")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise ExportError(f"{where}: biases are not supported")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise ExportError(f"{where}: rope scaling {rope.get('rope_type')!r} is not supported")
    theta = rope.get("rope_theta", config.get("rope_theta", 10_000.0))
    cfg = ModelConfig(vocab_size=config["vocab_size"], seq_len=config.get("max_position_embeddings", 2048),
                      n_layer=config["num_hidden_layers"], n_head=heads,
                      n_kv_head=config.get("num_key_value_heads") or 0, d_model=hidden,
                      ffn_hidden=config["intermediate_size"], rope_theta=float(theta), qk_norm=model_type == "qwen3",
                      tie_embeddings=bool(config.get("tie_word_embeddings", False)),
                      norm_eps=float(config.get("rms_norm_eps", 1e-5)),
                      init_std=float(config.get("initializer_range", 0.02)))
    if ffn_hidden_size(dataclasses.replace(cfg, ffn_hidden=0)) == cfg.ffn_hidden:
        cfg.ffn_hidden = 0      # our default size: keep the config as lmforge would write it
    return cfg


# ---------------------------------------------------------------- export / import

def export_hf(model_dir, tokenizer_dir, out_dir) -> Path:
    """Write the transformers folder for the model in model_dir and the tokenizer in tokenizer_dir."""
    from safetensors.torch import save_file

    from .tokenizer import Tokenizer
    model = load_model(model_dir)
    tokenizer = Tokenizer.load(tokenizer_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().contiguous().float() for name, t in hf_state_dict(model).items()}
    if model.cfg.tie_embeddings:
        state.pop("lm_head.weight")     # transformers re-ties it from tie_word_embeddings
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})

    def write_json(name, data):
        atomic_write_bytes(out / name, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode())
    write_json("config.json", hf_config(model.cfg, tokenizer))
    # generation stops at <|end|>, the end of an assistant turn
    write_json("generation_config.json", {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.end_id,
                                          "pad_token_id": tokenizer.pad_id})
    tokenizer.save(out, model_max_length=model.cfg.seq_len)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    # newer transformers read the template from its own file; older ones from tokenizer_config.json
    atomic_write_bytes(out / "chat_template.jinja", tokenizer_config["chat_template"].encode())
    write_json("special_tokens_map.json", {"bos_token": "<|bos|>", "eos_token": "<|end|>", "pad_token": "<|pad|>",
                                           "additional_special_tokens": tokenizer.additional_special_tokens()})
    return out


def import_hf(folder) -> tuple[GPT, Path]:
    """Our GPT from a transformers Llama / Qwen3 folder (safetensors only: nothing is unpickled)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ExportError(f"{config_path}: missing")
    try:
        config = json.loads(config_path.read_text())
        cfg = config_from_hf(config, str(config_path))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ExportError(f"{config_path}: not a usable transformers config ({err})") from None
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{folder}: no *.safetensors weights (pickled .bin weights are not read)")
    state = {}
    for path in files:
        try:
            state.update(load_file(str(path)))
        except (SafetensorError, OSError) as err:
            raise ExportError(f"{path}: not a valid safetensors file ({err})") from None
    ours = from_hf_state_dict(state)
    if cfg.tie_embeddings:
        ours["lm_head.weight"] = ours["embed.weight"]
    model = GPT(cfg)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    if missing or unexpected:
        raise ExportError(f"{folder}: weights do not match config.json (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})")
    model.load_state_dict({name: t.to(expected[name].dtype) for name, t in ours.items()})
    return model, folder


# ---------------------------------------------------------------- `lmforge export` / `lmforge import`

def cli_export(args, run, cfg) -> int:
    from .checkpoints import resolve_stage
    from .errors import StageError
    if args.format != "hf":
        raise StageError(f"unknown export format {args.format!r}; allowed: hf")
    stage = resolve_stage(run, args.stage)
    if stage is None:
        raise StageError(f"no trained model in {run.root}; run `lmforge run --to pretrain` first")
    out = Path(args.out) if args.out else run.path("export", "hf")
    try:
        export_hf(run.model_dir(stage), run.tokenizer_dir, out)
    except ModelLoadError as err:
        raise StageError(str(err)) from None
    architecture = json.loads((out / "config.json").read_text())["architectures"][0]
    print(f"exported the {stage} model of {run.root} to {out} ({architecture}); load it with "
          f"transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


def cli_import(args, run, cfg) -> int:
    from .errors import StageError
    from .tokenizer import Tokenizer, TokenizerError
    try:
        model, folder = import_hf(args.folder)
        tokenizer = Tokenizer.load(folder)
    except (ExportError, TokenizerError) as err:
        raise StageError(str(err)) from None
    stage = args.stage or "imported"
    save_model(model, run.model_dir(stage))
    if run.tokenizer_dir.exists() and not args.force:
        existing = Tokenizer.load(run.tokenizer_dir)
        if existing.vocab_size != tokenizer.vocab_size:
            raise StageError(f"{run.tokenizer_dir} has a different vocab ({existing.vocab_size} tokens, the import "
                             f"has {tokenizer.vocab_size}); use a new --run-dir or --force")
    else:
        shutil.rmtree(run.tokenizer_dir, ignore_errors=True)
        tokenizer.save(run.tokenizer_dir, model_max_length=model.cfg.seq_len)
    config = dataclasses.asdict(model.cfg)
    print(f"imported {args.folder} into {run.model_dir(stage)} ({model.num_params():,} parameters, "
          f"{config['n_layer']} layers); chat with: lmforge chat --run-dir {run.root} --stage {stage}")
    return 0


@torch.inference_mode()
def max_logit_difference(model: GPT, hf_model, ids) -> float:
    """The largest |our logit - transformers' logit| on ids (B, T): the export check."""
    with fast_path(model):
        ours = model(ids)
    return float((ours - hf_model(input_ids=ids).logits.float()).abs().max())
