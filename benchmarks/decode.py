"""Decode speed, in one run on one model: lmforge vs transformers, and speculative decoding.

    python benchmarks/decode.py --run-dir runs/tiny --draft-run-dir runs/draft [--tokens 128] [--threads 2]

Measures, all greedy (temperature 0) and always generating exactly --tokens new tokens:
  1. decode tokens/s at batch 1 and batch 32 for lmforge's engine (lmforge.generate.generate)
     and for transformers' `generate` on the same model exported with `lmforge export`
     (the folder is written to a temporary directory and loaded with AutoModelForCausalLM);
  2. speculative decoding at batch 1 against plain decoding on the same prompts: with the
     draft run's model (made with `python -m lmforge.speculative prepare-draft`, so it has
     the identical tokenizer; checked) and with n-gram
     prompt lookup, with acceptance rates. Greedy speculative output equals plain output
     token for token, which the script checks as it goes.
Prompts are the world's fact prompts ("Ada Berg was born in"), one per row. Each timing
is the best of --repeats runs after one warm-up. Results print as a table and, with
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

from lmforge.data.world import read_facts  # noqa: E402
from lmforge.export import export_hf  # noqa: E402
from lmforge.generate import SamplingParams, generate, load_for_sampling  # noqa: E402
from lmforge.run import RunDir  # noqa: E402
from lmforge.speculative import SpeculativeStats, speculative_generate  # noqa: E402


def best_time(fn, repeats: int) -> float:
    fn()    # warm-up: allocator, kernels, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def prompts_for(run: RunDir, tokenizer, count: int) -> list[list[int]]:
    facts = read_facts(run.world_dir / "facts.jsonl") if (run.world_dir / "facts.jsonl").exists() else []
    texts = [f["prompt"] for f in facts if not f.get("held_out")] or ["The"]
    step = max(1, len(texts) // count)
    texts = (texts[::step] * count)[:count]
    return [[tokenizer.bos_id] + tokenizer.encode(t) for t in texts]


def lmforge_decode(model, prompts, tokens: int, repeats: int) -> float:
    seconds = best_time(lambda: generate(model, prompts, max_new_tokens=tokens), repeats)
    return len(prompts) * tokens / seconds


def hf_decode(hf, prompts, tokens: int, repeats: int, pad_id: int) -> float:
    longest = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (longest - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])

    def run():
        with torch.inference_mode():
            out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
                              do_sample=False, pad_token_id=pad_id)
        assert out.shape[1] == longest + tokens
    seconds = best_time(run, repeats)
    return len(prompts) * tokens / seconds


def speculative(target, prompts, tokens: int, repeats: int, draft=None, k: int = 4) -> dict:
    params = SamplingParams(max_tokens=tokens)
    plain = [generate(target, [p], max_new_tokens=tokens)[0].tokens for p in prompts]
    stats = SpeculativeStats()

    def run_spec():
        for p, want in zip(prompts, plain):
            out = speculative_generate(target, p, params, draft=draft, num_draft_tokens=k, stats=stats)
            assert out.tokens == want, "greedy speculative output differs from plain decoding"
    plain_seconds = best_time(lambda: [generate(target, [p], max_new_tokens=tokens) for p in prompts], repeats)
    spec_seconds = best_time(run_spec, repeats)
    n = len(prompts) * tokens
    return {"plain_tokens_per_second": round(n / plain_seconds, 1), "tokens_per_second": round(n / spec_seconds, 1),
            "speedup": round(plain_seconds / spec_seconds, 2), "acceptance_rate": round(stats.acceptance_rate, 3),
            "tokens_per_target_forward": round(stats.tokens_per_target_forward, 2), "draft_tokens": k}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/tiny")
    parser.add_argument("--stage", default=None)
    parser.add_argument("--draft-run-dir", default=None, help="a run trained with --preset draft")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--spec-prompts", type=int, default=8)
    # a draft model's guesses cost a forward each, so fewer pay off; lookup guesses are free
    parser.add_argument("--draft-tokens", type=int, default=3, help="guesses per round from the draft model")
    parser.add_argument("--lookup-tokens", type=int, default=8, help="guesses per round from prompt lookup")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    run = RunDir(args.run_dir)
    tokenizer, model, stage = load_for_sampling(run, args.stage)
    model.eval()
    results = {"model": f"{run.root}:{stage}", "parameters": model.num_params(), "threads": args.threads,
               "new_tokens": args.tokens, "torch": torch.__version__}
    one = prompts_for(run, tokenizer, 1)
    many = prompts_for(run, tokenizer, args.batch)
    print(f"{results['model']}: {model.num_params():,} parameters, {args.threads} thread(s), "
          f"{args.tokens} new tokens per row", flush=True)

    results["lmforge_batch1_tokens_per_second"] = round(lmforge_decode(model, one, args.tokens, args.repeats), 1)
    results[f"lmforge_batch{args.batch}_tokens_per_second"] = round(
        lmforge_decode(model, many, args.tokens, args.repeats), 1)
    if not args.skip_hf:
        import transformers
        with tempfile.TemporaryDirectory() as folder:
            export_hf(run.model_dir(stage), run.tokenizer_dir, folder)
            hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        results["transformers_version"] = transformers.__version__
        results["transformers_batch1_tokens_per_second"] = round(
            hf_decode(hf, one, args.tokens, args.repeats, tokenizer.pad_id), 1)
        results[f"transformers_batch{args.batch}_tokens_per_second"] = round(
            hf_decode(hf, many, args.tokens, args.repeats, tokenizer.pad_id), 1)
        results["batch1_speedup_vs_transformers"] = round(
            results["lmforge_batch1_tokens_per_second"] / results["transformers_batch1_tokens_per_second"], 2)
        results[f"batch{args.batch}_speedup_vs_transformers"] = round(
            results[f"lmforge_batch{args.batch}_tokens_per_second"]
            / results[f"transformers_batch{args.batch}_tokens_per_second"], 2)

    spec_prompts = prompts_for(run, tokenizer, args.spec_prompts)
    if args.draft_run_dir:
        draft_run = RunDir(args.draft_run_dir)
        draft_tokenizer, draft, draft_stage = load_for_sampling(draft_run, None)
        same = (draft_run.tokenizer_dir / "tokenizer.json").read_text() == (run.tokenizer_dir / "tokenizer.json").read_text()
        if not same:
            raise SystemExit(f"{draft_run.tokenizer_dir} differs from {run.tokenizer_dir}: the draft needs the same "
                             "tokenizer (python -m lmforge.speculative prepare-draft TARGET DRAFT)")
        results["draft_model"] = f"{draft_run.root}:{draft_stage} ({draft.num_params():,} parameters)"
        results["speculative_draft"] = speculative(model, spec_prompts, args.tokens, args.repeats, draft.eval(),
                                                   args.draft_tokens)
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
