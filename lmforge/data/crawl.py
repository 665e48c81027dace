"""A polite, deterministic HTTP crawler: seeds, same-host links, robots.txt, delays, limits.

    from lmforge.data.crawl import Crawler
    crawler = Crawler(["http://127.0.0.1:8000/"], max_pages=1000, delay_s=1.0, timeout_s=10)
    for record in crawler.crawl("web"):     # documents (HTML as text) or UnreadableInput
        ...
    crawler.stats                           # fetched, robots_disallowed, off_host_links, ...

Breadth first from the seeds, following links to the seeds' hosts only. robots.txt is read
once per host (a missing one allows everything; one that fails with 5xx or cannot be fetched
disallows everything, as RFC 9309 asks), and its Crawl-delay wins over `delay_s`. When a host
asks for no delay, up to `workers` pages are fetched at once, but results are always taken in
frontier order, so the documents and their order do not depend on timing. Every fetched URL
becomes a document or an UnreadableInput: HTTP errors, timeouts (per request, `timeout_s` in
all), redirect loops, too many redirects, off-host redirects, wrong content types, too-large
bodies and undecodable bytes each have their reason.
"""
from __future__ import annotations

import hashlib
import re
import socket
import time
import urllib.error
import urllib.request
import urllib.robotparser
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import quote, urldefrag, urljoin, urlsplit, urlunsplit

from .sources import HTML_TYPES, TEXT_TYPES, UnreadableInput, charset_of, decode_bytes

