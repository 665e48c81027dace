"""End-to-end test of the web chat page (lmforge/serve/static/index.html) in headless Chromium:
send with a system prompt and temperature, streaming into the page, tokens/s, history, stop, regenerate.

Uses Debian's /usr/bin/chromium driven by Playwright (never Playwright's own browser download);
.ci/run installs it. Skips only when that browser is absent."""
import json
import os
import time

import httpx
import pytest

from tests.test_engine import make_model, make_tokenizer, single_thread  # noqa: F401 - autouse fixture

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed "
                                "(apt-get install chromium; .ci/run does)")
playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("fastapi")

from lmforge.config import ServeConfig  # noqa: E402
from lmforge.serve.api import create_app  # noqa: E402
from tests.test_serve import NeverStop, serve_in_thread  # noqa: E402


def test_chat_page_end_to_end(tmp_path):
    tokenizer = make_tokenizer()
    model = make_model(vocab=tokenizer.vocab_size, seq_len=2048)
    stops = [tokenizer.end_id, tokenizer.bos_id, tokenizer.user_id, tokenizer.system_id, tokenizer.assistant_id]
    # answers run to max tokens unless stopped; 10 ms a token keeps the 1,400-token answer
    # below streaming for ~14 s, so the stop button is still live when the test clicks it
    model.logits = NeverStop(model.logits, stops, delay=0.01)
    app = create_app(model, tokenizer, "web-model", ServeConfig(max_tokens=1500, max_prompt_tokens=1000))
    seen_bodies = []
    with serve_in_thread(app) as url, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.on("request", lambda r: r.method == "POST" and seen_bodies.append(json.loads(r.post_data)))
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('model').textContent.includes('web-model')")
            page.fill("#system", "You are terse.")
            page.eval_on_selector("#temperature", "el => { el.value = '0'; el.dispatchEvent(new Event('input')); }")
            page.fill("#max-tokens", "12")
            page.fill("#input", "Hello there ☕")
            page.click("#send")
            page.wait_for_function("!document.getElementById('send').disabled")
            bubbles = page.locator(".msg .content")
            assert bubbles.count() == 2
            first_answer = bubbles.nth(1).inner_text()
            # the page's streamed text equals the API's whole answer to the same request
            whole = httpx.post(url + "/v1/chat/completions", json={**seen_bodies[-1], "stream": False}).json()
            assert first_answer == whole["choices"][0]["message"]["content"]
            status = page.inner_text("#status")
            assert "12 tokens" in status and "tokens/s" in status
            body = seen_bodies[0]
            assert body["messages"][0] == {"role": "system", "content": "You are terse."}
            assert body["temperature"] == 0 and body["stream"] is True

            # regenerate at temperature 0 gives the same answer again
            page.click("#regenerate")
            page.wait_for_function("!document.getElementById('send').disabled")
            assert bubbles.count() == 2 and bubbles.nth(1).inner_text() == first_answer

            # a second turn carries the history
            page.fill("#input", "And then?")
            page.click("#send")
            page.wait_for_function("!document.getElementById('send').disabled")
            assert [m["role"] for m in seen_bodies[-1]["messages"]] == ["system", "user", "assistant", "user"]
            assert seen_bodies[-1]["messages"][2]["content"] == first_answer

            # stop: a long answer is cut short and the server stops generating it
            page.fill("#max-tokens", "1400")
            page.fill("#input", "Talk for a long time.")
            page.click("#send")
            page.wait_for_function("document.querySelectorAll('.msg .content')[5]?.textContent.length > 5")
            page.click("#stop")
            page.wait_for_function("!document.getElementById('send').disabled")
            assert "stopped" in page.inner_text("#status")
            engine = app.state.server.engine.engine
            deadline = time.time() + 10
            while engine.rows and time.time() < deadline:
                time.sleep(0.05)
            assert not engine.rows
            # what a person would see; set LMFORGE_WEB_SCREENSHOT to keep it
            page.screenshot(path=os.environ.get("LMFORGE_WEB_SCREENSHOT", str(tmp_path / "chat.png")))
        finally:
            browser.close()
