"""Tests for lmforge/serve/api.py against a real uvicorn server on 127.0.0.1, driven by the real
`openai` client (and httpx or raw sockets for bad input): chat and text completions, streaming
with usage, stop, n, seed, bad input, API keys, body and content limits, slow clients, the
per-key concurrency limit, security headers, disconnects, concurrency, and a bounded
schemathesis fuzz run."""
import contextlib
import json
import socket
import threading
import time

import pytest

from lmforge.config import ServeConfig
from lmforge.engine import generate
from tests.test_engine import make_model, make_tokenizer, single_thread  # noqa: F401 - autouse fixture

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from lmforge.serve.api import create_app  # noqa: E402
from lmforge.serve.guard import uvicorn_config  # noqa: E402

NAME = "test-model"


@contextlib.contextmanager
def serve_in_thread(app):
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port))     # as `lmforge serve` runs it
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def build_app(**limits):
    tokenizer = make_tokenizer()
    model = make_model(vocab=tokenizer.vocab_size, seq_len=128)
    cfg = ServeConfig(max_batch=8, max_prompt_tokens=100, max_tokens=64, default_max_tokens=16, max_n=4,
                      max_messages=8, **limits)
    return create_app(model, tokenizer, NAME, cfg), model, tokenizer


@pytest.fixture(scope="module")
def served():
    app, model, tokenizer = build_app()
    with serve_in_thread(app) as url:
        yield url, model, tokenizer, app


def client(url, key="none"):
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


def expected_chat(model, tokenizer, messages, **kwargs):
    ids = tokenizer.render_chat(messages, add_generation_prompt=True)[0]
    return generate(model, [ids], stop_ids=chat_stops(tokenizer), tokenizer=tokenizer, **kwargs)[0]


def chat_stops(tokenizer) -> list[int]:
    """The server's chat stops: role tokens, <|bos|>, and with no tools offered a tool call too."""
    return [tokenizer.end_id, tokenizer.bos_id, tokenizer.user_id, tokenizer.system_id, tokenizer.assistant_id,
            tokenizer.tool_id, tokenizer.tool_call_id]


# ---------------------------------------------------------------- the API, through the openai client

def test_models_and_health(served):
    url, *_ = served
    assert [m.id for m in client(url).models.list()] == [NAME]
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["model"] == NAME


def test_chat_completion_matches_the_engine(served):
    url, model, tokenizer, _ = served
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hvem var Ada Berg?"}]
    reply = client(url).chat.completions.create(model=NAME, messages=messages, max_tokens=20, temperature=0)
    want = expected_chat(model, tokenizer, messages, max_new_tokens=20)
    assert reply.choices[0].message.content == want.text
    assert reply.choices[0].finish_reason == ("length" if want.finish_reason == "length" else "stop")
    assert reply.usage.completion_tokens == len(want.tokens)
    assert reply.usage.prompt_tokens == len(tokenizer.render_chat(messages, add_generation_prompt=True)[0])