HREF = re.compile(r"""<a\s[^>]*?href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)


def normalize_url(url: str) -> str | None:
    """Absolute http(s) URL without its fragment, scheme and host lower-cased; None for others."""
    url, _ = urldefrag(url.strip())
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    # Raw non-ASCII characters in links are common; on the wire they must be percent-encoded.
    safe = "/%:@!$&'()*+,;=-._~"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), quote(parts.path or "/", safe=safe),
                       quote(parts.query, safe=safe + "?"), ""))


def extract_links(html_text: str, base_url: str) -> list[str]:
    """Absolute, normalised link targets in document order, each once."""
    out, seen = [], set()
    for match in HREF.finditer(html_text):
        href = next(g for g in match.groups() if g is not None)
        href = href.replace("&amp;", "&")
        url = normalize_url(urljoin(base_url, href))
        if url and url not in seen:
            seen.add(url)
            out.append(url)
    return out


def host_of(url: str) -> str:
    return urlsplit(url).netloc.lower()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as responses, so the crawler can check each hop itself."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@dataclass
class Fetched:
    url: str                    # the URL that was asked for
    final_url: str = ""         # after redirects
    status: int = 0
    content_type: str = ""
    body: bytes = b""
    reason: str = ""            # set when unreadable
    detail: str = ""


class Crawler:
    def __init__(self, seeds: list[str], max_pages: int = 1000, delay_s: float = 1.0, timeout_s: float = 10.0,
                 workers: int = 4, user_agent: str = "lmforge-crawler/0.1", max_bytes: int = 5_000_000,
                 max_redirects: int = 5, public_origin: tuple[str, str] | None = None):
        self.seeds = [u for u in (normalize_url(s) for s in seeds) if u]
        if not self.seeds:
            raise ValueError(f"no http(s) seed URL among {seeds!r}")
        self.hosts = {host_of(u) for u in self.seeds}
        self.max_pages, self.delay_s, self.timeout_s = max_pages, delay_s, timeout_s
        self.workers, self.user_agent, self.max_bytes = max(1, workers), user_agent, max_bytes
        self.max_redirects = max_redirects
        self.public_origin = public_origin      # (local prefix, public prefix) for URLs in documents
        self.opener = urllib.request.build_opener(_NoRedirect)
        self.robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}
        self.next_time: dict[str, float] = {}
        self.stats: Counter = Counter()

    # ------------------------------------------------------------ one request
    def _request(self, url: str, deadline: float, limit: int) -> Fetched:
        request = urllib.request.Request(url, headers={"User-Agent": self.user_agent, "Accept": "text/html,*/*;q=0.5"})
        timeout = max(0.05, deadline - time.monotonic())
        try:
            response = self.opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            with err:
                return Fetched(url, url, err.code, err.headers.get("Content-Type", "") if err.headers else "",
                               detail=err.headers.get("Location", "") if err.headers else "")
        with response:
            content_type = response.headers.get("Content-Type", "")
            fetched = Fetched(url, url, response.status, content_type)
            if limit and not content_type.split(";")[0].strip().lower().startswith(TEXT_TYPES):
                fetched.reason, fetched.detail = "content_type", content_type[:100] or "(none)"
                return fetched
            chunks, size = [], 0
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError("read deadline")
                chunk = response.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if limit and size > limit:
                    fetched.reason, fetched.detail = "too_large", f"more than {limit} bytes"
                    return fetched
                chunks.append(chunk)
            fetched.body = b"".join(chunks)
            return fetched

    def fetch(self, url: str, limit: int | None = None) -> Fetched:
        """GET with manual redirects; never raises. `reason` is set when the result is unreadable."""
        limit = self.max_bytes if limit is None else limit
        deadline = time.monotonic() + self.timeout_s
        chain, current = [url], url
        try:
            while True:
                result = self._request(current, deadline, limit)
                if result.status in (301, 302, 303, 307, 308):
                    target = normalize_url(urljoin(current, result.detail)) if result.detail else None
                    if target is None:
                        return Fetched(url, current, result.status, reason="bad_redirect", detail=result.detail[:200])
                    if target in chain:
                        return Fetched(url, target, result.status, reason="redirect_loop", detail=" -> ".join(chain[-4:]))
                    if len(chain) > self.max_redirects:
                        return Fetched(url, target, result.status, reason="too_many_redirects", detail=str(len(chain)))
                    if host_of(target) not in self.hosts:
                        return Fetched(url, target, result.status, reason="redirect_off_host", detail=target[:200])
                    chain.append(target)
                    current = target
                    continue
                result.url, result.final_url = url, current
                if result.status != 200 and not result.reason:
                    result.reason = f"http_{result.status}"
                return result
        except (TimeoutError, socket.timeout):
            return Fetched(url, current, reason="timeout", detail=f"no complete answer in {self.timeout_s}s")
        except urllib.error.URLError as err:
            if isinstance(err.reason, (TimeoutError, socket.timeout)):
                return Fetched(url, current, reason="timeout", detail=f"no answer in {self.timeout_s}s")
            return Fetched(url, current, reason="connection_error", detail=str(err.reason)[:200])
        except (ConnectionError, OSError) as err:
            return Fetched(url, current, reason="connection_error", detail=f"{type(err).__name__}: {err}"[:200])
        except Exception as err:  # noqa: BLE001 - malformed responses (bad status lines, headers)
            return Fetched(url, current, reason="bad_response", detail=f"{type(err).__name__}: {err}"[:200])

    # ------------------------------------------------------------ politeness
    def _robots(self, url: str) -> urllib.robotparser.RobotFileParser | None:
        host = host_of(url)
        if host not in self.robots:
            parts = urlsplit(url)
            robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
            result = self.fetch(robots_url, limit=500_000)
            parser = urllib.robotparser.RobotFileParser(robots_url)
            if result.status == 200 and not result.reason:
                parser.parse(result.body.decode("utf-8", "replace").splitlines())
                self.stats["robots_txt_found"] += 1
            elif 400 <= result.status < 500:
                parser.allow_all = True          # no robots.txt: everything is allowed
                self.stats["robots_txt_missing"] += 1
            else:
                parser.disallow_all = True       # unreachable or failing: assume nothing is allowed
                self.stats["robots_txt_unreachable"] += 1
            self.robots[host] = parser
        return self.robots[host]

    def _delay(self, url: str) -> float:
        robots = self._robots(url)
        asked = robots.crawl_delay(self.user_agent) if robots else None
        return float(asked) if asked is not None else self.delay_s

    def _wait_turn(self, host: str, delay: float) -> None:
        now = time.monotonic()
        wait = self.next_time.get(host, 0.0) - now
        if wait > 0:
            time.sleep(wait)
        self.next_time[host] = time.monotonic() + delay

    # ------------------------------------------------------------ the crawl
    def _public(self, url: str) -> str:
        if self.public_origin and url.startswith(self.public_origin[0]):
            return self.public_origin[1] + url[len(self.public_origin[0]):]
        return url

    def _record(self, source: str, result: Fetched, depth: int) -> dict | UnreadableInput:
        url = self._public(result.final_url or result.url)
        if result.reason:
            return UnreadableInput(source, self._public(result.url), result.reason, result.detail)
        charset = charset_of(result.content_type, result.body)
        text, reason, detail = decode_bytes(result.body, charset)
        if text is None:
            return UnreadableInput(source, url, reason, detail)
        is_html = result.content_type.split(";")[0].strip().lower().startswith(HTML_TYPES)
        return {"id": f"{source}/{hashlib.sha1(url.encode()).hexdigest()[:16]}", "text": text, "source": source,
                "url": url, "meta": {"format": "html" if is_html else "text", "content_type": result.content_type,
                                     "depth": depth}}

    def crawl(self, source: str) -> Iterator[dict | UnreadableInput]:
        seen = set(self.seeds)
        frontier = deque((url, 0) for url in self.seeds)
        fetched = 0
        pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        try:
            while frontier and fetched < self.max_pages:
                batch = []
                while frontier and len(batch) < self.max_pages - fetched:
                    url, depth = frontier[0]
                    robots = self._robots(url)
                    if robots is not None and not robots.can_fetch(self.user_agent, url):
                        frontier.popleft()
                        self.stats["robots_disallowed"] += 1
                        continue
                    delay = self._delay(url)
                    if delay > 0 and batch:
                        break               # a polite host gets one request at a time
                    frontier.popleft()
                    batch.append((url, depth))
                    if delay > 0 or len(batch) >= self.workers * 4:
                        break
                if not batch:
                    continue
                if len(batch) == 1 or pool is None:
                    results = []
                    for url, _ in batch:
                        self._wait_turn(host_of(url), self._delay(url))
                        results.append(self.fetch(url))
                else:
                    results = list(pool.map(self.fetch, [url for url, _ in batch]))
                for (url, depth), result in zip(batch, results):
                    fetched += 1
                    final = result.final_url or url
                    if final != url:
                        if final in seen and not result.reason:
                            self.stats["redirect_to_seen"] += 1
                            continue
                        seen.add(final)
                    record = self._record(source, result, depth)
                    self.stats["fetched"] += 1
                    if isinstance(record, UnreadableInput):
                        self.stats[f"unreadable_{record.reason}"] += 1
                        yield record
                        continue
                    yield record
                    if record["meta"]["format"] != "html":
                        continue
                    for link in extract_links(record["text"], final):
                        if host_of(link) not in self.hosts:
                            self.stats["off_host_links"] += 1
                            continue
                        if link not in seen:
                            seen.add(link)
                            frontier.append((link, depth + 1))
            self.stats["frontier_left"] = len(frontier)
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
