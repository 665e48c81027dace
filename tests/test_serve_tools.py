"""Tool calls on the OpenAI-compatible API (lmforge/serve/tools.py), against a real uvicorn server and
the real `openai` client, with a model that writes given conversations (tests/scripted.py):
a full round trip where the client runs its own function and sends the `tool` message back,
streamed and not; built-in tools run by the server; malformed calls and tool_choice; the web
chat showing calls and results in Chromium; a schemathesis run with `tools` in the schema."""
import json
import os

import pytest

from lmforge.config import ServeConfig
from lmforge.tools.registry import ToolBox, load_tools
from tests.scripted import ScriptModel
from tests.test_engine import make_model, make_tokenizer, single_thread  # noqa: F401 - autouse fixture

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

from lmforge.serve.api import create_app  # noqa: E402
from tests.test_serve import client, schemathesis_failures, serve_in_thread  # noqa: E402

NAME = "tool-model"
CALCULATOR = {"type": "function", "function": {"name": "calculator", "description": "Arithmetic.",
                                                "parameters": {"type": "object", "properties": {
                                                    "expression": {"type": "string"}}, "required": ["expression"]}}}


def conversation(question, call_args, result, answer, name="calculator"):
    return [{"role": "user", "content": question},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": name, "arguments": call_args}}]},
            {"role": "tool", "content": result},
            {"role": "assistant", "content": answer}]


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def app_for(tok, scripts, tools=None, **limits):
    model = ScriptModel(tok, scripts)
    cfg = ServeConfig(max_tokens=200, default_max_tokens=100, max_prompt_tokens=200, **limits)
    return create_app(model, tok, NAME, cfg, tools=tools)


def round_trip_scripts(tok):
    """The conversation the client's tool makes, rendered with the client's tool declared."""
    first = conversation("What is 7 + 5?", {"expression": "7 + 5"}, "12", "7 + 5 = 12. The answer is 12.")
    return [tok.render_chat(first, tools=[CALCULATOR])[0]]


def run_client_tool(arguments: str) -> str:
    """The client's own function: here it adds up "a + b"."""
    a, b = json.loads(arguments)["expression"].split(" + ")
    return str(int(a) + int(b))


def test_openai_client_round_trip_with_a_client_tool(tok):
    app = app_for(tok, round_trip_scripts(tok))
    with serve_in_thread(app) as url:
        api = client(url)
        messages = [{"role": "user", "content": "What is 7 + 5?"}]
        reply = api.chat.completions.create(model=NAME, messages=messages, tools=[CALCULATOR], temperature=0)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls"
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.function.name == "calculator"
        assert json.loads(call.function.arguments) == {"expression": "7 + 5"}
        # the client runs its function and sends the result back, as OpenAI's docs do it
        messages.append(choice.message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": run_client_tool(call.function.arguments)})
        final = api.chat.completions.create(model=NAME, messages=messages, tools=[CALCULATOR], temperature=0)
        assert final.choices[0].finish_reason == "stop"
        assert final.choices[0].message.content == "7 + 5 = 12. The answer is 12."
        assert not final.choices[0].message.tool_calls

        # the same, streamed: the call arrives as one delta.tool_calls chunk
        messages = [{"role": "user", "content": "What is 7 + 5?"}]
        calls, reasons = {}, []
        for chunk in api.chat.completions.create(model=NAME, messages=messages, tools=[CALCULATOR], stream=True):
            for choice in chunk.choices:
                for delta in choice.delta.tool_calls or []:
                    entry = calls.setdefault(delta.index, {"id": delta.id, "name": "", "arguments": ""})
                    entry["name"] += delta.function.name or ""
                    entry["arguments"] += delta.function.arguments or ""
                reasons.append(choice.finish_reason)
        assert reasons[-1] == "tool_calls" and calls[0]["name"] == "calculator"
        messages += [{"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0]["id"], "type": "function",
             "function": {"name": "calculator", "arguments": calls[0]["arguments"]}}]},
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": run_client_tool(calls[0]["arguments"])}]
        text = "".join(c.choices[0].delta.content or "" for c in api.chat.completions.create(
            model=NAME, messages=messages, tools=[CALCULATOR], stream=True) if c.choices)
        assert text == "7 + 5 = 12. The answer is 12."


