"""Do two run folders hold the same results? Compares every stage manifest's metrics, timing left out.

    python benchmarks/same_metrics.py RUN_A RUN_B      # prints each differing value; exit 1 if any

Used to show that a change which should not alter behaviour (a refactor) does not: run
`lmforge run --preset micro --run-dir A` before and `... --run-dir B` after, at the same seed, then
compare. Left out: any key that names a time, a rate per second, memory or the bf16 probe, and text
that quotes milliseconds (the precision line); paths are compared as "<path>".
"""
import json
import re
import sys
from pathlib import Path

TIMING = re.compile(r"(second|_ms$|^ms$|per_s|started_at|finished_at|time|eta|estimate|probe|elapsed|wall|speed|"
                    r"throughput|docs_per|rss|memory|_at$)", re.I)


def strip(value):
    """The value without its timing keys; timing text and absolute paths replaced by placeholders."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if not TIMING.search(k)}
    if isinstance(value, list):
        return [strip(v) for v in value]
    if isinstance(value, str) and re.search(r"\d ms\b", value):
        return "<timing text>"
    if isinstance(value, str) and value.startswith("/"):
        return "<path>"
    return value


def flat(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flat(v, f"{prefix}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from flat(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def metrics(manifest: Path) -> dict:
    return dict(flat(strip(json.loads(manifest.read_text()).get("metrics", {}))))


def main(a: Path, b: Path) -> int:
    names = sorted({p.name for p in (a / "stages").glob("*.json")} | {p.name for p in (b / "stages").glob("*.json")})
    compared = differ = 0
    for name in names:
        if not (a / "stages" / name).exists() or not (b / "stages" / name).exists():
            print(f"{name}: only in {a if (a / 'stages' / name).exists() else b}")
            differ += 1
            continue
        ma, mb = metrics(a / "stages" / name), metrics(b / "stages" / name)
        for key in sorted(set(ma) | set(mb)):
            compared += 1
            if ma.get(key, "<absent>") != mb.get(key, "<absent>"):
                differ += 1
                print(f"{Path(name).stem}{key}: {ma.get(key, '<absent>')!r} != {mb.get(key, '<absent>')!r}")
    print(f"{compared} metric values compared, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
