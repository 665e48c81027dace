"""The OpenAI-compatible HTTP API and the web chat page, on FastAPI + uvicorn.

    lmforge serve --run-dir runs/tiny [--stage sft] [--host 127.0.0.1] [--port 8000] [--api-key-file FILE]
    open http://127.0.0.1:8000/            # the chat page (static/index.html, chat.js, chat.css)

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY or anything")
    client.chat.completions.create(model="tiny-pretrain", messages=[{"role": "user", "content": "Hi"}])

Endpoints: POST /v1/chat/completions, POST /v1/completions (both with stream=true as
server-sent events ending in `data: [DONE]`), GET /v1/models, GET /health, GET / (the page),
GET /static/* (its script and style).
Sampling fields: temperature, top_p, seed, n, stop, max_tokens (or max_completion_tokens),
stream_options.include_usage, and the extras top_k and min_p. Chat requests also take
`tools` and `tool_choice`, `tool` messages and `tool_calls` on assistant messages: client
tools come back as `tool_calls` (finish_reason "tool_calls"), built-in ones
(`serve.builtin_tools`) run on the server mid-answer (lmforge/serve/tools.py).

Every request becomes one engine Sequence per choice, submitted to one BackgroundEngine
(continuous batching, lmforge/engine/batching.py). The engine thread reports tokens through each
sequence's callback, which hands them to the request's asyncio queue. A client that goes
away cancels its sequences: a streaming response's generator is closed by the server,
and a non-streaming request polls for the disconnect while it waits.

Before any of that, guard.py's middleware checks the key from the headers (a missing or
wrong key on /v1/ is 401 and its body is never read), holds each key to
`serve.max_concurrent_per_key` requests in flight (429 + Retry-After), and reads the body
within `serve.max_request_bytes` (413) and `serve.read_timeout_s` (408). Message content is
then limited in characters (`serve.max_prompt_chars`) before it is tokenized, and
tokenizing and chat rendering run in a small thread pool, never on the event loop.

Errors are OpenAI-shaped JSON, `{"error": {"message", "type", "param", "code"}}`: malformed
JSON or a wrong type is 400, out-of-range values and over-long prompts are 400 with the
limit named, an unknown model is 404, a missing or wrong key is 401, a full queue is 503.
"""
from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine import BackgroundEngine, SamplingParams, Sequence, StreamEvent, ToolSession
from ..tokenizer import TokenizerError
from . import tools as tool_api
from .requests import ChatRequest, CompletionRequest, Message, SamplingRequest
from .guard import (Guard, Refusal, bearer_matches, error_payload, is_loopback, limit_heap_fragmentation, read_secret,
                    uvicorn_config)

STATIC_DIR = Path(__file__).parent / "static"


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind


def error_response(status: int, message: str, param=None, code=None, kind="invalid_request_error") -> JSONResponse:
    return JSONResponse(error_payload(message, kind, param, code), status_code=status)


# ---------------------------------------------------------------- the app

