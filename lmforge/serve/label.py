"""`lmforge label`: people label preference items in a web page or in the terminal.

    lmforge label --run-dir runs/tiny [--stage sft] [--host 127.0.0.1] [--port 8100] [--password-file F]
    open http://127.0.0.1:8100/          # the labeling page (static/label.html, label.js, label.css)
    lmforge label --run-dir runs/tiny --terminal

The items are datasets/label_items.jsonl, written by the `preferences` stage: a prompt and
N sampled answers each. When the file is missing, the model of `--stage` (default sft)
samples them here (tasks/preferences.py:build_items), so a person can label before any
automatic run. For each item a person picks the best answer, ranks all of them (ties
allowed) or gives each a thumbs up or down, or skips it. The label becomes preference
pairs at once (pairs_from_ranking: best > each other; rank groups in order; each up >
each down), appended and fsynced to datasets/preferences.jsonl with "source": "human" and
"label": "best" | "rank" | "thumbs". Every decision, skips and labels that give no pair
(all thumbs up) included, is also appended to datasets/label_log.jsonl with the raw label,
so a restart resumes at the first item with neither; the `preferences` stage keeps human
rows when it runs again (it rewrites the file under the same lock the appends take).

HTTP API (candidate indices are 0-based; the page and the terminal show them from 1):
    GET  /label/next           {"item": {"id", "prompt", "candidates": [{"text", "ended"}]} | null, "progress"}
    POST /label/{item_id}      {"kind": "best", "best": 2}
                               {"kind": "rank", "ranking": [[1], [0, 2], [3]]}   best group first
                               {"kind": "thumbs", "thumbs": ["up", "down", null, "up"]}
                               {"kind": "skip"}
                            -> {"item", "label", "pairs", "progress"}
    GET  /health, GET / (the page), GET /static/* (its script and style)
Ground truth (known, value, entity, ...) never leaves the server. Errors are api.py's
JSON errors and write nothing: an unknown item is 404, an item already labeled 409, a
malformed body or an out-of-range index 400.

The app has no login of its own unless --password is given, so other web pages the
labeller visits must not be able to write labels (cross-site request forgery) or read the
page through a name that resolves to 127.0.0.1 (DNS rebinding). guard.py's middleware
checks, from the headers and before reading any body: the Host is a loopback name (when
bound to loopback); the password, when there is one (HTTP Basic, any user name; /health
answers only {"status": "ok"} without it); and for a write (any method but GET and HEAD),
an Origin, when sent, equal to the page's own, `Content-Type: application/json`, and the
header `X-Label-Token` equal to the random token of this process, which the page carries in
a meta tag. A form or a "simple" cross-site request can do neither of the last two.
"""
import json
import secrets
import sys
import threading
import time
from pathlib import Path

from ..tasks.preferences import append_rows, labeled_items, pairs_from_ranking

KINDS = ("best", "rank", "thumbs", "skip")
TERMINAL_HELP = ("answer with: 2 (the best answer), 2>1=3>4 (a ranking of all, = for ties), "
                 "+-.+ (thumbs up / down / no opinion, one per answer), s (skip), q (quit)")


