"""Tests for lmforge/serve/api.py against a real uvicorn server on 127.0.0.1, driven by the real
`openai` client (and httpx for bad input): chat and text completions, streaming with usage, stop,
n, seed, bad input, API key, disconnects, concurrency, and a bounded schemathesis fuzz run."""
import contextlib
import json
import socket
import threading
import time

import pytest

from lmforge.config import ServeConfig
from lmforge.generate import generate
from tests.test_engine import make_model, make_tokenizer, single_thread  # noqa: F401 - autouse fixture

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from lmforge.serve.api import create_app  # noqa: E402

NAME = "test-model"


@contextlib.contextmanager
def serve_in_thread(app):
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
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
    stops = (tokenizer.end_id, tokenizer.bos_id, tokenizer.user_id, tokenizer.system_id, tokenizer.assistant_id)
    return generate(model, [ids], stop_ids=stops, tokenizer=tokenizer, **kwargs)[0]


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


def test_api_key_and_loopback_default():
    assert ServeConfig().host == "127.0.0.1"
    app, *_ = build_app(api_key="sekret")
    with serve_in_thread(app) as url:
        with pytest.raises(openai.AuthenticationError):
            client(url, "wrong").models.list()
        assert [m.id for m in client(url, "sekret").models.list()] == [NAME]
        assert httpx.get(url + "/health").status_code == 200   # health needs no key


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
    model.logits = NeverStop(model.logits, [tokenizer.end_id, tokenizer.bos_id, tokenizer.user_id,
                                              tokenizer.system_id, tokenizer.assistant_id])
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

def test_schemathesis_finds_no_server_errors(served):
    """A bounded run (fixed example count, no shrinking): every generated request gets a non-5xx answer."""
    schemathesis = pytest.importorskip("schemathesis")
    url, *_ = served
    from hypothesis import HealthCheck, Phase, given, settings, strategies
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    failures = []
    modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
    for operation in schema.get_all_operations():
        op = operation.ok()

        @settings(max_examples=40, deadline=None, phases=[Phase.generate], database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=strategies.one_of([op.as_strategy(mode) for mode in modes]))
        def check(case):
            response = case.call(base_url=url, timeout=30)
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.body, response.status_code, response.text[:200]))
        check()
    assert not failures, failures[:3]
    assert httpx.get(url + "/health").json()["status"] == "ok"
