"""Speculative decoding: a cheap guesser proposes tokens, the target model checks them all at once.

    from lmforge.speculative import speculative_generate, SpeculativeStats
    stats = SpeculativeStats()
    out = speculative_generate(target, prompt_ids, SamplingParams(max_tokens=64), draft=draft_model,
                               num_draft_tokens=4, stats=stats)           # a small draft model
    out = speculative_generate(target, prompt_ids, params, stats=stats)   # n-gram prompt lookup
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
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .generate import Generation, SamplingParams, Sequence, next_token_probs


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


def _probs(logits, params: SamplingParams):
    return next_token_probs(logits, params.temperature, params.top_k, params.top_p, params.min_p)


@torch.inference_mode()
def speculative_generate(target, prompt: list[int], params: SamplingParams, draft=None,
                         num_draft_tokens: int = 4, max_ngram: int = 3, tokenizer=None,
                         stats: SpeculativeStats | None = None, cancel=None) -> Generation:
    """Continue one prompt exactly as `generate` would in distribution (and token for token
    at temperature 0), proposing with `draft` (a smaller GPT with the same tokenizer) or,
    when draft is None, with n-gram prompt lookup."""
    params.check()
    stats = stats if stats is not None else SpeculativeStats()
    seq = Sequence(prompt, params, tokenizer, cancel=cancel)
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

    if seq.budget == 0:
        seq.finish("length")
        return seq.result()
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
        if room > 0 and draft is not None:
            # the draft catches up on whatever it has not seen (the last one or two tokens)
            logits = run(draft, draft_cache, tokens[draft_cache.pos:])[-1]
            stats.draft_forwards += 1
            for i in range(min(k, room)):
                if greedy:      # the one-hot q is implied by the argmax; skip building it
                    guess = int(logits.argmax())
                else:
                    q = _probs(logits[None], params)[0]
                    guess = _pick(q, greedy, generator)
                    q_rows.append(q)
                guesses.append(guess)
                if i + 1 < min(k, room):
                    logits = run(draft, draft_cache, [guess])[-1]
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
    return seq.result()


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
    from .run import STAGE_NAMES, RunDir
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


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 4 or sys.argv[1] != "prepare-draft":
        sys.exit("usage: python -m lmforge.speculative prepare-draft TARGET_RUN_DIR DRAFT_RUN_DIR")
    stages = prepare_draft_run(sys.argv[2], sys.argv[3])
    print(f"{sys.argv[3]}: copied data, tokenizer and the {', '.join(stages)} manifests from {sys.argv[2]}; now run "
          f"`lmforge run --run-dir {sys.argv[3]} --to pretrain`")
