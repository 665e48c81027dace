"""Speculative decoding: a cheap guesser proposes tokens, the target model checks them all at once.

    from lmforge.speculative import speculative_generate, SpeculativeStats
    stats = SpeculativeStats()
    out = speculative_generate(target, prompt_ids, SamplingParams(max_tokens=64), draft=draft_model,
                               num_draft_tokens=4, stats=stats)           # a small draft model
    out = speculative_generate(target, prompt_ids, params, stats=stats)   # n-gram prompt lookup
    vocab = DraftVocabulary(draft_model, frequent_tokens(train_tokens, vocab_size))
    out = speculative_generate(target, prompt_ids, params, draft=draft_model, draft_vocab=vocab)
    stats.acceptance_rate, stats.tokens_per_target_forward

Each round the proposer guesses k tokens d1..dk with distributions q1..qk (the draft
model's, or one-hot for prompt lookup), then the target runs once over
[last, d1..dk] and gives p1..p(k+1). Draft token di is accepted with probability
min(1, pi(di) / qi(di)); at the first rejection the token is drawn instead from the
normalized max(0, pi - qi) and the round ends; when all k are accepted one bonus token
is drawn from p(k+1). This rule makes every emitted token distributed exactly as the
target's own sampler would (Leviathan et al. 2023; Chen et al. 2023). Temperature,
top-k, top-p and min-p shape p and q the same way (lmforge.generate.next_token_probs), so
the guarantee holds for the processed distribution. At temperature 0 both are one-hot:
a guess is kept iff it is the target's argmax, so the output is greedy decoding exactly.

A draft may propose from its most frequent tokens only (DraftVocabulary): its LM head
shrinks, which is what a one-layer draft's step time is made of; the output stays exact.

Prompt lookup (no draft model): find the most recent earlier occurrence of the last n
tokens (n = max_ngram down to 1) in prompt + output and propose the tokens that followed
it. Repetitive text (quoting the prompt, lists, code) is accepted cheaply; with no match
the round is a plain one-token decode.

One sequence at a time: speculation trades extra compute for latency, which matters for
a single interactive stream; the batched server engine decodes without it.

A draft model must share the target's tokenizer. `prepare_draft_run` starts a draft run
folder from the target's: the target's config.yaml with the `draft` preset's model and
pretrain sections put in, and the target's data, tokenizer and the manifests of the stages
before pretraining, so the draft run skips those stages and only pretrains:

    python -m lmforge.speculative prepare-draft runs/tiny runs/draft
    lmforge run --run-dir runs/draft --to pretrain
    python -m lmforge.speculative distill runs/tiny runs/draft    # -> runs/draft/models/distill

`distill` then fine-tunes the draft toward the target itself (KL(target || draft) on the
training tokens, through the shared training loop): a draft that agrees with its target,
not merely one that models the data, is what gets its guesses accepted.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .generate import Generation, SamplingParams, Sequence, StreamEvent, drain_events, next_token_probs


# stop a round's drafting after a guess the draft gives less than this probability (see
# _greedy_guesses); measured with benchmarks/decode.py --draft-confidence, docs/ARCHITECTURE.md
DRAFT_CONFIDENCE = 0.4


@dataclass
class SpeculativeStats:
    rounds: int = 0
    proposed: int = 0          # draft tokens offered to the target
    accepted: int = 0          # of those, kept
    emitted: int = 0           # tokens produced (accepted + one resampled or bonus per round)
    target_forwards: int = 0
    draft_forwards: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_target_forward(self) -> float:
        return self.emitted / self.target_forwards if self.target_forwards else 0.0


def _uniform(generator) -> float:
    return float(torch.rand((), generator=generator))


def _pick(probs, greedy: bool, generator) -> int:
    if greedy:
        return int(probs.argmax())
    return int(torch.multinomial(probs, 1, generator=generator))


def verify(p, q, draft_tokens: list[int], greedy: bool = False, generator=None) -> tuple[int, int]:
    """The acceptance rule. p: (k+1, V) target probabilities, q: (k, V) proposal probabilities.

    Returns (how many draft tokens are accepted, the token that follows them): the
    resampled token at the first rejection, or the bonus token from p[k] when all pass.
    """
    for i, token in enumerate(draft_tokens):
        p_x, q_x = float(p[i, token]), float(q[i, token])
        # at temperature 0 the ratio is 0 or 1 and no random number is needed
        if (p_x >= q_x) if greedy else (_uniform(generator) * q_x < p_x):
            continue
        residual = (p[i] - q[i]).clamp(min=0)
        total = float(residual.sum())
        # a rejection implies p_x < q_x, so p has mass elsewhere; guard against rounding anyway
        residual = residual / total if total > 0 else p[i]
        return i, _pick(residual, greedy, generator)
    return len(draft_tokens), _pick(p[len(draft_tokens)], greedy, generator)


def lookup_proposal(tokens: list[int], num_tokens: int, max_ngram: int = 3) -> list[int]:
    """Tokens that followed the latest earlier occurrence of the longest matching tail n-gram."""
    for n in range(min(max_ngram, len(tokens) - 1), 0, -1):
        tail = tokens[-n:]
        # search backwards: the most recent match best predicts what comes next
        for start in range(len(tokens) - n - 1, -1, -1):
            if tokens[start:start + n] == tail:
                follow = tokens[start + n:start + n + num_tokens]
                if follow:
                    return follow
    return []


class DraftVocabulary:
    """The tokens a draft may propose, and its LM head cut down to them.

    A one-layer draft's step is bound by moving its weights, and with a full vocabulary its
    LM head is most of them: the 2,948 x 128 head of the draft next to the tiny target is
    1.5 MB, the layer 0.85 MB, together more than this CPU's 2 MB L2 cache. Proposing only
    the tokens that make up 99.9% of the training text (1,533 of 2,948 there) halves the
    head, lets the whole step stay in L2, and keeps every guess that was ever likely to be
    accepted (docs/ARCHITECTURE.md). The output is unchanged: a guess outside the list is
    just never made, and at temperature > 0 the draft's distribution q is zero outside it,
    which the acceptance rule handles exactly like any other q.

    The head is a copy of the draft's weights when this is made: make it after training.
    """

    def __init__(self, draft, token_ids):
        ids = torch.as_tensor(token_ids, dtype=torch.long).unique()   # sorted, without repeats
        vocab_size = draft.cfg.vocab_size
        if ids.numel() == 0 or int(ids[0]) < 0 or int(ids[-1]) >= vocab_size:
            raise ValueError(f"a draft vocabulary needs token ids in [0, {vocab_size}), got {ids.numel()} ids")
        weight = draft.lm_head.weight
        self.vocab_size = vocab_size
        self.ids = ids.to(weight.device)
        with torch.no_grad():
            self.head = weight.detach()[self.ids].contiguous()

    def __len__(self) -> int:
        return self.ids.numel()


def frequent_tokens(tokens: np.ndarray, vocab_size: int, coverage: float = 0.999) -> torch.Tensor:
    """The fewest most frequent token ids that together make up `coverage` of `tokens`, sorted."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    counts = np.bincount(np.asarray(tokens, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    order = np.argsort(-counts, kind="stable")
    covered = np.cumsum(counts[order]) / max(1, counts.sum())
    n = int(np.searchsorted(covered, coverage - 1e-12)) + 1
    return torch.from_numpy(np.sort(order[:min(n, vocab_size)]))


