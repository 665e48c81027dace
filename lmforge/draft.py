"""Draft runs for speculative decoding: start one next to a target run, then distill it.

    lmforge draft prepare runs/draft --run-dir runs/tiny     # config, data, tokenizer from the target
    lmforge run --run-dir runs/draft --to pretrain           # pretrain the small draft model
    lmforge draft distill runs/draft --run-dir runs/tiny --steps 1000   # -> runs/draft/models/distill

`prepare` starts a draft run folder from the target's: the target's config.yaml with the
`draft` preset's model and pretrain sections put in, and the target's data, tokenizer and
the manifests of the stages before pretraining, so the draft run skips those stages and
only pretrains. `distill` then fine-tunes the draft toward the target itself
(KL(target || draft) on the training tokens, through the one training loop, for a number
of steps): a draft that agrees with its target, not merely one that models the data, is
what gets its guesses accepted. Decoding with a draft is lmforge/speculative.py
(`lmforge chat --draft runs/draft`).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoints import WEIGHTS_FILE, load_for_sampling, load_model, resolve_stage, save_model
from .config import load_config, validate
from .device import pick_device
from .engine import fast_path
from .errors import StageError
from .rundir import STAGE_NAMES, RunDir
from .speculative import DraftVocabulary, frequent_tokens
from .tokenizer import TokenizerError, load_split
from .train.loop import Trainer
from .train.pretrain import window_batch_fn, windows_to_batch


def prepare_draft_run(target_dir, draft_dir) -> list[str]:
    """Start draft_dir from the target run: its config with the draft preset's model and
    pretrain sections, and its data, tokenizer and pre-pretraining manifests.

    Every other config section is the target's, so the copied manifests' fingerprints match
    and `lmforge run --run-dir DRAFT --to pretrain` goes straight to pretraining on the same
    token shards with the same tokenizer. Returns the copied stages.
    """
    target, draft = RunDir(target_dir), RunDir(draft_dir)
    if not (target.tokenizer_dir / "tokenizer.json").exists() or not target.config_path.exists():
        raise StageError(f"{target.root} has no tokenizer: run the target to its tokenizer stage first")
    cfg = load_config(None, base=target.config_path)
    preset = load_config("draft")
    cfg.model, cfg.pretrain = preset.model, preset.pretrain
    cfg.run.name = draft.root.name
    validate(cfg)
    draft.root.mkdir(parents=True, exist_ok=True)
    draft.save_config(cfg)
    for folder in ("data", "tokenizer"):
        shutil.copytree(target.path(folder), draft.path(folder), dirs_exist_ok=True)
    copied = []
    for stage in STAGE_NAMES[:STAGE_NAMES.index("pretrain")]:
        manifest = target.read_manifest(stage)
        if manifest is not None:
            draft.write_manifest(stage, manifest)
            copied.append(stage)
    return copied


DISTILL_STAGE = "distill"   # models/distill/ and logs/distill.jsonl of the draft run


def run_draft_vocabulary(draft_run, draft, coverage: float = 0.999) -> DraftVocabulary | None:
    """The DraftVocabulary of the tokens making up `coverage` of the draft run's training tokens;
    None for coverage 0 or a run without its token shards (the draft then proposes from all)."""
    if coverage <= 0:
        return None
    try:
        tokens = load_split(draft_run.tokens_dir, "train")
    except TokenizerError:
        return None
    return DraftVocabulary(draft, frequent_tokens(tokens, draft.cfg.vocab_size, coverage))


def load_draft(draft_dir, target_run, stage: str | None = None, coverage: float = 0.999, device=None):
    """(draft model, its DraftVocabulary or None, "run:stage") from a draft run folder: its
    distilled model when there is one, else its latest; refuses a draft whose tokenizer is
    not the target run's (`lmforge draft prepare` makes one that is)."""
    draft_run = RunDir(draft_dir)
    if stage is None and (draft_run.model_dir(DISTILL_STAGE) / WEIGHTS_FILE).exists():
        stage = DISTILL_STAGE
    _, draft, stage = load_for_sampling(draft_run, stage)
    mine, theirs = draft_run.tokenizer_dir / "tokenizer.json", target_run.tokenizer_dir / "tokenizer.json"
    if mine.read_bytes() != theirs.read_bytes():
        raise StageError(f"{mine} differs from {theirs}: the draft needs the target's tokenizer "
                         f"(lmforge draft prepare DRAFT --run-dir {target_run.root})")
    draft = draft.to(device or draft.embed.weight.device).eval()
    return draft, run_draft_vocabulary(draft_run, draft, coverage), f"{draft_run.root}:{stage}"


def distill_loss_sum(target):
    """loss_fn for the training loop: KL(target || draft) summed over the batch's positions.

    Matching the target's whole next-token distribution, not just the data's next token,
    is what raises acceptance: at temperature 0 a guess is kept iff the two argmaxes agree,
    and at temperature > 0 the acceptance rate is 1 - TV(p, q).
    """
    def loss_fn(model, batch) -> torch.Tensor:
        with torch.no_grad(), fast_path(target):     # the target's side: no gradients, as evaluation
            p_log = F.log_softmax(target(batch["x"]).float(), dim=-1)
        q_log = F.log_softmax(model(batch["x"]).float(), dim=-1)
        return F.kl_div(q_log.flatten(0, 1), p_log.flatten(0, 1), log_target=True, reduction="sum")
    return loss_fn