def test_builtin_tools_run_on_the_server(tok):
    box = ToolBox(load_tools(["calculator"]))
    script = tok.render_chat(conversation("And 6 x 7?", {"expression": "6 × 7"}, "42", "6 × 7 = 42."),
                             tools=box.schemas())[0]
    app = app_for(tok, [script], tools=box, builtin_tools=["calculator"])
    with serve_in_thread(app) as url:
        reply = httpx.post(url + "/v1/chat/completions", json={
            "model": NAME, "messages": [{"role": "user", "content": "And 6 x 7?"}], "temperature": 0}).json()
        message = reply["choices"][0]["message"]
        assert reply["choices"][0]["finish_reason"] == "stop" and message["content"] == "6 × 7 = 42."
        assert "tool_calls" not in message
        assert message["builtin_tool_calls"] == [{"id": message["builtin_tool_calls"][0]["id"], "name": "calculator",
                                                  "arguments": '{"expression": "6 × 7"}', "output": "42",
                                                  "error": False}]
        # streamed: the call and its result come as deltas of their own, then the answer
        events = []
        with httpx.stream("POST", url + "/v1/chat/completions", json={
                "model": NAME, "messages": [{"role": "user", "content": "And 6 x 7?"}], "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    events.append(json.loads(line[6:]))
        deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
        assert [k for d in deltas for k in d if k.startswith("builtin")] == ["builtin_tool_call",
                                                                             "builtin_tool_result"]
        assert "".join(d.get("content") or "" for d in deltas) == "6 × 7 = 42."
    box.close()


def test_malformed_calls_and_tool_choice_end_with_a_clear_finish_reason(tok):
    broken = conversation("Broken?", '{"expression": "7 +', "x", "x")
    plain = [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hi there, friend."}]
    scripts = [tok.render_chat(broken, tools=[CALCULATOR])[0], tok.render_chat(plain, tools=[CALCULATOR])[0],
               tok.render_chat(plain)[0]]
    app = app_for(tok, scripts)
    with serve_in_thread(app) as url:
        api = client(url)
        reply = api.chat.completions.create(model=NAME, messages=broken[:1], tools=[CALCULATOR])
        assert reply.choices[0].finish_reason == "invalid_tool_call"
        raw = httpx.post(url + "/v1/chat/completions", json={"model": NAME, "messages": broken[:1],
                                                              "tools": [CALCULATOR]})
        assert raw.status_code == 200 and "not JSON" in raw.json()["choices"][0]["message"]["tool_call_error"]
        streamed = [c.choices[0] for c in api.chat.completions.create(
            model=NAME, messages=broken[:1], tools=[CALCULATOR], stream=True) if c.choices]
        assert streamed[-1].finish_reason == "invalid_tool_call"
        # auto: the model answers without a call; required: the answer must start with one
        auto = api.chat.completions.create(model=NAME, messages=plain[:1], tools=[CALCULATOR])
        assert auto.choices[0].message.content == "Hi there, friend." and auto.choices[0].finish_reason == "stop"
        forced = api.chat.completions.create(model=NAME, messages=plain[:1], tools=[CALCULATOR], tool_choice="required")
        assert forced.choices[0].finish_reason == "invalid_tool_call"     # forced to call, it wrote no valid call
        # none: no tools line, the plain answer
        none = api.chat.completions.create(model=NAME, messages=plain[:1], tools=[CALCULATOR], tool_choice="none")
        assert none.choices[0].message.content == "Hi there, friend."
        # a named tool that is not offered, and a bad tool message, are 400s naming the problem
        for body in ({"tools": [CALCULATOR], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
                     {"tool_choice": "required"},
                     {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
                     {"messages": [{"role": "user", "content": None}]}):
            response = httpx.post(url + "/v1/chat/completions",
                                  json={"model": NAME, "messages": plain[:1], **body})
            assert response.status_code == 400 and response.json()["error"]["message"], body


def test_a_model_from_before_tool_use_refuses_tools_with_a_400():
    from lmforge.config import TokenizerConfig
    from lmforge.tokenizer import SPECIAL_TOKENS, Tokenizer
    from tests.test_engine import TEXTS
    old = Tokenizer.train(TEXTS, TokenizerConfig(vocab_size=300), special_tokens=SPECIAL_TOKENS)
    app = create_app(make_model(vocab=old.vocab_size, seq_len=128), old, NAME, ServeConfig(max_tokens=8),
                     tools=ToolBox(load_tools(["calculator"])))
    with serve_in_thread(app) as url:
        ok = httpx.post(url + "/v1/chat/completions", json={"model": NAME, "messages": [
            {"role": "user", "content": "Hi"}], "max_tokens": 4})
        assert ok.status_code == 200       # the server's built-in tools are simply off
        refused = httpx.post(url + "/v1/chat/completions", json={"model": NAME, "messages": [
            {"role": "user", "content": "Hi"}], "tools": [CALCULATOR]})
        assert refused.status_code == 400 and "no tool tokens" in refused.json()["error"]["message"]


def test_schemathesis_with_tools_finds_no_server_errors(tok):
    """Fuzz the chat endpoint (its schema has tools, tool_choice, tool_calls and tool messages) on a
    server that runs the calculator itself, with a random model that may write any token."""
    model = make_model(vocab=tok.vocab_size, seq_len=128)
    box = ToolBox(load_tools(["calculator"]))
    app = create_app(model, tok, NAME, ServeConfig(max_tokens=24, default_max_tokens=24, max_prompt_tokens=100,
                                                   builtin_tools=["calculator"]), tools=box)
    with serve_in_thread(app) as url:
        failures = schemathesis_failures(url, ("/v1/chat/completions",), max_examples=60)
        # and requests that surely take the tool paths
        for stream in (False, True):
            for _ in range(3):
                response = httpx.post(url + "/v1/chat/completions", json={
                    "model": NAME, "stream": stream, "temperature": 1.0, "tools": [CALCULATOR],
                    "tool_choice": "required", "messages": [{"role": "user", "content": "2+2?"}]})
                assert response.status_code == 200
        assert httpx.get(url + "/health").json()["status"] == "ok"
    assert not failures, failures[:3]
    box.close()


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_web_chat_shows_calls_and_results(tok):
    playwright_api = pytest.importorskip("playwright.sync_api")
    from tests.test_web import launch, watch_csp
    box = ToolBox(load_tools(["calculator"]))
    question = "Ada has 7 apples and buys 5 more."
    script = tok.render_chat(conversation(question, {"expression": "7 + 5"}, "12", "7 + 5 = 12. The answer is 12."),
                             tools=box.schemas())[0]
    app = app_for(tok, [script], tools=box, builtin_tools=["calculator"])
    with serve_in_thread(app) as url, playwright_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            violations = watch_csp(page)
            page.goto(url + "/")
            page.wait_for_selector(f"#model:has-text('{NAME}')")
            page.fill("#input", question)
            page.click("#send")
            page.wait_for_selector(".tool-result:has-text('12')")
            page.wait_for_selector("#send:enabled")
            assert page.locator(".tool-call").inner_text() == 'calculator {"expression": "7 + 5"}'
            assert page.locator(".tool-result").inner_text() == "→ 12"
            content = page.locator(".msg.assistant .content").inner_text()
            assert content.endswith("7 + 5 = 12. The answer is 12.")
            assert not violations
        finally:
            browser.close()
    box.close()