def _draft_logits(draft, vocab: DraftVocabulary | None, hidden):
    """The draft's logits for hidden (..., d_model): over the whole vocabulary, or over `vocab`'s
    tokens only (then index i stands for token vocab.ids[i])."""
    if vocab is None:
        return draft.logits(hidden)
    return F.linear(hidden, vocab.head).float()


def _greedy_guesses(draft, cache, tokens: list[int], n: int, device, min_confidence: float = 0.0,
                    vocab: DraftVocabulary | None = None) -> list[int]:
    """Up to n greedy draft tokens, one draft forward each; the first also catches the draft up
    on the tokens it has not seen (the last one or two). Each guess stays a (1, 1) tensor that
    is fed straight back, and the logits are computed for the last position only: a draft
    step is a handful of small ops, so every op and every host round trip saved shows.

    With min_confidence > 0, drafting stops after a guess to which the draft itself gives less
    than that probability: the guesses after an unsure one are rarely accepted, so their
    draft forwards are mostly wasted (one host read per guess, which is nothing on a CPU)."""
    ids = torch.tensor([tokens[cache.pos:]], dtype=torch.long, device=device)
    out = []
    for _ in range(n):
        hidden = draft(ids, cache=cache, return_hidden=True)
        logits = _draft_logits(draft, vocab, hidden[:, -1:])
        if min_confidence <= 0:
            best = logits.argmax(-1)
            ids = best if vocab is None else vocab.ids[best]
            out.append(ids)
            continue
        # the guess and its probability from one softmax and one max
        confidence, best = torch.softmax(logits, -1).max(-1)
        ids = best if vocab is None else vocab.ids[best]
        out.append(ids)
        if float(confidence) < min_confidence:
            break
    return torch.cat(out, dim=1)[0].tolist()


