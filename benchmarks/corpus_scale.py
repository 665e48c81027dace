"""A generated web corpus in FineWeb's Parquet schema through collect, clean and the tokenizer:
peak memory of the whole process tree and documents per CPU-second per stage. A benchmark,
never a test (issue 21's bar: 1 GB with peak memory <= 1.5 GB).

    python benchmarks/corpus_scale.py --megabytes 1000 --work /tmp/corpus    # the bar's size
    python benchmarks/corpus_scale.py --megabytes 50 --workers 2             # a quick look

Documents are English prose made from templates and a word list (so they pass the language
and quality filters and are not duplicates), written as Parquet shards with FineWeb's columns
(text, id, dump, url, date, file_path, language, language_score, token_count). Then
`lmforge run --preset gpt2-124m-web --to tokenizer` runs on them as a real user would
(a subprocess); a sampler reads the resident memory of that process and all its children
from /proc every 0.2 s, and the peak of their sum is reported with each stage's rate from
its manifest.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NOUNS = ("river village teacher market winter garden engine library harbour forest bridge doctor student mountain "
         "kitchen letter window farmer city museum painter island factory season council railway castle orchard "
         "newspaper festival hospital canal quarry lighthouse bakery vineyard glacier theatre chapel monastery "
         "shipyard meadow tunnel observatory warehouse cathedral fortress lagoon printer weaver sailor miner "
         "merchant scholar architect surgeon gardener carpenter blacksmith fisherman shepherd poet composer").split()
VERBS = ("visits describes repairs follows crosses studies builds protects remembers explains paints watches "
         "measures sells borrows records questions admires replaces finds carries opens closes maps").split()
ADJS = ("old quiet busy narrow bright careful distant modern gentle famous northern small wooden crowded "
        "ancient empty noisy patient rural coastal").split()
TEMPLATES = [
    "The {a} {n1} {v} the {n2} near the {n3}.",
    "In {y}, a {a} {n1} from the {n2} {v} an {n3} for the first time.",
    "Nobody expected that the {n1} would {v0} the {a} {n2} before {y}.",
    "According to the {n1}, every {n2} in the {a} {n3} was built around {y}.",
    "Why does the {n1} keep the {n2} so {a}? Because the {n3} asked for it.",
    "After the {n1} had {v0} the {n2}, the {a} {n3} grew by {k} percent.",
    "Her {n1} said the {n2} was {a}, yet {k} people came to see it.",
]


def document(rng: np.random.Generator) -> str:
    paragraphs = []
    for _ in range(int(rng.integers(3, 7))):
        sentences = []
        for _ in range(int(rng.integers(4, 9))):
            n1, n2, n3 = rng.choice(NOUNS, 3)
            verb = str(rng.choice(VERBS))
            sentences.append(str(rng.choice(TEMPLATES)).format(
                a=rng.choice(ADJS), n1=n1, n2=n2, n3=n3, v=verb, v0=verb.removesuffix("es").removesuffix("s"),
                y=int(rng.integers(1500, 2025)), k=int(rng.integers(2, 900))))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


def write_corpus(folder: Path, megabytes: float, docs_per_file: int = 20_000, seed: int = 0) -> tuple[int, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    target, written, docs, file_index = megabytes * 1e6, 0, 0, 0
    while written < target:
        texts = [document(rng) for _ in range(docs_per_file)]
        written += sum(len(t) for t in texts)
        ids = [f"<urn:uuid:{seed}-{file_index}-{i}>" for i in range(len(texts))]
        table = pa.table({"text": texts, "id": ids, "dump": ["CC-MAIN-2024-10"] * len(texts),
                          "url": [f"https://example.org/{file_index}/{i}" for i in range(len(texts))],
                          "date": ["2024-02-21T00:00:00Z"] * len(texts),
                          "file_path": ["generated"] * len(texts), "language": ["en"] * len(texts),
                          "language_score": [0.95] * len(texts), "token_count": [len(t) // 4 for t in texts]})
        pq.write_table(table, folder / f"{file_index:05d}.parquet", compression="zstd")
        docs += len(texts)
        file_index += 1
    return docs, written


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=1000)
    parser.add_argument("--work", default="/tmp/lmforge-corpus-scale")
    parser.add_argument("--workers", type=int, default=0, help="clean.workers and tokenizer.workers (0 = cores)")
    parser.add_argument("--vocab-size", type=int, default=32768)
    args = parser.parse_args()
    work = Path(args.work)
    corpus = work / "corpus"
    started = time.perf_counter()
    if not corpus.exists():
        docs, chars = write_corpus(corpus, args.megabytes)
        print(f"wrote {docs:,} documents, {chars / 1e6:,.0f} MB of text in {time.perf_counter() - started:.0f}s")
    run_dir = work / "run"
    command = [sys.executable, "-m", "lmforge", "run", "--preset", "gpt2-124m-web", "--run-dir", str(run_dir),
               "--to", "tokenizer", f"collect.sources=[fineweb=parquet:{corpus}/*.parquet]",
               f"clean.workers={args.workers}", f"tokenizer.workers={args.workers}",
               f"tokenizer.vocab_size={args.vocab_size}", "run.estimate=false"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            time.sleep(0.2)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    _, stderr = proc.communicate()
    sampler.join()
    wall = time.perf_counter() - began
    if proc.returncode:
        sys.exit(f"lmforge run failed ({proc.returncode}):\n{stderr[-2000:]}")
    result = {"megabytes": args.megabytes, "wall_seconds": round(wall, 1), "peak_tree_rss_mb": round(peak[0], 1)}
    for stage in ("collect", "clean", "tokenizer"):
        manifest = json.loads((run_dir / "stages" / f"{stage}.json").read_text())
        metrics = manifest["metrics"]
        row = {"wall_seconds": manifest.get("wall_seconds"),
               "peak_rss_mb": manifest.get("peak_rss_mb") or metrics.get("peak_rss_mb")}
        if stage == "collect":
            row["documents"] = metrics["documents"]
        elif stage == "clean":
            row["kept"] = metrics["kept"]
            row["docs_per_cpu_second"] = {k: v.get("docs_per_second") for k, v in metrics["steps"].items()}
            row["removed"] = metrics["removed"]
        else:
            row["documents_per_cpu_second"] = metrics["documents_per_cpu_second"]
            row["train_tokens"] = metrics["train_tokens"]
        result[stage] = row
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