class Server:
    """The model, its tokenizer, the engine and the limits; one per app."""

    def __init__(self, model, tokenizer, model_name: str, cfg, engine: BackgroundEngine | None = None, tools=None):
        self.model, self.tokenizer, self.model_name, self.cfg = model, tokenizer, model_name, cfg
        self.tools = tools if tokenizer.has_tools else None     # the ToolBox of serve.builtin_tools
        self.engine = engine or BackgroundEngine(model, max_batch=cfg.max_batch)
        self.max_prompt_tokens = cfg.max_prompt_tokens or model.cfg.seq_len - 1
        self.created = int(time.time())
        self.api_key = api_key(cfg)
        # tokenizing and chat rendering happen here, off the event loop, so a long prompt
        # never stalls other clients' streams; a few threads bound how many run at once
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lmforge-tokenize")
        # a chat model that starts another turn has finished its own
        self.chat_stop_ids = (tokenizer.end_id, tokenizer.bos_id, tokenizer.user_id, tokenizer.system_id,
                              tokenizer.assistant_id) + ((tokenizer.tool_id,) if tokenizer.has_tools else ())

    # ------------------------------------------------------------ checks

    def check_model(self, name: str) -> None:
        if name != self.model_name:
            raise APIError(404, f"model {name!r} does not exist; this server has {self.model_name!r}",
                           "model", "model_not_found")

    def params(self, body: SamplingRequest, stop_ids) -> SamplingParams:
        cfg = self.cfg
        max_tokens = body.max_completion_tokens or body.max_tokens or cfg.default_max_tokens
        if max_tokens > cfg.max_tokens:
            raise APIError(400, f"max_tokens={max_tokens} is above this server's limit of {cfg.max_tokens}",
                           "max_tokens", "limit_exceeded")
        if body.n > cfg.max_n:
            raise APIError(400, f"n={body.n} is above this server's limit of {cfg.max_n}", "n", "limit_exceeded")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stop) > cfg.max_stop:
            raise APIError(400, f"{len(stop)} stop strings; the limit is {cfg.max_stop}", "stop", "limit_exceeded")
        if any(len(s) > 256 for s in stop):
            raise APIError(400, "a stop string is longer than the limit of 256 characters", "stop", "limit_exceeded")
        return SamplingParams(temperature=body.temperature, top_k=body.top_k, top_p=body.top_p, min_p=body.min_p,
                              max_tokens=max_tokens, stop_ids=tuple(stop_ids), stop=tuple(s for s in stop if s),
                              seed=body.seed)

    def check_chars(self, texts: list[str], param: str) -> None:
        """Characters are counted before anything is tokenized: tokenizing costs time, counting does not."""
        chars = sum(len(text) for text in texts)
        if chars > self.cfg.max_prompt_chars:
            raise APIError(400, f"{param}: {chars:,} characters in all; the limit is {self.cfg.max_prompt_chars:,}",
                           param, "limit_exceeded")

    async def encode_chat(self, messages: list[Message], tools: list[dict] | None = None) -> list[int]:
        if len(messages) > self.cfg.max_messages:
            raise APIError(400, f"{len(messages)} messages; the limit is {self.cfg.max_messages}", "messages",
                           "limit_exceeded")
        plain = [m.plain() for m in messages]
        uses_tools = bool(tools) or any(m["role"] == "tool" or "tool_calls" in m for m in plain)
        if uses_tools and not self.tokenizer.has_tools:
            raise APIError(400, "this model's tokenizer has no tool tokens (it was trained before tool use): "
                                "tools are not supported", "tools", "tools_unsupported")
        self.check_chars([m["content"] for m in plain] + [json.dumps(tools or [])] +
                         [str(c["function"]["arguments"]) for m in plain for c in m.get("tool_calls", [])], "messages")
        ids = await self._encode("messages", lambda: self.tokenizer.render_chat(plain, add_generation_prompt=True,
                                                                                tools=tools or None)[0])
        return self.check_prompt_length(ids, "messages")

    async def encode_prompts(self, texts: list[str]) -> list[list[int]]:
        self.check_chars(texts, "prompt")
        # encode_batch, not encode: the batch call lets go of the GIL while it works
        encoded = await self._encode("prompt", self.tokenizer.encode_batch, texts)
        return [self.check_prompt_length([self.tokenizer.bos_id] + ids, "prompt") for ids in encoded]

    async def _encode(self, param: str, fn, *args) -> list[int]:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        except TokenizerError as err:
            raise APIError(400, str(err), param) from None

    def check_prompt_length(self, ids: list[int], param: str) -> list[int]:
        if len(ids) > self.max_prompt_tokens:
            raise APIError(400, f"the prompt is {len(ids)} tokens; the limit is {self.max_prompt_tokens} "
                                f"(the model's context is {self.model.cfg.seq_len})", param, "context_length_exceeded")
        return ids

    # ------------------------------------------------------------ running a request

    def start(self, prompts: list[list[int]], params: SamplingParams, n: int, session=None):
        """Submit n sequences per prompt; returns (sequences, queue of (choice index, StreamEvent)).
        session: makes each sequence's ToolSession (chat with tools), or None."""
        waiting = len(self.engine.engine.waiting)
        if waiting + len(prompts) * n > self.cfg.max_waiting:
            raise APIError(503, f"the server is busy ({waiting} sequences queued); try again", None,
                           "server_busy", "server_error")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def reporter(index):
            def on_event(event: StreamEvent):
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, (index, event))
                except RuntimeError:
                    pass    # the event loop is gone (shutdown): nobody is listening
            return on_event
        seqs = []
        for p_index, prompt in enumerate(prompts):
            for i in range(n):
                index = p_index * n + i
                seed = None if params.seed is None else params.seed + i
                seq = Sequence(prompt, params, self.tokenizer, on_event=reporter(index), cancel=threading.Event(),
                               generator_seed=seed, tools=session() if session is not None else None)
                seqs.append(seq)
        for seq in seqs:
            self.engine.submit(seq)
        return seqs, queue