def _probs(logits, params: SamplingParams):
    return next_token_probs(logits, params.temperature, params.top_k, params.top_p, params.min_p)


def speculative_generate(target, prompt: list[int], params: SamplingParams, draft=None,
                         num_draft_tokens: int = 4, max_ngram: int = 3, tokenizer=None,
                         stats: SpeculativeStats | None = None, cancel=None,
                         min_draft_confidence: float = DRAFT_CONFIDENCE,
                         draft_vocab: DraftVocabulary | None = None) -> Generation:
    """Continue one prompt exactly as `generate` would in distribution (and token for token
    at temperature 0), proposing with `draft` (a smaller GPT with the same tokenizer) or,
    when draft is None, with n-gram prompt lookup. A round's drafting stops early after a
    guess the draft gives less than min_draft_confidence (0 = always num_draft_tokens);
    with draft_vocab the draft proposes only those tokens (DraftVocabulary). Both change
    the speed only, never the output."""
    seq = Sequence(prompt, params, tokenizer, cancel=cancel)
    for _ in _rounds(target, seq, draft, num_draft_tokens, max_ngram, stats, min_draft_confidence, draft_vocab):
        pass
    return seq.result()


def speculative_stream(target, tokenizer, prompt: list[int], params: SamplingParams,
                       cancel: threading.Event | None = None, draft=None, num_draft_tokens: int = 4,
                       max_ngram: int = 3, stats: SpeculativeStats | None = None,
                       min_draft_confidence: float = DRAFT_CONFIDENCE,
                       draft_vocab: DraftVocabulary | None = None) -> Iterator[StreamEvent]:
    """generate.stream with speculative decoding (the options are speculative_generate's):
    StreamEvents as each round's tokens are confirmed, the last with finish_reason. Runs in
    the caller's thread; closing the generator early (break, Ctrl-C) cancels it."""
    events: deque[StreamEvent] = deque()
    seq = Sequence(prompt, params, tokenizer, on_event=events.append, cancel=cancel)
    rounds = _rounds(target, seq, draft, num_draft_tokens, max_ngram, stats, min_draft_confidence, draft_vocab)
    return drain_events(rounds, events, seq)


