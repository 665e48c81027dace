"""A generated web corpus in FineWeb's Parquet schema through collect, clean and the tokenizer:
peak memory of the whole process tree and documents per CPU-second per stage. A benchmark,
never a test (issue 21's bar: 1 GB with peak memory <= 1.5 GB).

    python benchmarks/corpus_scale.py --megabytes 1000 --work /tmp/corpus    # the bar's size
    python benchmarks/corpus_scale.py --megabytes 50 --workers 2             # a quick look

Documents are English prose made from templates and a word list (so they pass the language
and quality filters and are not duplicates), written as Parquet shards with FineWeb's columns
(text, id, dump, url, date, file_path, language, language_score, token_count). Then
`lmforge run --preset gpt2-124m-web --to tokenizer` runs on them as a real user would
(a subprocess, its progress lines in <work>/run.log); every 0.2 s a sampler reads from /proc
the memory of that process and all its children and which stage is running (the manifest
that says "running"). It reports, overall and per stage, the peak of the tree's summed RSS
(shared pages counted once per process that maps them: a forked pool shares its parent's
pages, so this overstates), of its summed PSS (each shared page divided among the processes
that map it: what the tree really occupies), of the stage process alone, and the process
count; then each stage's documents per CPU-second from its manifest.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
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


def tree_pids(root: int) -> list[int]:
    """A process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += children.get(pid, [])
    return pids


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process in MB. RSS counts every page it maps, shared or not, so summing it
    over a forked pool counts the shared pages once per process; PSS divides each shared page
    among the processes that map it, so PSS sums to what the tree really occupies."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:              # the process ended between listing and reading
        pass
    return rss / 1024, pss / 1024


def running_stage(run_dir: Path) -> str:
    """The stage whose manifest says running (rundir writes it at the start), else "between"."""
    for path in sorted((run_dir / "stages").glob("*.json")):
        try:
            if json.loads(path.read_text()).get("status") == "running":
                return path.stem
        except (OSError, ValueError):
            pass
    return "between"


class TreeSampler(threading.Thread):
    """Samples the process tree every `every` seconds and keeps, overall and per stage, the
    peaks of its summed RSS and summed PSS, of the stage process alone, and the process count."""

    def __init__(self, proc: subprocess.Popen, run_dir: Path, every: float = 0.2):
        super().__init__(daemon=True)
        self.proc, self.run_dir, self.every = proc, run_dir, every
        self.stages: dict[str, dict] = {}

    def run(self) -> None:
        while self.proc.poll() is None:
            pids = tree_pids(self.proc.pid)
            stage = running_stage(self.run_dir)
            sizes = [memory_mb(pid) for pid in pids]
            now = {"rss_sum_mb": sum(r for r, _ in sizes), "pss_sum_mb": sum(p for _, p in sizes),
                   "stage_process_rss_mb": sizes[0][0], "processes": len(pids)}
            peak = self.stages.setdefault(stage, dict.fromkeys(now, 0))
            for key, value in now.items():
                peak[key] = round(max(peak[key], value), 1)
            time.sleep(self.every)

    def peak(self, key: str) -> tuple[float, str]:
        """The highest value of `key` over the run and the stage that set it."""
        stage = max(self.stages, key=lambda s: self.stages[s][key], default="none")
        return (self.stages[stage][key] if self.stages else 0.0), stage


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
    shutil.rmtree(run_dir, ignore_errors=True)      # every stage runs: none is skipped as up to date
    run_dir.mkdir(parents=True)
    command = [sys.executable, "-m", "lmforge", "run", "--preset", "gpt2-124m-web", "--run-dir", str(run_dir),
               "--to", "tokenizer", f"collect.sources=[fineweb=parquet:{corpus}/*.parquet]",
               f"clean.workers={args.workers}", f"tokenizer.workers={args.workers}",
               f"tokenizer.vocab_size={args.vocab_size}", "run.estimate=false"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = work / "run.log"                           # the stages' progress lines, to follow a long run
    began = time.perf_counter()
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        sampler = TreeSampler(proc, run_dir)
        sampler.start()
        proc.wait()
        sampler.join()
    wall = time.perf_counter() - began
    if proc.returncode:
        sys.exit(f"lmforge run failed ({proc.returncode}):\n{log.read_text()[-2000:]}")
    result = {"command": " ".join(sys.argv), "megabytes": args.megabytes,
              "corpus_files_mb": round(sum(f.stat().st_size for f in corpus.glob("*.parquet")) / 1e6, 1),
              "workers": args.workers or os.cpu_count(), "wall_seconds": round(wall, 1)}
    for key in ("rss_sum_mb", "pss_sum_mb"):
        value, stage = sampler.peak(key)
        result[f"peak_{key}"] = {"mb": value, "stage": stage}
    result["peaks_by_stage"] = sampler.stages
    for stage in ("collect", "clean", "tokenizer"):
        manifest = json.loads((run_dir / "stages" / f"{stage}.json").read_text())
        metrics = manifest["metrics"]
        row = {"wall_seconds": manifest.get("wall_seconds")}
        if stage == "collect":
            row["documents"] = metrics["documents"]
        elif stage == "clean":
            row["kept"] = metrics["kept"]
            row["docs_per_cpu_second"] = {k: v.get("docs_per_second") for k, v in metrics["steps"].items()}
            row["removed"] = metrics["removed"]
            row["peak_rss_mb"] = metrics.get("peak_rss_mb")      # each process's own high-water mark
        else:
            row["bpe_documents_per_cpu_second"] = metrics.get("bpe_documents_per_cpu_second")
            row["documents_per_cpu_second"] = metrics["documents_per_cpu_second"]
            row["train_tokens"] = metrics["train_tokens"]
        result[stage] = row
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
