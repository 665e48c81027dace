"""Looking inside: sampling, the next-token chart, every stage side by side, embeddings, divergence.

    lmforge generate "Nikola Tesla was" --run-dir runs/tiny -n 3 # continue a prompt
    lmforge next "Det er bedre med en fugl i hånden enn ti på"   # bar chart of the next-token distribution
    lmforge compare "Who was Ada Berg?" --run-dir runs/tiny     # random init, base, SFT, ... side by side
    lmforge neighbours Tesla --run-dir runs/tiny -k 10          # nearest tokens by cosine similarity

    from lmforge.inspect import neighbours, embedding_map, divergence
    embedding_map(model, tokenizer, "report/embeddings.png")
    rows = divergence(model, tokenizer, prompt_ids, temperatures=(0.3, 0.7, 1.0, 1.5), samples=16)

`compare` renders the prompt as a chat turn for chat-tuned stages and continues it as
plain text for the random-init and base models (they never saw the chat template);
--raw continues plain text everywhere. Chat turns offer the run's tools (`--tools`, as
`lmforge chat`): a stage's calls run mid-answer and are shown with their results. The random-init model is built from the run's
model config and seed, so it is the same every time.

`divergence` samples one prompt many times at several temperatures and measures how far
the answers spread: the share of distinct answers and the mean pairwise distance
(1 - Jaccard similarity of the answers' token sets), 0 when every answer is the same.
"""
from __future__ import annotations

import itertools

import torch

from .checkpoints import load_for_sampling, load_model, model_stages, resolve_stage
from .engine import fast_path, generate, next_token_probs
from .model import GPT
from .run import StageError
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


@torch.no_grad()
def embedding_map(model, tokenizer, out_png, count: int = 400, labels: int = 120) -> bool:
    """A 2-D PCA map of the first `count` ordinary tokens (BPE ids come roughly in order of
    frequency), the first `labels` of them written out; colours tell words, numbers, other."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    first = len(tokenizer.special_ids)
    ids = list(range(first, min(tokenizer.vocab_size, model.cfg.vocab_size)))
    # skip the 256 single bytes the vocab starts with: merged tokens are the words the model learned
    ids = (ids[256:] if len(ids) > 256 + 50 else ids)[:count]
    if len(ids) < 3:
        return False
    vectors = model.embed.weight[ids].float()
    vectors = vectors - vectors.mean(0)
    _, _, v = torch.linalg.svd(vectors, full_matrices=False)
    points = (vectors @ v[:2].T).numpy()
    names = [tokenizer.id_to_token(i) for i in ids]
    colour = ["tab:blue" if n.strip().isalpha() else "tab:green" if n.strip().isdigit() else "tab:gray"
              for n in names]
    fig, ax = plt.subplots(figsize=(8, 6.5), dpi=110)
    ax.scatter(points[:, 0], points[:, 1], s=8, c=colour, alpha=0.6)
    for (x, y), name in itertools.islice(zip(points, names), labels):
        ax.annotate(name.replace("$", r"\$"), (x, y), fontsize=6, alpha=0.85)
    ax.set_title(f"token embeddings, first two principal components ({len(ids)} tokens)")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.grid(alpha=0.2)
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)
    return True


# ---------------------------------------------------------------- divergence

def spread(answers: list[list[int]]) -> tuple[float, float]:
    """(share of distinct answers, mean pairwise 1 - Jaccard similarity of their token sets)."""
    if not answers:
        return 0.0, 0.0
    distinct = len({tuple(a) for a in answers}) / len(answers)
    distances = []
    for a, b in itertools.combinations(answers, 2):
        sa, sb = set(a), set(b)
        union = sa | sb
        distances.append(1 - len(sa & sb) / len(union) if union else 0.0)
    return distinct, (sum(distances) / len(distances) if distances else 0.0)


def divergence(model, tokenizer, prompt_ids: list[int], temperatures=(0.0, 0.3, 0.7, 1.0, 1.5), samples: int = 16,
               max_new_tokens: int = 24, seed: int = 0) -> list[dict]:
    """For each temperature: samples answers to one prompt, how much they differ, and an example."""
    rows = []
    stop_ids = (tokenizer.end_id, tokenizer.bos_id)
    for temperature in temperatures:
        outs = generate(model, [prompt_ids] * samples, max_new_tokens=max_new_tokens, temperature=temperature,
                        seed=seed, stop_ids=stop_ids, tokenizer=tokenizer)
        distinct, distance = spread([o.tokens for o in outs])
        rows.append({"temperature": temperature, "samples": samples, "distinct": round(distinct, 3),
                     "mean_distance": round(distance, 3), "examples": [o.text for o in outs[:2]]})
    return rows


# ---------------------------------------------------------------- the report card section

def report_section(run, cfg) -> str | None:
    """Markdown for the report card: the embedding map and the divergence table."""
    stage = resolve_stage(run, None)
    if stage is None or not run.tokenizer_dir.exists():
        return None
    tokenizer, model, stage = load_for_sampling(run, stage)
    model.eval()
    run.report_dir.mkdir(parents=True, exist_ok=True)
    text = [f"## Inside the {stage} model", ""]
    if embedding_map(model, tokenizer, run.report_dir / "embeddings.png"):
        text += ["Token embeddings projected on their first two principal components (blue: words, green: "
                 "numbers, grey: other). Tokens that the model uses alike sit together.", "",
                 "![token embeddings](embeddings.png)", ""]
    prompt = "The"
    facts_path = run.world_dir / "facts.jsonl"
    if facts_path.exists():
        from .data.world import read_facts
        trained = [f for f in read_facts(facts_path) if not f.get("held_out")]
        prompt = trained[0]["prompt"] if trained else prompt
    rows = divergence(model, tokenizer, [tokenizer.bos_id] + tokenizer.encode(prompt), seed=cfg.run.seed,
                      max_new_tokens=min(24, cfg.generate.max_new_tokens))
    text += [f"### Divergence: one prompt, {rows[0]['samples']} samples per temperature", "",
             f"Prompt: **{prompt}**. *Distinct* is the share of different answers; *distance* the mean pairwise "
             "1 − Jaccard similarity of their token sets (0: all the same, 1: nothing shared).", "",
             "| temperature | distinct | distance | two of the answers |", "|---|---|---|---|"]
    for row in rows:
        examples = " / ".join(" ".join(e.split())[:60] for e in row["examples"]).replace("|", "\\|")
        text.append(f"| {row['temperature']} | {row['distinct']:.0%} | {row['mean_distance']:.2f} | {examples} |")
    return "\n".join(text)
