"""Looking inside: sampling, the next-token chart, every stage side by side, embedding neighbours.

    lmforge generate "Nikola Tesla was" --run-dir runs/tiny -n 3 # continue a prompt
    lmforge next "Det er bedre med en fugl i hånden enn ti på"   # bar chart of the next-token distribution
    lmforge compare "Who was Ada Berg?" --run-dir runs/tiny     # random init, base, SFT, ... side by side
    lmforge neighbours Tesla --run-dir runs/tiny -k 10          # nearest tokens by cosine similarity

    from lmforge.inspect import compare, neighbours

`compare` renders the prompt as a chat turn for chat-tuned stages and continues it as
plain text for the random-init and base models (they never saw the chat template);
--raw continues plain text everywhere. Chat turns offer the run's tools (`--tools`, as
`lmforge chat`): a stage's calls run mid-answer and are shown with their results. The random-init model is built from the run's
model config and seed, so it is the same every time.

The embedding map and the divergence table of the report card live in lmforge/evals/inside.py.
"""
from __future__ import annotations

import torch

from .checkpoints import load_for_sampling, load_model, model_stages
from .engine import fast_path, generate, next_token_probs
from .model import GPT
from .errors import StageError
from .tokenizer import Tokenizer
from .tools.registry import command_tools

RAW_STAGES = ("random init", "pretrain")


# ---------------------------------------------------------------- `lmforge generate` and `lmforge next`

def _sampling_args(args, cfg) -> dict:
    pick = lambda value, default: default if value is None else value  # noqa: E731
    settings = {"temperature": pick(args.temperature, cfg.generate.temperature),
                "top_k": pick(args.top_k, cfg.generate.top_k), "top_p": pick(args.top_p, cfg.generate.top_p)}
    min_p = getattr(args, "min_p", None)
    if min_p is not None:
        settings["min_p"] = min_p
    if settings["temperature"] < 0 or not 0 < settings["top_p"] <= 1 or settings["top_k"] < 0 \
            or not 0 <= settings.get("min_p", 0.0) <= 1:
        raise StageError("need --temperature >= 0, 0 < --top-p <= 1, --top-k >= 0 and 0 <= --min-p <= 1")
    return settings


def cli_generate(args, run, cfg) -> int:
    tokenizer, model, _ = load_for_sampling(run, args.stage)
    settings = _sampling_args(args, cfg)
    prompt_ids = [tokenizer.bos_id] + tokenizer.encode(args.prompt)
    max_new = args.max_new_tokens or cfg.generate.max_new_tokens
    seed = cfg.run.seed if args.seed is None else args.seed
    outs = generate(model, [prompt_ids] * max(1, args.num_samples), max_new_tokens=max_new, seed=seed,
                    stop_ids=(tokenizer.end_id, tokenizer.bos_id), **settings)
    for out in outs:
        print(args.prompt + tokenizer.decode(out.tokens))
    return 0


def cli_next(args, run, cfg) -> int:
    tokenizer, model, stage = load_for_sampling(run, args.stage)
    settings = _sampling_args(args, cfg)
    if args.temperature is None:
        settings["temperature"] = 1.0     # the model's own distribution unless asked otherwise
    ids = torch.tensor([[tokenizer.bos_id] + tokenizer.encode(args.prompt)])
    ids = ids[:, -model.cfg.seq_len:]
    with torch.inference_mode(), fast_path(model):
        logits = model(ids)[:, -1, :]
    probs = next_token_probs(logits, **settings)[0]
    top = torch.topk(probs, min(args.show, probs.numel()))
    pairs = [(tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(top.values, top.indices) if p > 0]
    print(f"next token after {args.prompt!r} ({stage} model, temperature {settings['temperature']}):")
    print(format_bar_chart(pairs))
    return 0


# ---------------------------------------------------------------- the bar chart

_EIGHTHS = " ▏▎▍▌▋▊▉"


def format_bar_chart(pairs: list[tuple[str, float]], width: int = 40) -> str:
    """One line per (token, probability): the token's repr, a bar (width = 100%), the percent.

        'the'   ████████████▌                             31.4%
        ' a'    ███▏                                       7.9%
    """
    if not pairs:
        return ""
    labels = [repr(token) for token, _ in pairs]
    label_width = max(len(label) for label in labels)
    lines = []
    for label, (_, prob) in zip(labels, pairs):
        prob = min(max(float(prob), 0.0), 1.0)
        eighths = round(prob * width * 8)
        bar = "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")
        lines.append(f"{label:<{label_width}}  {bar:<{width}} {100 * prob:5.1f}%")
    return "\n".join(lines)


# ---------------------------------------------------------------- compare