@torch.inference_mode()
def _rounds(target, seq: Sequence, draft, num_draft_tokens: int, max_ngram: int, stats: SpeculativeStats | None,
            min_draft_confidence: float, draft_vocab: DraftVocabulary | None) -> Iterator[None]:
    """Continue seq round by round (see speculative_generate), yielding after each round."""
    params = seq.params
    params.check()
    if draft_vocab is not None and (draft is None or draft_vocab.vocab_size != draft.cfg.vocab_size):
        raise ValueError("draft_vocab was made for another draft model")
    stats = stats if stats is not None else SpeculativeStats()
    seq.fit_context(target.cfg.seq_len)
    greedy = params.temperature == 0
    generator = seq.generator
    k = max(1, num_draft_tokens)
    # room for the prompt, the output, and one round of guesses past the end
    max_len = len(seq.prompt) + seq.budget + k + 1
    target_cache = target.make_cache(1, max_len)
    draft_cache = draft.make_cache(1, max_len) if draft is not None else None
    device = target.embed.weight.device
    tokens = list(seq.prompt)     # prompt + output so far; the last one is not yet in the target cache

    def run(model, cache, ids):
        return model(torch.tensor([ids], dtype=torch.long, device=device), cache=cache)[0]

    def draft_logits(ids):   # the sampled path's draft step: logits for the last position only
        hidden = draft(torch.tensor([ids], dtype=torch.long, device=device), cache=draft_cache, return_hidden=True)
        return _draft_logits(draft, draft_vocab, hidden[0, -1:])

    if seq.budget == 0:
        seq.finish("length")
        return
    # prefill: everything but the last prompt token, whose logits the first round computes
    if len(tokens) > 1:
        target(torch.tensor([tokens[:-1]], device=device), cache=target_cache, return_hidden=True)
        stats.target_forwards += 1
        if draft is not None:
            draft(torch.tensor([tokens[:-1]], device=device), cache=draft_cache, return_hidden=True)
            stats.draft_forwards += 1

    while not seq.done:
        if seq.cancel.is_set():
            seq.finish("cancelled")
            break
        # never guess past the output budget: the target cache has room for exactly that
        room = seq.remaining - 1
        guesses: list[int] = []
        q_rows = []
        if room > 0 and draft is not None and greedy:
            guesses = _greedy_guesses(draft, draft_cache, tokens, min(k, room), device, min_draft_confidence,
                                      draft_vocab)
            stats.draft_forwards += len(guesses)
        elif room > 0 and draft is not None:
            # the draft catches up on whatever it has not seen (the last one or two tokens)
            logits = draft_logits(tokens[draft_cache.pos:])
            stats.draft_forwards += 1
            for i in range(min(k, room)):
                q = _probs(logits, params)[0]
                pick = _pick(q, greedy, generator)
                if draft_vocab is not None:
                    # back to token ids: q over the whole vocabulary, zero off the draft's list
                    pick = int(draft_vocab.ids[pick])
                    full = torch.zeros(draft_vocab.vocab_size, dtype=q.dtype, device=q.device)
                    q = full.index_copy_(0, draft_vocab.ids, q)
                q_rows.append(q)
                guesses.append(pick)
                if float(q.max()) < min_draft_confidence:
                    break   # an unsure draft: the guesses after this one would rarely be kept
                if i + 1 < min(k, room):
                    logits = draft_logits([pick])
                    stats.draft_forwards += 1
        elif room > 0:
            guesses = lookup_proposal(tokens, min(k, room), max_ngram)
        before = len(tokens)
        logits = run(target, target_cache, [tokens[-1]] + guesses)
        stats.target_forwards += 1
        if greedy:
            # verify() with one-hot p and q: keep guesses while they equal the target's argmax
            best = logits.argmax(-1).tolist()
            accepted = 0
            while accepted < len(guesses) and guesses[accepted] == best[accepted]:
                accepted += 1
            next_token = best[accepted]
        else:
            p = _probs(logits, params)
            if draft is None:
                # a lookup guess is certain: its proposal distribution is one-hot
                q = torch.zeros(len(guesses), p.size(-1))
                if guesses:
                    q[torch.arange(len(guesses)), torch.tensor(guesses)] = 1.0
            else:
                q = torch.stack(q_rows) if q_rows else torch.zeros(0, p.size(-1))
            accepted, next_token = verify(p, q, guesses, greedy, generator)
        stats.rounds += 1
        stats.proposed += len(guesses)
        stats.accepted += accepted
        new = guesses[:accepted] + [next_token]
        # keep the cache entries of the last confirmed token and the accepted guesses only
        target_cache.pos = before + accepted
        if draft_cache is not None:
            draft_cache.pos = min(draft_cache.pos, before + accepted)
        for token in new:
            stats.emitted += 1
            tokens.append(token)
            if not seq.add(token):
                break
        yield


# ---------------------------------------------------------------- a draft run next to a target run

def prepare_draft_run(target_dir, draft_dir) -> list[str]:
    """Start draft_dir from the target run: its config with the draft preset's model and
    pretrain sections, and its data, tokenizer and pre-pretraining manifests.

    Every other config section is the target's, so the copied manifests' fingerprints match
    and `lmforge run --run-dir DRAFT --to pretrain` goes straight to pretraining on the same
    token shards with the same tokenizer. Returns the copied stages.
    """
    import shutil

    from .config import load_config, validate
    from .rundir import STAGE_NAMES, RunDir
    target, draft = RunDir(target_dir), RunDir(draft_dir)
    if not (target.tokenizer_dir / "tokenizer.json").exists() or not target.config_path.exists():
        raise SystemExit(f"{target.root} has no tokenizer: run the target to its tokenizer stage first")
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
    from .tokenizer import TokenizerError, load_split
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
    not the target run's (prepare-draft makes one that is)."""
    from .generate import load_for_sampling
    from .rundir import RunDir
    draft_run = RunDir(draft_dir)
    if stage is None and (draft_run.model_dir(DISTILL_STAGE) / "model.safetensors").exists():
        stage = DISTILL_STAGE
    _, draft, stage = load_for_sampling(draft_run, stage)
    mine, theirs = draft_run.tokenizer_dir / "tokenizer.json", target_run.tokenizer_dir / "tokenizer.json"
    if mine.read_bytes() != theirs.read_bytes():
        raise SystemExit(f"{mine} differs from {theirs}: the draft needs the target's tokenizer "
                         "(python -m lmforge.speculative prepare-draft TARGET DRAFT)")
    draft = draft.to(device or draft.embed.weight.device).eval()
    return draft, run_draft_vocabulary(draft_run, draft, coverage), f"{draft_run.root}:{stage}"


