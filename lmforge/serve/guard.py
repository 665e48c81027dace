"""What stands between the network and the two web apps (api.py's `lmforge serve`, label.py's
`lmforge label`): bounded requests, slow-client timeouts, constant-time secrets, safe headers.

    app.add_middleware(Guard, max_body_bytes=1 << 20, read_timeout_s=30, check=check)
    uvicorn.Server(uvicorn_config(app, "127.0.0.1", 8000)).run()

`Guard` is a pure ASGI middleware (not Starlette's BaseHTTPMiddleware, which would hide the
client's disconnect from the endpoints). For every HTTP request, in this order:
  1. `check(scope)` looks at the headers only (API key, Host, Origin, token...) and either
     refuses (raises Refusal) or names the bucket the request counts against (None = none);
  2. a bucket already holding `max_concurrent` requests is answered 429 with Retry-After;
  3. a Content-Length above `max_body_bytes` is answered 413 without reading anything;
  4. the body is read here, counting bytes as they arrive: past `max_body_bytes` it is 413,
     not complete within `read_timeout_s` it is 408 (a slow body, "slowloris");
  5. the app gets the body from memory, then the real `receive` (for the disconnect).
A refusal is OpenAI-shaped JSON with `Connection: close`: uvicorn then closes the socket
instead of reading the unread rest of the body to reach the next request. Every response
gets the security headers (a Content-Security-Policy that allows only this origin's
scripts and styles, nosniff, no framing, no referrer).

`uvicorn_config` adds the other half of the slow-client timeout: a connection must deliver
complete request headers within `read_timeout_s` of connecting (or of its previous
response), or it is closed; uvicorn by itself waits forever for headers.

Run the tests with `python -m pytest tests/test_serve.py tests/test_label.py -q`.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hmac
import ipaddress
import json
import os
from pathlib import Path

SECURITY_HEADERS = [
    # scripts, styles, fetches only from this origin; no inline script, no plugins, no framing
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class Refusal(Exception):
    """A request answered before the app sees it; the fields are OpenAI's error fields."""

    def __init__(self, status: int, message: str, code: str | None = None, kind: str = "invalid_request_error",
                 headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.kind, self.headers = status, message, code, kind, headers or []


class _ClientGone(Exception):
    pass


def error_payload(message: str, kind: str = "invalid_request_error", param=None, code=None) -> dict:
    """OpenAI's error shape, used by every error answer of both apps."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def header(scope, name: bytes) -> bytes | None:
    """The first value of a request header (name in lower case), as raw bytes."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def secret_matches(given: bytes | str | None, expected: bytes | str) -> bool:
    """Constant-time comparison, so the time taken does not reveal how much of a key was right."""
    if given is None:
        return False
    given = given.encode("utf-8") if isinstance(given, str) else given
    expected = expected.encode("utf-8") if isinstance(expected, str) else expected
    return hmac.compare_digest(given, expected)


def bearer_matches(scope, key: str) -> bool:
    return secret_matches(header(scope, b"authorization"), b"Bearer " + key.encode("utf-8"))


def basic_password_matches(scope, password: str) -> bool:
    """HTTP Basic authentication with any user name and this password."""
    value = header(scope, b"authorization") or b""
    scheme, _, encoded = value.partition(b" ")
    if scheme.lower() != b"basic":
        return False
    try:
        _, _, given = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    return secret_matches(given, password)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1); a name or 0.0.0.0 is not."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: bytes | None) -> str:
    """The host part of a Host header or an Origin's authority ("[::1]:8100" -> "::1")."""
    text = (host_header or b"").decode("latin-1").strip()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    return text.rpartition(":")[0] if text.count(":") == 1 else text


def read_secret(value: str, file: str, env: str, what: str) -> str:
    """A secret from the command line or config (`value`), else the first line of `file`, else
    $`env`; "" when none is given. A file that cannot be read or is empty is a one-line error."""
    from ..config import ConfigError
    if value:
        return value
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read the {what} file {file}: {getattr(err, 'strerror', None) or err}") \
                from None
        if not text:
            raise ConfigError(f"the {what} file {file} is empty")
        return text.splitlines()[0].strip()
    return os.environ.get(env, "")


