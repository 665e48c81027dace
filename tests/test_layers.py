"""The package's structure, checked from its source: the import graph runs one way, and modules stay small.

Every import counts (top level, inside functions, under TYPE_CHECKING): a module may import only from its
own layer or a lower one, and no set of modules may import each other in a circle. The layer order is
declared once, here; docs/ARCHITECTURE.md draws the same map.

Run: pytest tests/test_layers.py -q
"""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lmforge"

# Bottom to top. A module belongs to the layer of the longest prefix that names it ("lmforge" alone
# is only the package's own __init__).
LAYERS = [
    ("base", ["lmforge", "lmforge.errors", "lmforge.files", "lmforge.progress", "lmforge.plugins", "lmforge.device",
              "lmforge.chat_format", "lmforge.head_loss", "lmforge.evals.stats", "lmforge.evals.card"]),
    ("config", ["lmforge.config"]),
    ("rundir", ["lmforge.rundir"]),
    ("world", ["lmforge.world"]),
    ("data", ["lmforge.data"]),
    ("tokenizer", ["lmforge.tokenizer"]),
    ("model", ["lmforge.model"]),
    ("tools", ["lmforge.tools"]),
    ("engine", ["lmforge.engine", "lmforge.checkpoints", "lmforge.speculative"]),
    ("scoring", ["lmforge.evals.judge", "lmforge.evals.overlap"]),
    ("tasks", ["lmforge.tasks"]),
    ("evals", ["lmforge.evals"]),
    ("train", ["lmforge.train"]),
    ("report", ["lmforge.evals.report", "lmforge.evals.headlines"]),
    ("app", ["lmforge.run", "lmforge.estimate", "lmforge.export", "lmforge.inspect", "lmforge.draft",
             "lmforge.chat", "lmforge.serve", "lmforge.cli", "lmforge.__main__"]),
]
MAX_LINES = 500
LONG_ALLOWED = set()    # word tables: data, not code


def layer_of(module: str) -> int | None:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if module == p or (p != "lmforge" and module.startswith(p + ".")):
                if best is None or len(p) > best[1]:
                    best = (i, len(p))
    return None if best is None else best[0]


def modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (f, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {}
    for name, (path, is_package) in mods.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # "from x import y" imports the module x.y when there is one, else a name from x
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                wanted = subs or [base]
            elif isinstance(node, ast.Import):
                wanted = [a.name for a in node.names]
            else:
                continue
            for target in wanted:
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_has_a_layer():
    assert len(modules()) > 50
    assert [m for m in modules() if layer_of(m) is None] == []


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_no_upward_imports():
    upward = []
    for source, targets in import_graph().items():
        for target in targets:
            if layer_of(target) > layer_of(source):
                upward.append(f"{source} ({LAYERS[layer_of(source)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})")
    assert sorted(upward) == []


def test_the_checker_sees_a_circle_and_an_upward_import():
    # the checks above must be able to fail
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert layer_of("lmforge.train.grpo") > layer_of("lmforge.model") > layer_of("lmforge.files")
    assert layer_of("lmforge.evals.report") > layer_of("lmforge.train.ppo") > layer_of("lmforge.evals.alignment")


def test_docs_name_only_paths_that_exist():
    # the map in docs/ARCHITECTURE.md (and the README) must stay true as files move
    def expand(path):
        m = re.search(r"\{([^{}]*)\}", path)
        if not m:
            return [path]
        return [p for alt in m.group(1).split(",") for p in expand(path[:m.start()] + alt.strip() + path[m.end():])]
    missing = []
    for doc in ("docs/ARCHITECTURE.md", "docs/DESIGN.md", "README.md"):
        for token in re.findall(r"`([^`\s]+)`", (ROOT / doc).read_text()):
            token = token.split("::")[0].rstrip(".,:;")
            if re.match(r"^(lmforge|tests|benchmarks|docs)/[\w/{},.\-]*$", token):
                missing += [f"{doc}: {p}" for p in expand(token) if not (ROOT / p.rstrip("/")).exists()]
    assert missing == []


def test_modules_are_short_and_say_their_job():
    long, silent = [], []
    for name, (path, _) in modules().items():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES and name not in LONG_ALLOWED:
            long.append(f"{name}: {lines} lines")
        if path.stat().st_size and not ast.get_docstring(ast.parse(path.read_text())):
            silent.append(name)
    assert long == [] and silent == []