def test_streaming_with_usage_equals_the_whole_answer(served):
    url, model, tokenizer, _ = served
    messages = [{"role": "user", "content": "Tell me about Tromsø ☕"}]
    kwargs = dict(model=NAME, messages=messages, max_tokens=30, temperature=0.8, seed=5, top_p=0.9,
                  extra_body={"top_k": 50, "min_p": 0.02})
    whole = client(url).chat.completions.create(**kwargs)
    chunks = list(client(url).chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and "\ufffd" not in text.replace(
        whole.choices[0].message.content, "")
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    # the raw stream ends with data: [DONE]
    with httpx.stream("POST", url + "/v1/chat/completions", json={**{k: v for k, v in kwargs.items()
                                                                      if k != "extra_body"}, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_seed_n_and_stop(served):
    url, model, tokenizer, _ = served
    c = client(url)
    messages = [{"role": "user", "content": "Hi"}]
    a = c.chat.completions.create(model=NAME, messages=messages, n=3, seed=11, temperature=1.0, max_tokens=12)
    b = c.chat.completions.create(model=NAME, messages=messages, n=3, seed=11, temperature=1.0, max_tokens=12)
    assert [ch.message.content for ch in a.choices] == [ch.message.content for ch in b.choices]
    assert [ch.index for ch in a.choices] == [0, 1, 2]
    full = c.chat.completions.create(model=NAME, messages=messages, temperature=0, max_tokens=30).choices[0]
    stop = full.message.content[4:7]
    if stop:
        cut = c.chat.completions.create(model=NAME, messages=messages, temperature=0, max_tokens=30, stop=[stop])
        assert cut.choices[0].message.content == full.message.content[:full.message.content.index(stop)]
        assert cut.choices[0].finish_reason == "stop"


def test_text_completions(served):
    url, model, tokenizer, _ = served
    c = client(url)
    out = c.completions.create(model=NAME, prompt="Ada Berg was born in", max_tokens=10, temperature=0)
    ids = [tokenizer.bos_id] + tokenizer.encode("Ada Berg was born in")
    want = generate(model, [ids], max_new_tokens=10, stop_ids=(tokenizer.bos_id, tokenizer.end_id),
                    tokenizer=tokenizer)[0]
    assert out.choices[0].text == want.text and out.object == "text_completion"
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model=NAME, prompt="Ada Berg was born in", max_tokens=10, temperature=0, stream=True) if ch.choices)
    assert streamed == want.text
    two = c.completions.create(model=NAME, prompt=["a", "b"], max_tokens=3, temperature=0)
    assert [ch.index for ch in two.choices] == [0, 1]


# ---------------------------------------------------------------- bad input

def test_bad_input_is_a_4xx_json_error_and_the_server_keeps_serving(served):
    url, *_ = served
    post = lambda body, **kw: httpx.post(url + "/v1/chat/completions", content=body if isinstance(body, str)  # noqa
                                         else json.dumps(body), headers={"Content-Type": "application/json"}, **kw)
    ok = {"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    cases = [
        ("{not json", 400, "JSON"),
        ({**ok, "temperature": "hot"}, 400, "temperature"),
        ({**ok, "messages": "Hi"}, 400, "messages"),
        ({**ok, "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        ({**ok, "temperature": 3.5}, 400, "temperature"),
        ({**ok, "top_p": 0}, 400, "top_p"),
        ({**ok, "max_tokens": 100000}, 400, "limit of 64"),
        ({**ok, "n": 9}, 400, "limit of 4"),
        ({**ok, "messages": [{"role": "user", "content": "word " * 400}]}, 400, "limit is 100"),
        ({**ok, "messages": [{"role": "user", "content": "x"}] * 9}, 400, "limit is 8"),
        ({**ok, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 2000}]}, 400, "limit is 1024"),
        ({**ok, "messages": [{"role": "user", "content": "\ud800"}]}, 400, "Unicode"),
        ({**ok, "model": "gpt-4"}, 404, "gpt-4"),
    ]
    for body, status, needle in cases:
        response = post(body)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert needle in error["message"] or needle == error.get("param"), (needle, error)
    assert httpx.get(url + "/v1/nothing-here").status_code == 404
    assert post(ok).status_code == 200


# ---------------------------------------------------------------- limits, keys and headers (serve/guard.py)

FIFTY_MB = 50_000_000


def upload(url, path, headers, total=FIFTY_MB):
    """POST `total` bytes streamed from one reused 64 KiB chunk (the client holds no 50 MB), with
    the headers given (a Content-Length among them, or chunked without one). Returns the response
    and how many body bytes the client got to hand to its socket before the server stopped it."""
    chunk = b"x" * 65536
    sent = 0

    def body():
        nonlocal sent
        while sent < total:
            sent += len(chunk)
            yield chunk
    response = httpx.post(url + path, content=body(), headers=headers, timeout=60)
    return response, sent


def raw_response(sock) -> tuple[int, dict, dict]:
    """Read one response on a raw socket up to the server's close: (status, headers, JSON body)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
    return int(lines[0].split()[1]), headers, json.loads(body)


def address(url) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def test_a_big_body_without_the_key_is_401_unread_and_with_it_413():
    import gc
    import tracemalloc
    app, *_ = build_app(api_key="sekret")
    chat = "/v1/chat/completions"
    with serve_in_thread(app) as url:
        # headers only: the answer comes though not one body byte was sent, and the socket closes
        for auth, status, code in (("", 401, "invalid_api_key"), ("Bearer wrong", 401, "invalid_api_key"),
                                   ("Bearer sekret", 413, "request_too_large")):
            with socket.create_connection(address(url), timeout=20) as sock:
                sock.sendall(f"POST {chat} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                             f"Content-Type: application/json\r\nContent-Length: {FIFTY_MB}\r\n\r\n".encode())
                answer = raw_response(sock)
            assert (answer[0], answer[1]["connection"], answer[2]["error"]["code"]) == (status, "close", code), answer
        # a client that sends the whole body at once is stopped by the close, far short of 50 MB
        for headers in ({}, {"Authorization": "Bearer wrong", "Content-Length": str(FIFTY_MB)}):
            response, sent = upload(url, chat, headers)
            assert response.status_code == 401 and sent < FIFTY_MB / 2, (response.status_code, sent)

        # the right key: a declared length over the limit is 413 at once; an undeclared one
        # (chunked) is counted while it is read and stopped at the limit, memory flat
        key = {"Authorization": "Bearer sekret"}
        response, sent = upload(url, chat, {**key, "Content-Length": str(FIFTY_MB)})
        assert response.status_code == 413 and sent < FIFTY_MB / 2, (response.status_code, sent)
        # (the garbage collector off: a refused body kept alive by a reference cycle shows too)
        gc.disable()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for _ in range(4):
                tracemalloc.reset_peak()
                response, sent = upload(url, chat, key)
                _, peak = tracemalloc.get_traced_memory()
                error = response.json()["error"]
                assert response.status_code == 413 and error["code"] == "request_too_large"
                assert "1,048,576" in error["message"] and sent < FIFTY_MB / 2 and peak < 8 * 2**20, (sent, peak)
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            gc.enable()
        assert after - before < 2 * 2**20, (before, after)
        assert client(url, "sekret").models.list().data[0].id == NAME     # and it keeps serving


def spy_on_tokenizing(tokenizer) -> list:
    """Record each call of the real encode / render_chat: (name, thread name, called on a running
    event loop?). The real methods still do the work."""
    import asyncio
    calls = []
    for name in ("encode", "encode_batch", "render_chat"):
        def spy(*args, _real=getattr(tokenizer, name), _name=name, **kwargs):
            try:
                asyncio.get_running_loop()
                on_loop = True
            except RuntimeError:
                on_loop = False
            calls.append((_name, threading.current_thread().name, on_loop))
            return _real(*args, **kwargs)
        setattr(tokenizer, name, spy)
    return calls


def test_long_content_is_refused_before_tokenizing_and_tokenizing_is_off_the_event_loop(served):
    url, *_ = served
    huge = "x" * 5_000_000
    body = {"model": NAME, "messages": [{"role": "user", "content": huge}], "max_tokens": 2}
    # with the default body limit (1 MiB) 5 MB of content is 413 before it is parsed
    assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 413

    app, _, tokenizer = build_app(max_request_bytes=16_000_000)
    calls = spy_on_tokenizing(tokenizer)
    with serve_in_thread(app) as url:
        chat, text = url + "/v1/chat/completions", url + "/v1/completions"
        refused = [(chat, body), (chat, {**body, "messages": [{"role": "user", "content": "y" * 60_000}] * 2}),
                   (text, {"model": NAME, "prompt": huge, "max_tokens": 2}),
                   (text, {"model": NAME, "prompt": ["z" * 60_000, "z" * 60_000], "max_tokens": 2})]
        for endpoint, request in refused:
            response = httpx.post(endpoint, json=request, timeout=60)
            assert response.status_code == 400, response.text
            assert "the limit is 100,000" in response.json()["error"]["message"]
        assert calls == []     # nothing was tokenized
        assert httpx.post(chat, json={**body, "messages": [{"role": "user", "content": "Hi"}]}).status_code == 200
        assert httpx.post(text, json={"model": NAME, "prompt": ["a", "b"], "max_tokens": 2}).status_code == 200
    assert {"encode_batch", "render_chat"} <= {name for name, _, _ in calls}
    assert not [call for call in calls if call[2]], calls       # never on the event loop's thread
    assert all(thread.startswith("lmforge-tokenize") for name, thread, _ in calls if name != "encode")


def test_each_key_has_a_concurrency_limit():
    tokenizer = make_tokenizer()
    model = make_model(vocab=tokenizer.vocab_size, seq_len=4096)
    model.logits = NeverStop(model.logits, chat_stops(tokenizer), delay=0.01)
    app = create_app(model, tokenizer, NAME, ServeConfig(api_key="k", max_concurrent_per_key=2, max_tokens=4000,
                                                         max_prompt_tokens=100))
    body = {"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3000, "stream": True}
    key = {"Authorization": "Bearer k"}
    with serve_in_thread(app) as url, contextlib.ExitStack() as streams:
        readers = []           # kept: a line iterator that is dropped closes its connection
        for _ in range(2):     # two answers streaming, both still running
            stream = streams.enter_context(httpx.stream("POST", url + "/v1/chat/completions", json=body,
                                                        headers=key, timeout=30))
            readers.append(stream.iter_lines())
            assert stream.status_code == 200 and next(readers[-1]).startswith("data: ")
        response = httpx.post(url + "/v1/chat/completions", json={**body, "stream": False}, headers=key)
        assert response.status_code == 429 and response.headers["retry-after"] == "1"
        assert response.json()["error"]["type"] == "rate_limit_error"
        with pytest.raises(openai.RateLimitError):
            client(url, "k").models.list()
        assert httpx.get(url + "/health").status_code == 200 and httpx.get(url + "/").status_code == 200
        streams.close()        # the clients leave: their slots come back
        deadline = time.time() + 20
        while httpx.get(url + "/v1/models", headers=key).status_code != 200:
            assert time.time() < deadline, "the slots never came back"
            time.sleep(0.1)


def test_slow_clients_are_cut_off():
    import select
    app, *_ = build_app(read_timeout_s=1.0)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Padding: " + b"a" * 300 + b"\r\nContent-Length: 100\r\n\r\n")
    with serve_in_thread(app) as url:
        # headers one byte every 0.1 s: closed before they are complete, though bytes keep coming
        with socket.create_connection(address(url), timeout=20) as sock:
            sent, closed = 0, False
            while sent < len(head) and not closed:
                try:
                    sock.sendall(head[sent:sent + 1])
                    sent += 1
                except OSError:
                    closed = True
                if select.select([sock], [], [], 0.1)[0]:
                    closed = sock.recv(1024) == b""
            assert closed and sent < len(head), sent
        # a connection that sends nothing is closed too (recv gives b"", not a socket timeout)
        with socket.create_connection(address(url), timeout=20) as sock:
            assert sock.recv(1024) == b""
        # complete headers, then a body that stalls: 408, in OpenAI's error shape
        with socket.create_connection(address(url), timeout=20) as sock:
            sock.sendall(head + b'{"model": ')
            status, headers, error = raw_response(sock)
        assert status == 408 and error["error"]["code"] == "request_timeout", (status, error)
        assert httpx.get(url + "/health").json()["status"] == "ok"


def test_keys_come_from_a_file_or_the_environment_and_compare_in_constant_time(tmp_path, monkeypatch):
    import hmac

    from lmforge.config import ConfigError
    from lmforge.serve.api import api_key
    compared = []
    real_compare = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real_compare(a, b))
    monkeypatch.setenv("LMFORGE_API_KEY", "from-env")
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert api_key(ServeConfig()) == "from-env"
    assert api_key(ServeConfig(api_key_file=str(key_file))) == "from-file"
    assert api_key(ServeConfig(api_key="given", api_key_file=str(key_file))) == "given"
    (tmp_path / "empty").write_text("\n")
    for path, message in ((tmp_path / "missing", "cannot read the API key file"), (tmp_path / "empty", "is empty")):
        with pytest.raises(ConfigError, match=message):
            api_key(ServeConfig(api_key_file=str(path)))

    assert ServeConfig().host == "127.0.0.1"
    app, *_ = build_app()          # the key comes from $LMFORGE_API_KEY
    with serve_in_thread(app) as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").models.list()
        assert (b"Bearer wrong", b"Bearer from-env") in compared
        assert [m.id for m in client(url, "from-env").models.list()] == [NAME]
        # /health: ok or not to anyone, the details only with the key
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        health = httpx.get(url + "/health", headers={"Authorization": "Bearer from-env"}).json()
        assert health["status"] == "ok" and health["model"] == NAME and "last_error" in health
        assert httpx.get(url + "/").status_code == 200       # the page itself needs no key


def test_a_non_loopback_bind_without_a_key_is_refused_with_one_line(tmp_path):
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "LMFORGE_API_KEY"}
    for extra, message in (([], "refusing to serve on 0.0.0.0"),
                           (["--api-key-file", str(tmp_path / "missing")], "cannot read the API key file")):
        proc = subprocess.run([sys.executable, "-m", "lmforge", "serve", "--run-dir", str(tmp_path / "run"),
                               "--host", "0.0.0.0", *extra], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_page_and_the_api_send_security_headers(served):
    import re
    url, *_ = served
    page = httpx.get(url + "/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), "an inline script"
    assert "<style" not in page.text and " style=" not in page.text
    for path, kind in (("/static/chat.js", "javascript"), ("/static/chat.css", "text/css")):
        response = httpx.get(url + path)
        assert response.status_code == 200 and kind in response.headers["content-type"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(url + "/v1/models").headers["x-content-type-options"] == "nosniff"


# ---------------------------------------------------------------- concurrency and disconnects

def test_concurrent_requests_are_batched_and_each_is_right(served):
    url, model, tokenizer, app = served
    questions = [f"Question {i}?" for i in range(8)]
    answers = [None] * len(questions)

    def ask(i):
        answers[i] = client(url).chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": questions[i]}], max_tokens=24, temperature=0)
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for q, a in zip(questions, answers):
        want = expected_chat(model, tokenizer, [{"role": "user", "content": q}], max_new_tokens=24)
        assert a.choices[0].message.content == want.text


class NeverStop:
    """In place of a model's `logits` (the LM head the engine samples from): never picks the
    stop ids, so an answer runs until it is cancelled. `delay` seconds per call keep a long
    answer streaming long enough to be stopped by hand, however fast or loaded the machine is."""

    def __init__(self, logits_fn, banned, delay: float = 0.0):
        self.logits_fn, self.banned, self.delay = logits_fn, banned, delay

    def __call__(self, hidden):
        if self.delay:
            time.sleep(self.delay)
        logits = self.logits_fn(hidden)
        logits[..., self.banned] = -1e9
        return logits


def test_client_disconnect_cancels_generation():
    tokenizer = make_tokenizer()
    model = make_model(vocab=tokenizer.vocab_size, seq_len=4096)
    slow_forward = model.forward

    def forward(*args, **kwargs):       # slow enough that the answer is still running when we leave
        time.sleep(0.01)
        return slow_forward(*args, **kwargs)
    model.forward = forward
    model.logits = NeverStop(model.logits, chat_stops(tokenizer))
    app = create_app(model, tokenizer, NAME, ServeConfig(max_tokens=4000, max_prompt_tokens=100))
    engine = app.state.server.engine.engine
    with serve_in_thread(app) as url:
        body = {"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3000,
                "stream": True}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i > 3:
                    break
        deadline = time.time() + 10
        while engine.rows and time.time() < deadline:
            time.sleep(0.05)
        assert not engine.rows, "the stream's sequence kept running after the client left"
        # a non-streaming request whose client times out is cancelled too
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json={**body, "stream": False}, timeout=1.0)
        deadline = time.time() + 10
        while (engine.rows or engine.waiting) and time.time() < deadline:
            time.sleep(0.05)
        assert not engine.rows


# ---------------------------------------------------------------- schema-driven fuzzing

def schemathesis_failures(url: str, paths: tuple[str, ...] = (), max_examples: int = 40) -> list:
    """A bounded run (fixed example count, no shrinking) over the server's operations (those whose
    path is in `paths`, or all): the requests answered with a 5xx."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings, strategies
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    failures = []
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    for operation in schema.get_all_operations():
        op = operation.ok()
        if paths and op.path not in paths:
            continue

        @settings(max_examples=max_examples, deadline=None, phases=[Phase.generate], database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategies.one_of([op.as_strategy(mode) for mode in modes]))
        def check(case):
            response = case.call(base_url=url, timeout=30)
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.body, response.status_code, response.text[:200]))
        check()
    return failures


def test_schemathesis_finds_no_server_errors(served):
    """Every generated request gets a non-5xx answer."""
    url, *_ = served
    failures = schemathesis_failures(url)
    assert not failures, failures[:3]
    assert httpx.get(url + "/health").json()["status"] == "ok"