class LabelError(ValueError):
    """A label that cannot be taken; `status` is the HTTP status the server answers with."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def _is_index(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def ranking_from_label(label, n: int) -> list[list[int]]:
    """Check one label (the POST body) for an item with n answers; its ranking (groups of
    candidate indices, best first) for pairs_from_ranking. LabelError(400) says what is wrong."""
    if not isinstance(label, dict):
        raise LabelError(400, "the body must be a JSON object with a \"kind\"", None, "bad_label")
    kind = label.get("kind")
    if kind not in KINDS:
        raise LabelError(400, f"kind must be one of {', '.join(KINDS)}", "kind", "bad_label")
    if kind == "skip":
        return []
    if kind == "best":
        best = label.get("best")
        if not _is_index(best) or not 0 <= best < n:
            raise LabelError(400, f"best must be a candidate index from 0 to {n - 1}", "best", "bad_label")
        return [[best], [i for i in range(n) if i != best]]
    if kind == "rank":
        ranking = label.get("ranking")
        if not isinstance(ranking, list) or not all(isinstance(g, list) and g for g in ranking) \
                or not all(_is_index(i) for g in ranking for i in g):
            raise LabelError(400, "ranking must be a list of non-empty lists of candidate indices", "ranking",
                             "bad_label")
        if sorted(i for g in ranking for i in g) != list(range(n)):
            raise LabelError(400, f"ranking must place every candidate index from 0 to {n - 1} exactly once",
                             "ranking", "bad_label")
        return ranking
    thumbs = label.get("thumbs")
    if not isinstance(thumbs, list) or len(thumbs) != n or any(t not in ("up", "down", None) for t in thumbs):
        raise LabelError(400, f"thumbs must list {n} values, each \"up\", \"down\" or null", "thumbs", "bad_label")
    return [[i for i, t in enumerate(thumbs) if t == "up"], [i for i, t in enumerate(thumbs) if t == "down"]]


def _usable(item) -> bool:
    """An item a person can label: an id, a prompt and at least two answers with text."""
    return (isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("prompt"), list)
            and isinstance(item.get("candidates"), list) and len(item["candidates"]) >= 2
            and all(isinstance(c, dict) and isinstance(c.get("text"), str) for c in item["candidates"]))


class Labeler:
    """The items, what is already labeled, and `submit`, which writes a label; shared by the
    web page and the terminal. Thread-safe: one label is written at a time."""

    def __init__(self, items: list[dict], preferences_path: Path, log_path: Path):
        self.bad_items = sum(not _usable(item) for item in items)    # reported by `lmforge label`, never shown
        items = [item for item in items if _usable(item)]
        self.items = {item["id"]: item for item in items}
        self.order = list(self.items)
        self.preferences_path, self.log_path = Path(preferences_path), Path(log_path)
        self.lock = threading.Lock()
        # id -> label kind; human pairs without a log row (written by hand) count as labeled
        self.done: dict[str, str] = {i: "labeled" for i in labeled_items(self.preferences_path, "human")}
        if self.log_path.exists():
            for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue    # a partial last line from a crash
                if isinstance(row, dict) and isinstance(row.get("item"), str):
                    self.done[row["item"]] = str(row.get("label", "labeled"))
        self.pairs_written = 0

    def progress(self) -> dict:
        decided = [self.done[i] for i in self.order if i in self.done]
        skipped = sum(kind == "skip" for kind in decided)
        return {"labeled": len(decided) - skipped, "skipped": skipped, "total": len(self.order),
                "remaining": len(self.order) - len(decided), "pairs_this_session": self.pairs_written}

    def next_item(self) -> dict | None:
        """The first undecided item as a person sees it: prompt and answers, no ground truth."""
        for item_id in self.order:
            if item_id not in self.done:
                item = self.items[item_id]
                return {"id": item_id, "prompt": item["prompt"],
                        "candidates": [{"text": c["text"], "ended": bool(c.get("ended", True))}
                                       for c in item["candidates"]]}
        return None

    def submit(self, item_id: str, label) -> dict:
        """Check the label, append its pairs and its log row (each fsynced), mark the item done."""
        with self.lock:
            item = self.items.get(item_id)
            if item is None:
                raise LabelError(404, f"no item {item_id!r} in the label items", "item_id", "item_not_found")
            if item_id in self.done:
                raise LabelError(409, f"item {item_id!r} is already labeled ({self.done[item_id]})", "item_id",
                                 "already_labeled")
            ranking = ranking_from_label(label, len(item["candidates"]))
            kind = label["kind"]
            rows = pairs_from_ranking(item, ranking, "human", label=kind) if ranking else []
            if rows:
                append_rows(self.preferences_path, rows)
            log = {"item": item_id, "label": kind, "pairs": len(rows), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            if kind != "skip":
                log["ranking"] = ranking
            append_rows(self.log_path, [log])
            self.done[item_id] = kind
            self.pairs_written += len(rows)
            return {"item": item_id, "label": kind, "pairs": len(rows), "progress": self.progress()}


def labeler_for(run) -> Labeler:
    datasets = run.path("datasets")
    from ..files import read_jsonl
    return Labeler(read_jsonl(datasets / "label_items.jsonl"), datasets / "preferences.jsonl",
                   datasets / "label_log.jsonl")


def ensure_items(run, cfg, stage: str = "sft", out=sys.stdout) -> Path:
    """datasets/label_items.jsonl, sampled now with the `stage` model when it does not exist."""
    path = run.path("datasets", "label_items.jsonl")
    if path.exists():
        return path
    from ..tasks.preferences import build_items
    from ..files import atomic_write_jsonl
    from ..checkpoints import load_for_sampling
    tokenizer, model, stage = load_for_sampling(run, stage)
    print(f"{path} does not exist: sampling {cfg.preferences.prompts} prompts x {cfg.preferences.candidates} answers "
          f"with the {stage} model", file=out, flush=True)
    items, _ = build_items(run, cfg, model.eval(), tokenizer, cfg.world.languages)
    atomic_write_jsonl(path, items)
    return path


# ---------------------------------------------------------------- the web page

# a label is a few hundred bytes; the page fetches nothing slow
MAX_BODY_BYTES = 64 * 1024
READ_TIMEOUT_S = 30.0
TOKEN_HEADER = b"x-label-token"


def label_check(token: str, host: str, password: str):
    """The header checks of the module docstring, in that order, as a Guard `check`."""
    from .guard import Refusal, basic_password_matches, header, host_name, is_loopback, secret_matches
    loopback_only = is_loopback(host)

    def check(scope) -> None:
        if loopback_only and not is_loopback(host_name(header(scope, b"host"))):
            raise Refusal(403, "this labeling server answers only to localhost / 127.0.0.1 (Host header)",
                          "host_not_allowed", "permission_error")
        if password and scope["path"] != "/health" and not basic_password_matches(scope, password):
            raise Refusal(401, "this labeling server needs its password", "invalid_password", "authentication_error",
                          [(b"www-authenticate", b'Basic realm="lmforge label", charset="UTF-8"')])
        if scope["method"] in ("GET", "HEAD"):
            return None
        origin = header(scope, b"origin")
        if origin is not None and origin != f"{scope['scheme']}://".encode() + (header(scope, b"host") or b""):
            raise Refusal(403, "cross-origin writes are refused (Origin is not this page's)", "cross_origin",
                          "permission_error")
        media_type = (header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if media_type != b"application/json":
            raise Refusal(415, "a label must be sent as Content-Type: application/json", "unsupported_media_type")
        if not secret_matches(header(scope, TOKEN_HEADER), token):
            raise Refusal(403, "missing or wrong X-Label-Token (reload the page: the server has restarted)",
                          "invalid_token", "permission_error")
        return None
    return check


def create_label_app(labeler: Labeler, host: str = "127.0.0.1", password: str = ""):
    """The FastAPI app of the labeling page as bound to `host`; errors are api.py's JSON errors."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    from .api import STATIC_DIR, APIError, add_error_handlers
    from .guard import Guard, basic_password_matches

    token = secrets.token_urlsafe(32)
    page_html = (STATIC_DIR / "label.html").read_text(encoding="utf-8").replace("{{LABEL_TOKEN}}", token)
    app = FastAPI(title="lmforge label", version="1", description="Preference labeling for lmforge.",
                  docs_url=None, redoc_url=None)
    app.state.labeler, app.state.token, app.state.read_timeout_s = labeler, token, READ_TIMEOUT_S
    add_error_handlers(app)
    app.add_middleware(Guard, max_body_bytes=MAX_BODY_BYTES, read_timeout_s=READ_TIMEOUT_S,
                       check=label_check(token, host, password))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        # not cached: a page kept from before a restart would carry a stale token
        return HTMLResponse(page_html, headers={"Cache-Control": "no-store"})

    @app.get("/health")
    async def health(request: Request):
        if password and not basic_password_matches(request.scope, password):
            return {"status": "ok"}
        return {"status": "ok", "progress": labeler.progress()}

    @app.get("/label/next")
    async def next_item():
        return {"item": labeler.next_item(), "progress": labeler.progress()}

    @app.post("/label/{item_id}")
    async def submit(item_id: str, request: Request):
        raw = await request.body()
        try:
            label = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise APIError(400, f"the body is not valid JSON ({err})", None, "json_invalid") from None
        try:
            return labeler.submit(item_id, label)
        except LabelError as err:
            raise APIError(err.status, err.message, err.param, err.code) from None

    return app


