"""The report card's "Inside the model" section: a 2-D map of the token embeddings and how far
sampled answers to one prompt spread with the temperature.

    from lmforge.evals.inside import embedding_map, divergence, report_section
    embedding_map(model, tokenizer, "report/embeddings.png")
    rows = divergence(model, tokenizer, prompt_ids, temperatures=(0.3, 0.7, 1.0, 1.5), samples=16)

`divergence` samples one prompt many times at several temperatures and measures how far
the answers spread: the share of distinct answers and the mean pairwise distance
(1 - Jaccard similarity of the answers' token sets), 0 when every answer is the same.
"""
from __future__ import annotations

import itertools

import torch

from ..world import read_facts
from ..checkpoints import load_for_sampling, resolve_stage
from ..engine import generate


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
