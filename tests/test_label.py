"""Tests for `lmforge label` (lmforge/serve/label.py): the HTTP API on a real uvicorn server,
the page in headless Chromium, the terminal mode, resume, and bad input that writes nothing.
No model: the label items are written by hand into a temporary run folder."""
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lmforge.tasks.preferences import load_pairs
from lmforge.rundir import RunDir
from lmforge.serve.label import ensure_items, label_terminal, labeler_for, parse_answer

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"

ITEMS = [
    {"id": "a" * 12, "prompt": [{"role": "user", "content": "Where was Ada Berg born?"}],
     "candidates": [{"text": "In Oslo.", "ended": True}, {"text": "In Bergen.", "ended": True},
                    {"text": "I don't know.", "ended": True}, {"text": "Ada Berg was born in the town of", "ended": False}],
     "known": True, "value": "Oslo", "entity": "Ada Berg", "attribute": "birthplace", "language": "en"},
    {"id": "b" * 12, "prompt": [{"role": "user", "content": "Who founded Zorvik?"}],
     "candidates": [{"text": "Nobody knows.", "ended": True}, {"text": "Karl Zorvik.", "ended": True},
                    {"text": "I don't know who that is.", "ended": True}],
     "known": False, "value": None, "entity": "Zorvik", "attribute": "founder", "language": "en"},
    {"id": "c" * 12, "prompt": [{"role": "user", "content": "Hvor ble Ola født?"}],
     "candidates": [{"text": "I Tromsø.", "ended": True}, {"text": "I Bodø.", "ended": True}],
     "known": True, "value": "Tromsø", "entity": "Ola", "attribute": "birthplace", "language": "no"},
]