# ---------------------------------------------------------------- the terminal

def parse_answer(text: str, n: int):
    """One terminal line -> "quit", "help", or a label dict (checked by ranking_from_label)."""
    text = text.strip().replace(" ", "")
    if text.lower() in ("q", "quit", "exit"):
        return "quit"
    if text in ("", "?", "h", "help"):
        return "help"
    if text.lower() == "s":
        return {"kind": "skip"}
    if text.isdigit():
        return {"kind": "best", "best": int(text) - 1}
    if text and set(text) <= set("+-."):
        return {"kind": "thumbs", "thumbs": [{"+": "up", "-": "down"}.get(ch) for ch in text]}
    if ">" in text or "=" in text:
        groups = [group.split("=") for group in text.split(">")]
        if all(part.isdigit() for group in groups for part in group):
            return {"kind": "rank", "ranking": [[int(part) - 1 for part in group] for group in groups]}
    raise LabelError(400, f"cannot read {text!r}")


def label_terminal(labeler: Labeler, read=input, out=sys.stdout) -> int:
    """Show each undecided item, read a label, write it. q, Ctrl-C or end of input leave;
    every label given so far is already on disk."""
    def say(text=""):
        print(text, file=out, flush=True)
    say(TERMINAL_HELP)
    try:
        while (item := labeler.next_item()) is not None:
            progress = labeler.progress()
            say(f"\n--- {progress['labeled']} labeled, {progress['skipped']} skipped, {progress['total']} items "
                f"--- item {item['id']}")
            for message in item["prompt"]:
                say(f"[{message['role']}] {message['content']}")
            for index, candidate in enumerate(item["candidates"], 1):
                say(f"  {index}. {candidate['text']}" + ("" if candidate["ended"] else "  [cut off]"))
            while True:
                try:
                    answer = parse_answer(read("label> "), len(item["candidates"]))
                    if answer == "quit":
                        return _leave(labeler, say)
                    if answer == "help":
                        say(TERMINAL_HELP)
                        continue
                    result = labeler.submit(item["id"], answer)
                except LabelError as err:
                    say(f"  {err.message}; {TERMINAL_HELP}")
                    continue
                say(f"  {result['label']}: {result['pairs']} pairs written")
                break
        say("\nevery item is labeled")
        return _leave(labeler, say)
    except (EOFError, KeyboardInterrupt):
        say()
        return _leave(labeler, say)