@torch.inference_mode()
def greedy_agreement(target, draft, tokens, windows: int, seq_len: int, device) -> float:
    """Share of positions of `windows` evenly spaced windows where the two models' argmaxes agree
    (the per-token acceptance rate of greedy speculative decoding on such text)."""
    offsets = np.linspace(0, len(tokens) - seq_len - 1, num=windows).astype(np.int64)
    agree = total = 0
    for i in range(0, len(offsets), 16):
        x = windows_to_batch(tokens, offsets[i:i + 16], seq_len, device)["x"]
        with fast_path(target, draft):
            agree += int((target(x).argmax(-1) == draft(x).argmax(-1)).sum())
        total += x.numel()
    return agree / total


def distill_draft(target_dir, draft_dir, steps: int = 1000, lr_scale: float = 0.5,
                  target_stage: str | None = None, device: str = "auto") -> dict:
    """Fine-tune a draft run's pretrained model toward its target on the shared training tokens.

    Loss: KL(target || draft) per position (distill_loss_sum), through the shared training
    loop with the draft run's pretrain settings (learning rates scaled by lr_scale, since it
    starts from a trained model) and a budget of `steps` steps (never minutes: the preset's
    max_minutes cap is turned off, so a run's result does not depend on the machine). Validation is the same KL on the validation tokens; the
    best weights go to DRAFT/models/distill/, which `benchmarks/decode.py` then prefers.
    """
    target_run, draft_run = RunDir(target_dir), RunDir(draft_dir)
    if (target_run.tokenizer_dir / "tokenizer.json").read_bytes() != \
            (draft_run.tokenizer_dir / "tokenizer.json").read_bytes():
        raise StageError(f"{draft_run.tokenizer_dir} differs from {target_run.tokenizer_dir}: "
                         "make the draft with `lmforge draft prepare`")
    cfg = load_config(None, base=draft_run.config_path)
    dev = pick_device(device)
    stage = resolve_stage(target_run, target_stage)
    target = load_model(target_run.model_dir(stage), device=dev).eval().requires_grad_(False)
    draft = load_model(draft_run.model_dir("pretrain"), device=dev)
    train, val = load_split(draft_run.tokens_dir, "train"), load_split(draft_run.tokens_dir, "val")
    p = cfg.pretrain
    tcfg = dataclasses.replace(p, max_steps=steps, max_minutes=0.0, lr=p.lr * lr_scale,
                               matrix_lr=p.matrix_lr * lr_scale, warmup_steps=min(p.warmup_steps, steps // 10),
                               eval_every=max(1, min(p.eval_every, steps // 4)), checkpoint_every=10**9)
    seq_len = min(tcfg.seq_len, draft.cfg.seq_len, target.cfg.seq_len)
    windows = 8 * tcfg.batch_size
    before = greedy_agreement(target, draft.eval(), val, windows, seq_len, dev)
    out_dir = draft_run.model_dir(DISTILL_STAGE)
    trainer = Trainer(draft.train(), tcfg, out_dir=out_dir, log_path=draft_run.log_path(DISTILL_STAGE),
                      seed=cfg.run.seed, device=dev, save_fn=save_model, stage=DISTILL_STAGE)
    loss_fn = distill_loss_sum(target)
    val_offsets = np.linspace(0, len(val) - seq_len - 1, num=windows).astype(np.int64)

    def eval_fn(model) -> float:
        total = items = 0
        for i in range(0, len(val_offsets), tcfg.batch_size):
            batch = windows_to_batch(val, val_offsets[i:i + tcfg.batch_size], seq_len, trainer.device)
            total += float(loss_fn(model, batch))
            items += batch["n_items"]
        return total / items

    start = time.perf_counter()
    result = trainer.fit(window_batch_fn(train, tcfg.batch_size, tcfg.grad_accum, seq_len, cfg.run.seed,
                                       trainer.device), loss_fn, eval_fn, resume=False)
    best = load_model(out_dir, device=dev).eval()
    after = greedy_agreement(target, best, val, windows, seq_len, dev)
    return {"target": f"{target_run.root}:{stage}", "draft": str(out_dir), "steps": result.steps,
            "val_kl": round(result.best_val_loss, 4), "greedy_agreement_before": round(before, 4),
            "greedy_agreement_after": round(after, 4), "seconds": round(time.perf_counter() - start, 1)}


def cli_draft(args, run, cfg) -> int:
    """`lmforge draft prepare DRAFT_DIR` and `lmforge draft distill DRAFT_DIR`; the target is --run-dir."""
    if args.draft_command == "prepare":
        stages = prepare_draft_run(run.root, args.draft_run_dir)
        print(f"{args.draft_run_dir}: copied data, tokenizer and the {', '.join(stages)} manifests from "
              f"{run.root}; now run `lmforge run --run-dir {args.draft_run_dir} --to pretrain`, "
              f"then `lmforge draft distill {args.draft_run_dir} --run-dir {run.root}`")
        return 0
    print(json.dumps(distill_draft(run.root, args.draft_run_dir, args.steps, args.lr_scale, args.stage,
                                   args.device)))
    return 0