def make_run(tmp_path) -> RunDir:
    run = RunDir(tmp_path / "run")
    path = run.path("datasets", "label_items.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item) + "\n" for item in ITEMS), encoding="utf-8")
    return run


def files(run: RunDir) -> tuple[Path, Path]:
    return run.path("datasets", "preferences.jsonl"), run.path("datasets", "label_log.jsonl")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def check_pairs(run: RunDir, expected: int) -> list[dict]:
    prefs, _ = files(run)
    pairs, skipped = load_pairs(prefs)
    assert len(pairs) == expected and not skipped
    rows = read_rows(prefs)
    assert all(r["source"] == "human" and r["label"] in ("best", "rank", "thumbs") for r in rows)
    return rows


# ---------------------------------------------------------------- labels -> pairs, no server

def test_labels_become_pairs(tmp_path):
    run = make_run(tmp_path)
    labeler = labeler_for(run)
    assert labeler.submit("a" * 12, {"kind": "best", "best": 0})["pairs"] == 3
    # rank with a tie: 2 > 0 = 1 gives two pairs, none inside the tie
    assert labeler.submit("b" * 12, {"kind": "rank", "ranking": [[2], [0, 1]]})["pairs"] == 2
    assert labeler.submit("c" * 12, {"kind": "thumbs", "thumbs": ["up", "down"]})["pairs"] == 1
    rows = check_pairs(run, 6)
    assert {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows if r["item"] == "a" * 12} == {
        ("In Oslo.", "In Bergen."), ("In Oslo.", "I don't know."), ("In Oslo.", "Ada Berg was born in the town of")}
    cut = next(r for r in rows if r["rejected"][0]["content"].endswith("town of"))
    assert cut["rejected_ended"] is False and cut["chosen_ended"] is True
    assert labeler.next_item() is None
    assert labeler.progress() == {"labeled": 3, "skipped": 0, "total": 3, "remaining": 0, "pairs_this_session": 6}
    assert [r["label"] for r in read_rows(files(run)[1])] == ["best", "rank", "thumbs"]


def test_parse_terminal_answers():
    assert parse_answer("2", 4) == {"kind": "best", "best": 1}
    assert parse_answer("2>1=3>4", 4) == {"kind": "rank", "ranking": [[1], [0, 2], [3]]}
    assert parse_answer("+-.+", 4) == {"kind": "thumbs", "thumbs": ["up", "down", None, "up"]}
    assert parse_answer(" s ", 4) == {"kind": "skip"} and parse_answer("q", 4) == "quit"


# ---------------------------------------------------------------- the HTTP API on a real server

def serving(labeler, **options):
    # importing tests.test_serve skips the test when the serving extras are missing
    from lmforge.serve.label import create_label_app
    from tests.test_serve import serve_in_thread
    return serve_in_thread(create_label_app(labeler, **options))


def page_token(url, **kwargs) -> str:
    """The write token, read from the page as the page's own script reads it."""
    import httpx
    html = httpx.get(url + "/", **kwargs).text
    return re.search(r'<meta name="label-token" content="([^"]+)">', html).group(1)


def page_client(url, **kwargs):
    """An HTTP client that writes like the page: with the page's token."""
    import httpx
    return httpx.Client(base_url=url, headers={"X-Label-Token": page_token(url, **kwargs)}, **kwargs)


def test_http_api(tmp_path):
    pytest.importorskip("httpx")
    run = make_run(tmp_path)
    prefs, log = files(run)
    with serving(labeler_for(run)) as url, page_client(url) as c:
        first = c.get("/label/next").json()
        assert first["progress"]["total"] == 3 and first["progress"]["labeled"] == 0
        item = first["item"]
        assert item["id"] == "a" * 12 and set(item) == {"id", "prompt", "candidates"}   # no ground truth
        assert item["candidates"][3] == {"text": "Ada Berg was born in the town of", "ended": False}

        # bad input: a JSON error, nothing written, the server keeps serving
        bad = [("zzz", {"kind": "best", "best": 0}, 404), ("a" * 12, "not json", 400),
               ("a" * 12, {"kind": "best", "best": 4}, 400), ("a" * 12, {"kind": "best", "best": -1}, 400),
               ("a" * 12, {"kind": "best", "best": True}, 400), ("a" * 12, {"kind": "best", "best": "1"}, 400),
               ("a" * 12, {"kind": "rank", "ranking": [[0], [1, 2]]}, 400),
               ("a" * 12, {"kind": "rank", "ranking": [[0], [1, 2, 3, 3]]}, 400),
               ("a" * 12, {"kind": "rank", "ranking": [[0, 1, 2, 3], []]}, 400),
               ("a" * 12, {"kind": "thumbs", "thumbs": ["up", "down"]}, 400),
               ("a" * 12, {"kind": "thumbs", "thumbs": ["up", "meh", None, None]}, 400),
               ("a" * 12, {"kind": "vote"}, 400), ("a" * 12, [1, 2], 400)]
        for item_id, body, status in bad:
            content = body if isinstance(body, str) else json.dumps(body)
            response = c.post(f"/label/{item_id}", content=content, headers={"Content-Type": "application/json"})
            assert response.status_code == status, (item_id, body, response.text)
            assert response.json()["error"]["message"]
        assert c.get("/no/such/page").status_code == 404
        assert not prefs.exists() and not log.exists()

        result = c.post(f"/label/{'a' * 12}", json={"kind": "best", "best": 1}).json()
        assert result["pairs"] == 3 and result["progress"]["labeled"] == 1
        assert c.post(f"/label/{'a' * 12}", json={"kind": "skip"}).status_code == 409
        assert c.get("/label/next").json()["item"]["id"] == "b" * 12
    check_pairs(run, 3)

    # restart: labeled items are not shown again; a skip and a label without pairs count as decided
    with serving(labeler_for(run)) as url, page_client(url) as c:
        assert c.get("/label/next").json()["item"]["id"] == "b" * 12
        assert c.post(f"/label/{'b' * 12}", json={"kind": "skip"}).json()["pairs"] == 0
        result = c.post(f"/label/{'c' * 12}", json={"kind": "thumbs", "thumbs": ["up", "up"]}).json()
        assert result["pairs"] == 0
        assert c.get("/label/next").json()["item"] is None
    labeler = labeler_for(run)
    assert labeler.next_item() is None
    assert labeler.progress() == {"labeled": 2, "skipped": 1, "total": 3, "remaining": 0, "pairs_this_session": 0}
    check_pairs(run, 3)
    assert [(r["item"], r["label"], r["pairs"]) for r in read_rows(log)] == [
        ("a" * 12, "best", 3), ("b" * 12, "skip", 0), ("c" * 12, "thumbs", 0)]


def test_cross_site_writes_are_refused_and_write_nothing(tmp_path):
    httpx = pytest.importorskip("httpx")
    run = make_run(tmp_path)
    prefs, log = files(run)
    with serving(labeler_for(run)) as url:
        page = httpx.get(url + "/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff" and page.headers["cache-control"] == "no-store"
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) and " style=" not in page.text
        token, port = page_token(url), url.rsplit(":", 1)[1]
        label = json.dumps({"kind": "best", "best": 0})
        good = {"Content-Type": "application/json", "X-Label-Token": token}
        refused = [
            ({**good, "Origin": "http://evil.example"}, 403, "cross_origin"),
            ({**good, "Origin": "null"}, 403, "cross_origin"),                    # a sandboxed frame, a file
            ({**good, "Origin": f"http://localhost:{port}"}, 403, "cross_origin"),   # another origin, same host
            ({"Content-Type": "application/json"}, 403, "invalid_token"),
            ({**good, "X-Label-Token": "guess"}, 403, "invalid_token"),
            ({**good, "Content-Type": "text/plain"}, 415, "unsupported_media_type"),       # what a form can send
            ({**good, "Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
            ({**good, "Host": f"evil.example:{port}"}, 403, "host_not_allowed"),       # DNS rebinding
        ]
        for headers, status, code in refused:
            response = httpx.post(f"{url}/label/{'a' * 12}", content=label, headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), (headers, response.text)
        # through a rebound name the page (and its token) cannot be read either
        assert httpx.get(url + "/", headers={"Host": f"evil.example:{port}"}).status_code == 403
        assert not prefs.exists() and not log.exists()
        # the same write from the page's own origin, with its token, is taken
        assert httpx.post(f"{url}/label/{'a' * 12}", content=label, headers={**good, "Origin": url}).status_code == 200
    check_pairs(run, 3)


def test_password(tmp_path):
    httpx = pytest.importorskip("httpx")
    run = make_run(tmp_path)
    with serving(labeler_for(run), password="open sesame") as url:
        for auth in (None, ("anyone", "wrong")):
            response = httpx.get(url + "/", auth=auth)
            assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic")
        assert httpx.get(url + "/health").json() == {"status": "ok"}    # no progress without the password
        auth = ("anyone", "open sesame")
        with page_client(url, auth=auth) as c:
            assert c.get("/health").json()["progress"]["total"] == 3
            assert c.post(f"/label/{'a' * 12}", json={"kind": "skip"}).status_code == 200
        # the password does not stand in for the token
        assert httpx.post(f"{url}/label/{'b' * 12}", json={"kind": "skip"}, auth=auth).status_code == 403


def test_a_non_loopback_bind_without_a_password_is_refused_with_one_line(tmp_path):
    run = make_run(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "LMFORGE_LABEL_PASSWORD"}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for args, message in ((["--host", "0.0.0.0"], "refusing to serve on 0.0.0.0"),
                          (["--host", "192.168.1.10", "--password-file", str(tmp_path / "missing")],
                           "cannot read the password file")):
        proc = subprocess.run([sys.executable, "-m", "lmforge", "label", "--run-dir", str(run.root), *args],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_resume_survives_a_torn_last_line(tmp_path):
    run = make_run(tmp_path)
    labeler_for(run).submit("a" * 12, {"kind": "best", "best": 2})
    prefs, log = files(run)
    for path in (prefs, log):      # a crash in the middle of the next write
        with open(path, "a", encoding="utf-8") as f:
            f.write('{"item": "bbbb')
    assert labeler_for(run).next_item()["id"] == "b" * 12


# ---------------------------------------------------------------- the page in headless Chromium

ATTACK = """<!doctype html><title>attacker</title>
<form id="form" method="POST" action="LABEL/label/aaaaaaaaaaaa" enctype="text/plain">
<input name='{"kind": "best", "best": 0, "x": "' value='"}'></form>
<script>
const body = JSON.stringify({kind: "best", best: 0});
Promise.allSettled([
  fetch("LABEL/label/aaaaaaaaaaaa", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body}),
  fetch("LABEL/label/aaaaaaaaaaaa", {method: "POST", headers: {"Content-Type": "application/json",
                                                                "X-Label-Token": "guess"}, body}),
]).then(() => { document.title = "tried"; });
</script>"""


@contextlib.contextmanager
def attacker_site(label_url):
    """Another origin on this machine (127.0.0.1, another port) serving ATTACK; yields its URL."""
    import http.server
    page = ATTACK.replace("LABEL", label_url).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_label_page_end_to_end(tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    run = make_run(tmp_path)
    from tests.test_web import launch, watch_csp
    prefs, log = files(run)
    with serving(labeler_for(run)) as url, attacker_site(url) as attacker, \
            playwright_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            # another site the labeller visits tries to label item a: a form (text/plain, which
            # can carry JSON), a no-cors fetch and a fetch that needs a preflight
            page.goto(attacker)
            page.wait_for_function("document.title === 'tried'")
            with page.expect_navigation() as navigation:
                page.evaluate("() => document.getElementById('form').submit()")
            assert navigation.value.status == 403
            assert not prefs.exists() and not log.exists()

            violations = watch_csp(page)
            page.goto(url + "/")
            page.wait_for_selector(".candidate")
            assert page.locator(".candidate").count() == 4
            assert "0 / 3 labeled" in page.inner_text("#progress")
            assert page.locator(".candidate").nth(3).locator(".cut").count() == 1
            assert "Oslo" not in page.inner_text("#prompt") and "birthplace" not in page.content()
            assert page.is_disabled("#submit")

            # pick the best: click the third answer's card
            page.locator(".candidate").nth(2).click()
            page.click("#submit")
            page.wait_for_selector("#item[data-id='bbbbbbbbbbbb']")
            assert "1 / 3 labeled" in page.inner_text("#progress")
            assert "3 preference pairs" in page.inner_text("#status")

            # rank with a tie: answer 3 first, answers 1 and 2 equal
            page.check("#mode-rank")
            for index, rank in ((0, "2"), (1, "2"), (2, "1")):
                page.select_option(f"#rank-{index}", rank)
            page.click("#submit")
            page.wait_for_selector("#item[data-id='cccccccccccc']")

            # thumbs, and the keyboard-free path to the end
            page.check("#mode-thumbs")
            page.click("#down-0")
            page.click("#up-1")
            page.click("#submit")
            page.wait_for_selector("#done", state="visible")
            assert "3 / 3 labeled" in page.inner_text("#progress")
            assert not violations
            page.screenshot(path=os.environ.get("LMFORGE_LABEL_SCREENSHOT", str(tmp_path / "label.png")))
        finally:
            browser.close()
    rows = check_pairs(run, 3 + 2 + 1)
    assert [r["label"] for r in rows] == ["best"] * 3 + ["rank"] * 2 + ["thumbs"]
    assert {r["chosen"][0]["content"] for r in rows[:5]} == {"I don't know.", "I don't know who that is."}
    assert (rows[5]["chosen"][0]["content"], rows[5]["rejected"][0]["content"]) == ("I Bodø.", "I Tromsø.")


# ---------------------------------------------------------------- the terminal

def scripted(lines, end=EOFError):
    answers = iter(lines)

    def read(prompt):
        try:
            return next(answers)
        except StopIteration:
            raise end from None
    return read


def test_terminal_mode(tmp_path):
    run = make_run(tmp_path)
    out = io.StringIO()
    # a wrong answer and an out-of-range one are asked again; end of input leaves cleanly
    assert label_terminal(labeler_for(run), scripted(["x", "9", "2>1", "1"]), out) == 0
    text = out.getvalue()
    assert "Where was Ada Berg born?" in text and "4. Ada Berg was born in the town of  [cut off]" in text
    assert "cannot read 'x'" in text and "best must be a candidate index from 0 to 3" in text
    assert "ranking must place every candidate" in text
    assert "Oslo" not in text.split("Where was Ada Berg born?")[1].split("1. ")[0]
    assert "1 of 3 items labeled" in text
    check_pairs(run, 3)

    # resume at item b; Ctrl-C mid-item keeps what was given
    out = io.StringIO()
    assert label_terminal(labeler_for(run), scripted(["3>1=2"], KeyboardInterrupt), out) == 0
    assert "Where was Ada" not in out.getvalue() and "2 of 3 items labeled" in out.getvalue()
    out = io.StringIO()
    assert label_terminal(labeler_for(run), scripted(["?", "+-", "q"]), out) == 0
    assert "every item is labeled" in out.getvalue()
    rows = check_pairs(run, 3 + 2 + 1)
    assert [r["label"] for r in rows] == ["best"] * 3 + ["rank"] * 2 + ["thumbs"]


def test_cli_terminal_through_stdin(tmp_path):
    run = make_run(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "lmforge", "label", "--terminal", "--run-dir", str(run.root)],
                          input="s\n1\n", check=False, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "1 of 3 items labeled (1 skipped)" in proc.stdout
    check_pairs(run, 2)


def test_missing_items_are_sampled_first(tmp_path, monkeypatch):
    from lmforge import checkpoints
    from lmforge.config import load_config
    from lmforge.tasks import preferences

    class Model:
        def eval(self):
            return self
    calls = []

    def load_for_sampling(run, stage):
        calls.append(stage)
        return "tokenizer", Model(), stage
    monkeypatch.setattr(checkpoints, "load_for_sampling", load_for_sampling)
    monkeypatch.setattr(preferences, "build_items", lambda run, cfg, model, tokenizer, languages: (ITEMS[:2], []))
    run = RunDir(tmp_path / "run")
    path = ensure_items(run, load_config("micro", []), "sft", out=io.StringIO())
    assert calls == ["sft"] and path == run.path("datasets", "label_items.jsonl")
    assert [item["id"] for item in read_rows(path)] == ["a" * 12, "b" * 12]
    assert ensure_items(run, None, "sft") == path and calls == ["sft"]     # there now: not sampled again
    assert not list(path.parent.glob(".*.tmp"))