def _leave(labeler: Labeler, say) -> int:
    progress = labeler.progress()
    say(f"{progress['labeled']} of {progress['total']} items labeled ({progress['skipped']} skipped), "
        f"{progress['pairs_this_session']} pairs written this session to {labeler.preferences_path}")
    return 0


# ---------------------------------------------------------------- `lmforge label`

def cli_label(args, run, cfg) -> int:
    from .guard import is_loopback, read_secret
    host = args.host if args.host is not None else cfg.preferences.host
    port = args.port if args.port is not None else cfg.preferences.port
    password = "" if args.terminal else read_secret(args.password or "", args.password_file or "",
                                                     "LMFORGE_LABEL_PASSWORD", "password")
    if not args.terminal and not password and not is_loopback(host):
        print(f"lmforge label: refusing to serve on {host} (reachable from other machines) without a password; "
              "give --password-file FILE or set LMFORGE_LABEL_PASSWORD", file=sys.stderr)
        return 2
    ensure_items(run, cfg, args.stage or "sft")
    labeler = labeler_for(run)
    if labeler.bad_items:
        print(f"{labeler.bad_items} items without an id, a prompt or two answers are left out", flush=True)
    if args.terminal:
        return label_terminal(labeler)
    import uvicorn

    from .guard import limit_heap_fragmentation, uvicorn_config
    progress = labeler.progress()
    print(f"labeling {progress['total']} items ({progress['remaining']} to go) at http://{host}:{port}/"
          f"{' (password required)' if password else ''}; pairs go to {labeler.preferences_path}", flush=True)
    limit_heap_fragmentation()
    uvicorn.Server(uvicorn_config(create_label_app(labeler, host, password), host, port)).run()
    return 0