def distill_loss_sum(target):
    """loss_fn for the training loop: KL(target || draft) summed over the batch's positions.

    Matching the target's whole next-token distribution, not just the data's next token,
    is what raises acceptance: at temperature 0 a guess is kept iff the two argmaxes agree,
    and at temperature > 0 the acceptance rate is 1 - TV(p, q).
    """
    import torch.nn.functional as F

    def loss_fn(model, batch) -> torch.Tensor:
        with torch.no_grad():
            p_log = F.log_softmax(target(batch["x"]).float(), dim=-1)
        q_log = F.log_softmax(model(batch["x"]).float(), dim=-1)
        return F.kl_div(q_log.flatten(0, 1), p_log.flatten(0, 1), log_target=True, reduction="sum")
    return loss_fn


@torch.inference_mode()
def greedy_agreement(target, draft, tokens, windows: int, seq_len: int, device) -> float:
    """Share of positions of `windows` evenly spaced windows where the two models' argmaxes agree
    (the per-token acceptance rate of greedy speculative decoding on such text)."""
    from .train.pretrain import windows_to_batch
    offsets = np.linspace(0, len(tokens) - seq_len - 1, num=windows).astype(np.int64)
    agree = total = 0
    for i in range(0, len(offsets), 16):
        x = windows_to_batch(tokens, offsets[i:i + 16], seq_len, device)["x"]
        agree += int((target(x).argmax(-1) == draft(x).argmax(-1)).sum())
        total += x.numel()
    return agree / total


def distill_draft(target_dir, draft_dir, steps: int = 1000, max_minutes: float = 0.0, lr_scale: float = 0.5,
                  target_stage: str | None = None, device: str = "auto") -> dict:
    """Fine-tune a draft run's pretrained model toward its target on the shared training tokens.

    Loss: KL(target || draft) per position (distill_loss_sum), through the shared training
    loop with the draft run's pretrain settings (learning rates scaled by lr_scale, since it
    starts from a trained model). Validation is the same KL on the validation tokens; the
    best weights go to DRAFT/models/distill/, which `benchmarks/decode.py` then prefers.
    """
    import dataclasses
    import time

    from .config import load_config
    from .generate import resolve_stage
    from .model import load_model, save_model
    from .rundir import RunDir
    from .tokenizer import load_split
    from .device import pick_device
    from .train.loop import Trainer
    from .train.pretrain import window_batch_fn, windows_to_batch

    target_run, draft_run = RunDir(target_dir), RunDir(draft_dir)
    if (target_run.tokenizer_dir / "tokenizer.json").read_bytes() != \
            (draft_run.tokenizer_dir / "tokenizer.json").read_bytes():
        raise SystemExit(f"{draft_run.tokenizer_dir} differs from {target_run.tokenizer_dir}: "
                         "make the draft with prepare-draft")
    cfg = load_config(None, base=draft_run.config_path)
    dev = pick_device(device)
    stage = resolve_stage(target_run, target_stage)
    target = load_model(target_run.model_dir(stage), device=dev).eval().requires_grad_(False)
    draft = load_model(draft_run.model_dir("pretrain"), device=dev)
    train, val = load_split(draft_run.tokens_dir, "train"), load_split(draft_run.tokens_dir, "val")
    p = cfg.pretrain
    tcfg = dataclasses.replace(p, max_steps=steps, max_minutes=max_minutes, lr=p.lr * lr_scale,
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


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m lmforge.speculative",
                                     description="Draft runs for speculative decoding.")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare-draft", help="start a draft run folder from a target run")
    prep.add_argument("target_run_dir")
    prep.add_argument("draft_run_dir")
    dist = sub.add_parser("distill", help="fine-tune the draft's pretrained model toward the target (KL)")
    dist.add_argument("target_run_dir")
    dist.add_argument("draft_run_dir")
    dist.add_argument("--steps", type=int, default=1000)
    dist.add_argument("--max-minutes", type=float, default=0.0)
    dist.add_argument("--lr-scale", type=float, default=0.5)
    dist.add_argument("--target-stage", default=None, help="default: the target run's latest model")
    dist.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.command == "prepare-draft":
        stages = prepare_draft_run(args.target_run_dir, args.draft_run_dir)
        print(f"{args.draft_run_dir}: copied data, tokenizer and the {', '.join(stages)} manifests from "
              f"{args.target_run_dir}; now run `lmforge run --run-dir {args.draft_run_dir} --to pretrain`, "
              f"then `python -m lmforge.speculative distill {args.target_run_dir} {args.draft_run_dir}`")
    else:
        import json
        print(json.dumps(distill_draft(args.target_run_dir, args.draft_run_dir, args.steps, args.max_minutes,
                                       args.lr_scale, args.target_stage, args.device)))
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
