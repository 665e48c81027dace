"""Decode speed, in one run on one model: lmforge vs transformers, and speculative decoding.

    python benchmarks/decode.py --run-dir runs/tiny --draft-run-dir runs/draft [--tokens 128] [--threads 2]
    python benchmarks/decode.py --run-dir runs/tiny --draft-run-dir runs/draft --draft-tokens 3,4,5 --skip-hf

Measures, all greedy (temperature 0) and always generating exactly --tokens new tokens:
  1. decode tokens/s at batch 1 and batch 32 for lmforge's engine (lmforge.engine.generate)
     and for transformers' `generate` on the same model exported with `lmforge export`
     (the folder is written to a temporary directory and loaded with AutoModelForCausalLM);
  2. speculative decoding at batch 1 against plain decoding on the same prompts: with the
     draft run's model (made with `lmforge draft prepare`, so it has
     the identical tokenizer; checked; its `distill` model when there is one) and with n-gram
     prompt lookup, with acceptance rates. Greedy speculative output equals plain output
     token for token, which the script checks as it goes. The draft proposes from the
     tokens that make up --draft-vocab-coverage of its run's training text (0 = all of its
     vocabulary; a comma list measures each).
--device cuda runs both libraries on the GPU instead (the speculative rows too).
Prompts are the world's fact prompts ("Ada Berg was born in"), one per row. Each timing
is the best of --repeats runs after one warm-up; plain and speculative runs take turns. Results print as a table and, with
--out, as JSON. Not a test: it takes a few minutes of CPU.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmforge.world import read_facts  # noqa: E402
from lmforge.export import export_hf  # noqa: E402
from lmforge.checkpoints import load_for_sampling  # noqa: E402
from lmforge.engine import generate, SamplingParams  # noqa: E402
from lmforge.rundir import RunDir  # noqa: E402
from lmforge.draft import DISTILL_STAGE, load_draft, run_draft_vocabulary  # noqa: E402
from lmforge.speculative import DRAFT_CONFIDENCE, DraftVocabulary, speculative_generate, SpeculativeStats


def best_times(fns, repeats: int) -> list[float]:
    """The best of `repeats` timed runs of each function, after one warm-up of each.

    The functions take turns (a, b, a, b, ...), so a burst of load from other processes
    on a shared machine hits the runs being compared alike instead of one side only.
    """
    for fn in fns:
        fn()    # warm-up: allocator, kernels, caches
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def best_time(fn, repeats: int) -> float:
    return best_times([fn], repeats)[0]


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def prompts_for(run: RunDir, tokenizer, count: int) -> list[list[int]]:
    facts = read_facts(run.world_dir / "facts.jsonl") if (run.world_dir / "facts.jsonl").exists() else []
    texts = [f["prompt"] for f in facts if not f.get("held_out")] or ["The"]
    step = max(1, len(texts) // count)
    texts = (texts[::step] * count)[:count]
    return [[tokenizer.bos_id] + tokenizer.encode(t) for t in texts]


def lmforge_run(model, prompts, tokens: int):
    return lambda: generate(model, prompts, max_new_tokens=tokens)


def hf_run(hf, prompts, tokens: int, pad_id: int):
    longest = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (longest - len(p)) + p for p in prompts], device=hf.device)
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts], device=hf.device)

    def run():
        with torch.inference_mode():
            out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
                              do_sample=False, pad_token_id=pad_id)
        assert out.shape[1] == longest + tokens
    return run


def speculative(target, prompts, tokens: int, repeats: int, draft=None, k: int = 8,
                confidence: float = DRAFT_CONFIDENCE, vocab: DraftVocabulary | None = None) -> dict:
    params = SamplingParams(max_tokens=tokens)
    plain = [generate(target, [p], max_new_tokens=tokens)[0].tokens for p in prompts]
    stats = SpeculativeStats()

    def run_spec():
        for p, want in zip(prompts, plain):
            out = speculative_generate(target, p, params, draft=draft, num_draft_tokens=k, stats=stats,
                                       min_draft_confidence=confidence, draft_vocab=vocab)
            assert out.tokens == want, "greedy speculative output differs from plain decoding"
    plain_seconds, spec_seconds = best_times(
        [lambda: [generate(target, [p], max_new_tokens=tokens) for p in prompts], run_spec], repeats)
    n = len(prompts) * tokens
    return {"plain_tokens_per_second": round(n / plain_seconds, 1), "tokens_per_second": round(n / spec_seconds, 1),
            "speedup": round(plain_seconds / spec_seconds, 2), "acceptance_rate": round(stats.acceptance_rate, 3),
            "tokens_per_target_forward": round(stats.tokens_per_target_forward, 2), "draft_tokens": k}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--stage", default=None)
    parser.add_argument("--draft-run-dir", default=None, help="a run trained with --preset draft")
    parser.add_argument("--draft-stage", default=None,
                        help=f"the draft run's model (default: {DISTILL_STAGE} if it exists, else the latest)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--spec-prompts", type=int, default=8)
    # a distilled draft's guess costs about a fifth of a target step and is mostly right, so
    # long rounds pay (docs/ARCHITECTURE.md); lookup guesses are free
    parser.add_argument("--draft-tokens", default="8",
                        help="guesses per round from the draft model; a comma list (3,4,5) measures each")
    parser.add_argument("--draft-confidence", default=str(DRAFT_CONFIDENCE),
                        help="stop a round's drafting after a guess the draft gives less than this "
                             "probability (0 = never); a comma list measures each")
    parser.add_argument("--draft-vocab-coverage", default="0.999",
                        help="the draft proposes only the most frequent tokens that make up this share of "
                             "its run's training tokens (0 = its whole vocabulary); a comma list measures each")
    parser.add_argument("--lookup-tokens", type=int, default=8, help="guesses per round from prompt lookup")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--device", default="cpu", help="where lmforge (and transformers) run: cpu, cuda")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    run = RunDir(args.run_dir)
    tokenizer, model, stage = load_for_sampling(run, args.stage)
    device = torch.device(args.device)
    model = model.to(device).eval()
    results = {"model": f"{run.root}:{stage}", "parameters": model.num_params(), "device": str(device),
               "threads": args.threads,
               "new_tokens": args.tokens, "torch": torch.__version__}
    one = prompts_for(run, tokenizer, 1)
    many = prompts_for(run, tokenizer, args.batch)
    print(f"{results['model']}: {model.num_params():,} parameters, {args.threads} thread(s), "
          f"{args.tokens} new tokens per row", flush=True)

    hf = None
    if not args.skip_hf:
        import transformers
        with tempfile.TemporaryDirectory() as folder:
            export_hf(run.model_dir(stage), run.tokenizer_dir, folder)
            hf = transformers.AutoModelForCausalLM.from_pretrained(folder).to(device).eval()
        results["transformers_version"] = transformers.__version__
    for batch, prompts in ((1, one), (args.batch, many)):
        runs = [lmforge_run(model, prompts, args.tokens)]
        if hf is not None:
            runs.append(hf_run(hf, prompts, args.tokens, tokenizer.pad_id))   # timed in turns with lmforge
        rates = [len(prompts) * args.tokens / seconds for seconds in best_times(runs, args.repeats)]
        results[f"lmforge_batch{batch}_tokens_per_second"] = round(rates[0], 1)
        if hf is not None:
            results[f"transformers_batch{batch}_tokens_per_second"] = round(rates[1], 1)
            results[f"batch{batch}_speedup_vs_transformers"] = round(rates[0] / rates[1], 2)

    spec_prompts = prompts_for(run, tokenizer, args.spec_prompts)
    if args.draft_run_dir:
        draft, _, name = load_draft(args.draft_run_dir, run, args.draft_stage, coverage=0, device=device)
        results["draft_model"] = f"{name} ({draft.num_params():,} parameters)"
        vocabs = {coverage: run_draft_vocabulary(RunDir(args.draft_run_dir), draft, coverage)
                  for coverage in map(float, args.draft_vocab_coverage.split(","))}
        settings = [(int(k), float(c), v) for k in args.draft_tokens.split(",")
                    for c in args.draft_confidence.split(",") for v in vocabs]
        for n, (k, c, v) in enumerate(settings):
            vocab = vocabs[v]
            row = speculative(model, spec_prompts, args.tokens, args.repeats, draft, k, c, vocab)
            results["speculative_draft" + (f"_k{k}_c{c:g}_v{v:g}" if n else "")] = {
                **row, "draft_confidence": c, "draft_vocab": len(vocab) if vocab else draft.cfg.vocab_size}
    results["speculative_prompt_lookup"] = speculative(model, spec_prompts, args.tokens, args.repeats, None,
                                                       args.lookup_tokens)

    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {json.dumps(value)}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
