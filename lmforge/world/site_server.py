"""Serve a built-in Site over real HTTP on 127.0.0.1, for as long as a `with` block lasts.

    from lmforge.world.site_server import serve_site
    with serve_site(site) as base_url:          # e.g. http://127.0.0.1:41234
        ...crawl base_url + "/"...

    python -m lmforge.world.site_server          # serve the default world's site until Ctrl-C

The port is picked by the operating system, so parallel runs and tests never collide. The
server answers /robots.txt from the site, every page with its own status, type and
redirect, and 404 for anything else. `slow_paths` lets tests make pages that answer late.
"""
from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from ..config import WorldConfig
from .build import build_world
from .site import Site, build_site


def _handler(site: Site, slow_paths: dict[str, float]):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"
        server_version = "lmforge-site/0.1"

        def do_GET(self):  # noqa: N802 - the name http.server calls
            if self.path in slow_paths:
                time.sleep(slow_paths[self.path])
            if self.path == "/robots.txt" and site.robots_txt is not None:
                body = site.robots_txt.encode()
                return self._send(200, [("Content-Type", "text/plain; charset=utf-8")], body)
            page = site.pages.get(self.path)
            if page is None:
                return self._send(404, [("Content-Type", "text/html; charset=utf-8")], b"<h1>Not found</h1>")
            self._send(page.status, page.headers(), page.body)

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            try:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass     # the client gave up (a timeout test); nothing to do

        def log_message(self, *args):  # quiet: a crawl makes thousands of requests
            pass

    return Handler


@contextlib.contextmanager
def serve_site(site: Site, slow_paths: dict[str, float] | None = None) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site, slow_paths or {}))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main() -> None:
    site = build_site(build_world(WorldConfig()))
    with serve_site(site) as base:
        print(f"serving {len(site.pages)} pages at {base}/  (Ctrl-C stops)")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(1)


if __name__ == "__main__":
    main()