def compare(run, prompt: str, max_new_tokens: int = 48, temperature: float = 0.0, seed: int = 0,
            raw: bool = False, tools=None) -> list[dict]:
    """[{stage, text, tokens, finish_reason, format, tool_calls}] for random init and every stage with a
    model; tools: a ToolBox offered to the chat-format stages."""
    tokenizer = Tokenizer.load(run.tokenizer_dir)
    stages = model_stages(run)
    if not stages:
        return []
    models = []
    first = load_model(run.model_dir(stages[0]))
    torch.manual_seed(seed)
    models.append(("random init", GPT(first.cfg).eval()))
    for stage in stages:
        try:
            models.append((stage, load_model(run.model_dir(stage)).eval()))
        except ValueError as err:        # e.g. a reward model folder that is not a plain GPT
            models.append((stage, err))
    stop_ids = (tokenizer.end_id, tokenizer.bos_id, tokenizer.user_id, tokenizer.system_id, tokenizer.assistant_id)
    rows = []
    for stage, model in models:
        if isinstance(model, Exception):
            rows.append({"stage": stage, "text": f"(cannot load: {model})", "tokens": 0, "finish_reason": "-",
                         "format": "-"})
            continue
        as_chat = not raw and stage not in RAW_STAGES
        offered = tools if as_chat else None
        if as_chat:
            ids = tokenizer.render_chat([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                        tools=offered.schemas() if offered is not None else None)[0]
        else:
            ids = [tokenizer.bos_id] + tokenizer.encode(prompt)
        out = generate(model, [ids], max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                       stop_ids=stop_ids, tokenizer=tokenizer, tools=offered)[0]
        rows.append({"stage": stage, "text": out.text, "tokens": len(out.tokens), "finish_reason": out.finish_reason,
                     "format": "chat" if as_chat else "text", "tool_calls": out.tool_calls or []})
    return rows


def cli_compare(args, run, cfg) -> int:
    if not run.tokenizer_dir.exists() or not model_stages(run):
        raise StageError(f"no trained model in {run.root}; run `lmforge run --to pretrain` first")
    max_new = args.max_new_tokens or cfg.generate.max_new_tokens
    seed = cfg.run.seed if args.seed is None else args.seed
    tools = None if args.raw else command_tools(args.tools, run, cfg, Tokenizer.load(run.tokenizer_dir))
    if tools is not None:
        max_new = max(max_new, 128)       # room for a call and its result
    rows = compare(run, args.prompt, max_new, args.temperature, seed, args.raw, tools)
    print(f"prompt: {args.prompt!r}  (temperature {args.temperature}, up to {max_new} tokens)")
    width = max(len(r["stage"]) for r in rows)
    for row in rows:
        text = " ".join(row["text"].split()) or "(empty)"
        print(f"\n{row['stage']:<{width}}  [{row['format']}, {row['tokens']} tokens, {row['finish_reason']}]")
        for call in row.get("tool_calls", []):
            print(f"  [{call['name']} {call['arguments']} -> {' '.join(str(call.get('result')).split())[:160]}]")
        print(f"  {text}")
    return 0


# ---------------------------------------------------------------- embeddings

@torch.no_grad()
def neighbours(model, tokenizer, word: str, count: int = 10) -> tuple[list[str], list[tuple[str, float]]]:
    """(the word's tokens, [(token, cosine similarity)] of the nearest other tokens).

    A word of several tokens is represented by the mean of their embeddings.
    """
    ids = tokenizer.encode(word)
    spaced = tokenizer.encode(" " + word.lstrip())
    if len(spaced) < len(ids):      # " Tesla" is often one token where "Tesla" is two
        ids = spaced
    if not ids:
        raise ValueError("give a word to look up")
    table = model.embed.weight.float()
    query = table[ids].mean(0)
    similarity = torch.nn.functional.cosine_similarity(table, query[None], dim=-1)
    similarity[ids] = float("-inf")
    similarity[list(tokenizer.special_ids.values())] = float("-inf")
    top = torch.topk(similarity, min(count, len(similarity) - len(ids)))
    return ([tokenizer.id_to_token(i) for i in ids],
            [(tokenizer.id_to_token(int(i)), float(s)) for s, i in zip(top.values, top.indices)])


def cli_neighbours(args, run, cfg) -> int:
    tokenizer, model, stage = load_for_sampling(run, args.stage)
    pieces, nearest = neighbours(model, tokenizer, args.word, args.count)
    print(f"nearest tokens to {args.word!r} ({' + '.join(repr(p) for p in pieces)}) in the {stage} model's "
          "embedding space, by cosine similarity:")
    print(format_bar_chart([(token, max(similarity, 0.0)) for token, similarity in nearest]).replace("%", " "))
    return 0