def _usage(prompts: list[list[int]], n: int, seqs: list[Sequence]) -> dict:
    prompt_tokens = sum(len(p) for p in prompts)    # counted once, however many choices share it
    completion = sum(len(s.tokens) for s in seqs)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def add_error_handlers(app: FastAPI) -> None:
    """OpenAI-shaped JSON for every error: APIError, a malformed body (400), an unknown route,
    anything unexpected (500). Shared by the label page's app (lmforge/serve/label.py)."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, err: APIError):
        return error_response(err.status, err.message, err.param, err.code, err.kind)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ()) if part != "body"]
        where = ".".join(loc)
        message = f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
        if first.get("type") == "json_invalid":
            message = f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
        return error_response(400, message, where or None, first.get("type"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return error_response(err.status_code, str(err.detail), None, None,
                              "not_found_error" if err.status_code == 404 else "invalid_request_error")

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception):
        return error_response(500, f"internal error: {type(err).__name__}", None, None, "server_error")


def api_key(cfg) -> str:
    """serve.api_key, else the first line of serve.api_key_file, else $LMFORGE_API_KEY; "" = no key."""
    return read_secret(cfg.api_key, cfg.api_key_file, "LMFORGE_API_KEY", "API key")


def create_app(model, tokenizer, model_name: str, cfg, engine: BackgroundEngine | None = None,
               tools=None) -> FastAPI:
    """The FastAPI app serving `model`; the engine thread starts with the app and stops with it.
    tools: the ToolBox of the tools the server runs itself (serve.builtin_tools), or None."""
    server = Server(model, tokenizer, model_name, cfg, engine, tools)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        if not server.engine.thread.is_alive():
            server.engine.start()
        yield
        server.engine.stop()
        server.pool.shutdown(wait=False, cancel_futures=True)

    # no /docs or /redoc: their pages load scripts from a CDN, which the CSP forbids
    app = FastAPI(title="lmforge", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="OpenAI-compatible API for a model trained with lmforge.")
    app.state.server = server
    app.state.read_timeout_s = cfg.read_timeout_s

    add_error_handlers(app)

    def check(scope) -> str | None:
        """/v1/ needs the key (from the headers, before any body byte is read) and counts
        against the key's concurrency limit; the page, its files and /health do not."""
        if not scope["path"].startswith("/v1/"):
            return None
        if server.api_key and not bearer_matches(scope, server.api_key):
            raise Refusal(401, "missing or wrong API key (send Authorization: Bearer KEY)", "invalid_api_key",
                          "authentication_error")
        return server.api_key
    app.add_middleware(Guard, max_body_bytes=cfg.max_request_bytes, read_timeout_s=cfg.read_timeout_s, check=check,
                       max_concurrent=cfg.max_concurrent_per_key)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # ------------------------------------------------------------ plain endpoints

    @app.get("/health")
    async def health(request: Request):
        """ok / stopped for anyone; the details (model, load, last engine error) need the key."""
        engine = server.engine
        ok = engine.thread.is_alive()
        status = {"status": "ok" if ok else "stopped"}
        if not server.api_key or bearer_matches(request.scope, server.api_key):
            status.update(model=server.model_name, active=len(engine.engine.rows),
                          waiting=len(engine.engine.waiting), last_error=engine.last_error)
        return JSONResponse(status, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": server.model_name, "object": "model", "created": server.created,
                                            "owned_by": "lmforge"}]}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    # ------------------------------------------------------------ completions

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        server.check_model(body.model)
        schemas, client_names = tool_api.declared(server.tools, body.tools, body.tool_choice)
        prompts = [await server.encode_chat(body.messages, schemas)]
        session, stop_ids = None, server.chat_stop_ids
        try:
            prefix = tool_api.forced_prefix(tokenizer, schemas, body.tool_choice)
        except ValueError as err:
            raise APIError(400, str(err), "tool_choice") from None
        if schemas:
            box = server.tools if any(s["function"]["name"] not in client_names for s in schemas) else None
            session = lambda: ToolSession(box, tokenizer, client_names, malformed="finish",  # noqa: E731
                                          prefix=prefix)
        elif tokenizer.has_tools:
            stop_ids += (tokenizer.tool_call_id,)     # no tools offered: a call would end the answer
        params = server.params(body, stop_ids)
        return await respond(request, body, prompts, params, chat=True, session=session)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        server.check_model(body.model)
        params = server.params(body, (tokenizer.bos_id, tokenizer.end_id))
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not 1 <= len(texts) <= server.cfg.max_n:
            raise APIError(400, f"prompt: give 1 to {server.cfg.max_n} prompts", "prompt", "limit_exceeded")
        if len(texts) * body.n > server.cfg.max_n:
            raise APIError(400, f"{len(texts)} prompts x n={body.n} is above the limit of {server.cfg.max_n} choices",
                           "n", "limit_exceeded")
        prompts = await server.encode_prompts(texts)
        return await respond(request, body, prompts, params, chat=False)

    async def respond(request: Request, body: SamplingRequest, prompts, params, chat: bool, session=None):
        seqs, queue = server.start(prompts, params, body.n, session)
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(stream_events(seqs, queue, prompts, body.n, ident, created, chat, include_usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            remaining = len(seqs)
            checked = time.monotonic()
            while remaining:
                try:
                    _, event = await asyncio.wait_for(queue.get(), timeout=0.25)
                    remaining -= event.finish_reason is not None
                except asyncio.TimeoutError:
                    pass
                # tokens may arrive faster than the timeout, so look at the clock, not just the timeout
                if time.monotonic() - checked > 0.25:
                    checked = time.monotonic()
                    if await request.is_disconnected():
                        return JSONResponse({}, status_code=499)   # nobody reads it; the finally cancels
        finally:
            for seq in seqs:
                seq.cancel.set()    # a no-op for finished ones; stops the rest if we left early
        if any(seq.finish_reason == "error" for seq in seqs):
            raise APIError(500, f"generation failed: {server.engine.last_error}", None, None, "server_error")
        choices = []
        for index, seq in enumerate(seqs):
            result = seq.result()
            reason = tool_api.finish_reason(result.finish_reason)
            if chat:
                choices.append({"index": index, "message": tool_api.chat_message(seq), "finish_reason": reason,
                                "logprobs": None})
            else:
                choices.append({"index": index, "text": result.text, "finish_reason": reason, "logprobs": None})
        return {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": server.model_name, "choices": choices, "usage": _usage(prompts, body.n, seqs),
                "system_fingerprint": None}

    async def stream_events(seqs, queue, prompts, n, ident, created, chat, include_usage):
        kind = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choices, usage=None):
            data = {"id": ident, "object": kind, "created": created, "model": server.model_name, "choices": choices}
            if include_usage:
                data["usage"] = usage
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        def choice(index, text, reason=None, first=False, delta=None):
            if chat:
                delta = delta or ({"role": "assistant", "content": text} if first else
                                  ({"content": text} if text else {}))
                out = {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}
                if reason == "invalid_tool_call":
                    out["tool_call_error"] = tool_api.chat_message(seqs[index]).get("tool_call_error")
                return out
            return {"index": index, "text": text, "finish_reason": reason, "logprobs": None}

        try:
            if chat:
                # the role comes first, as OpenAI sends it, before any content
                yield chunk([choice(i, "", first=True) for i in range(len(seqs))])
            remaining = len(seqs)
            while remaining:
                index, event = await queue.get()
                if event.tool is not None:
                    delta = tool_api.stream_delta(event, seqs[index].tools)
                    if delta:
                        yield chunk([choice(index, "", delta=delta)])
                    continue
                if event.finish_reason is None:
                    if event.text:
                        yield chunk([choice(index, event.text)])
                    continue
                remaining -= 1
                if event.finish_reason == "error":
                    error = {"message": f"generation failed: {server.engine.last_error}", "type": "server_error"}
                    yield f"data: {json.dumps({'error': error})}\n\n"
                    continue
                if event.text:
                    yield chunk([choice(index, event.text)])
                yield chunk([choice(index, "", tool_api.finish_reason(event.finish_reason))])
            if include_usage:
                yield chunk([], _usage(prompts, n, seqs))
            yield "data: [DONE]\n\n"
        finally:
            # closed early (the client went away) or done: either way nothing more is wanted
            for seq in seqs:
                seq.cancel.set()

    return app


# ---------------------------------------------------------------- `lmforge serve`

def cli_serve(args, run, cfg) -> int:
    import uvicorn

    from ..checkpoints import load_for_sampling
    serve_cfg = cfg.serve
    for name in ("host", "port", "api_key", "api_key_file", "max_batch"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(serve_cfg, name, value)
    if getattr(args, "tools", None) is not None:
        serve_cfg.builtin_tools = [t.strip() for t in args.tools.split(",") if t.strip() and t.strip() != "none"]
    key = api_key(serve_cfg)      # before loading the model: a bad key file fails at once
    if not key and not is_loopback(serve_cfg.host):
        print(f"lmforge serve: refusing to serve on {serve_cfg.host} (reachable from other machines) without an "
              "API key; give --api-key-file FILE or set LMFORGE_API_KEY", file=sys.stderr)
        return 2
    tokenizer, model, stage = load_for_sampling(run, args.stage)
    model.eval()
    name = f"{run.root.name}-{stage}"
    from ..tools.registry import builtin_toolbox
    tools = builtin_toolbox(serve_cfg.builtin_tools, run, cfg.tools, tokenizer, "serve.builtin_tools")
    app = create_app(model, tokenizer, name, serve_cfg, tools=tools)
    print(f"serving {name} ({model.num_params():,} parameters) at http://{serve_cfg.host}:{serve_cfg.port}/ "
          f"(OpenAI base_url http://{serve_cfg.host}:{serve_cfg.port}/v1{', API key required' if key else ''})",
          flush=True)
    limit_heap_fragmentation()
    uvicorn.Server(uvicorn_config(app, serve_cfg.host, serve_cfg.port)).run()
    return 0