class Guard:
    """The ASGI middleware described at the top of this file."""

    def __init__(self, app, max_body_bytes: int, read_timeout_s: float, check=None, max_concurrent: int = 0):
        self.app, self.max_body_bytes, self.read_timeout_s = app, max_body_bytes, read_timeout_s
        self.check, self.max_concurrent = check, max_concurrent
        self.active: collections.Counter = collections.Counter()     # bucket -> requests in flight

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = _with_headers(send)
        try:
            bucket = self.check(scope) if self.check else None
            if bucket is not None and self.max_concurrent and self.active[bucket] >= self.max_concurrent:
                raise Refusal(429, f"too many requests in flight for this key (the limit is {self.max_concurrent}); "
                                   "try again", "rate_limit_exceeded", "rate_limit_error", [(b"retry-after", b"1")])
        except Refusal as refusal:
            return await _refuse(send, refusal)
        if bucket is not None:
            self.active[bucket] += 1
        try:
            try:
                body = await asyncio.wait_for(self._read_body(scope, receive), self.read_timeout_s)
            except Refusal as refusal:
                return await _refuse(send, refusal)
            except asyncio.TimeoutError:
                return await _refuse(send, Refusal(408, f"the request body did not arrive within "
                                                        f"{self.read_timeout_s:g} s", "request_timeout"))
            except _ClientGone:
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            if bucket is not None:
                self.active[bucket] -= 1
                if not self.active[bucket]:
                    del self.active[bucket]

    async def _read_body(self, scope, receive) -> bytes:
        limit = self.max_body_bytes
        too_large = Refusal(413, f"the request body is larger than this server's limit of {limit:,} bytes",
                            "request_too_large")
        declared = header(scope, b"content-length")
        if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
            raise too_large        # nothing read: the client may not even have sent it yet
        parts, size = [], 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:       # chunked uploads carry no length: count while reading
                    raise too_large
                parts.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(parts)
        finally:
            # the exception's traceback keeps this frame, in a reference cycle that only the
            # garbage collector's rare full passes free: it must not keep a megabyte with it
            parts.clear()


def _with_headers(send):
    async def send_with_headers(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": list(message.get("headers", [])) + SECURITY_HEADERS}
        await send(message)
    return send_with_headers


def _replay(body: bytes, receive):
    """A `receive` that gives the body read by the Guard once, then the client's own events
    (so a disconnect still reaches the endpoint)."""
    given = False

    async def replay():
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay


async def _refuse(send, refusal: Refusal) -> None:
    body = json.dumps(error_payload(refusal.message, refusal.kind, None, refusal.code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")] + refusal.headers
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def limit_heap_fragmentation() -> None:
    """Have glibc's malloc serve blocks of 64 KiB and more with mmap, always.

    Its default raises that threshold to the largest block freed so far, so the socket
    buffers of big uploads (64-256 KiB each; asyncio, h11 and uvicorn make them) end up in
    the main heap, which they fragment: free memory that the process keeps (malloc_trim
    gives it back). Two clients sending 50 MB bodies back to back for 60 s took a server
    from 262 to 297 MiB with the default and to 281 MiB with the threshold fixed. For
    `lmforge serve` and `label` only; where there is no mallopt (macOS, musl) nothing changes."""
    import ctypes
    try:
        ctypes.CDLL(None).mallopt(-3, 64 * 1024)     # -3 = M_MMAP_THRESHOLD
    except (AttributeError, OSError):
        pass


# ---------------------------------------------------------------- uvicorn with a header timeout

def uvicorn_config(app, host: str, port: int):
    """uvicorn's Config for one of our apps: its HTTP protocol closes a connection that has not
    sent complete request headers within the app's read timeout (app.state.read_timeout_s)."""
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol    # h11, or httptools when installed

    class HeaderTimeoutProtocol(AutoHTTPProtocol):
        # The timer starts when the connection opens or a response ends, and arriving bytes
        # do not restart it: a client trickling header bytes is closed like a silent one.
        # `cycle` is uvicorn's current request; a new one means the headers came in time.
        timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._await_headers()

        def on_response_complete(self):
            super().on_response_complete()
            self._await_headers()

        def connection_lost(self, exc):
            if self.timer is not None:
                self.timer.cancel()
            super().connection_lost(exc)

        def _await_headers(self):
            if self.timer is not None:
                self.timer.cancel()
            if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
                return     # closed, or a pipelined request already started: its end re-arms the timer
            waiting_since = self.cycle

            def expire():
                if self.cycle is waiting_since and not self.transport.is_closing():
                    self.transport.close()
            self.timer = self.loop.call_later(app.state.read_timeout_s, expire)

    return uvicorn.Config(app, host=host, port=port, log_level="warning", http=HeaderTimeoutProtocol)
