"""Tests of the HTTP crawler (lmforge/data/crawl.py) against a small site served on 127.0.0.1:
robots.txt, same-host links, limits, politeness, timeouts, HTTP errors, redirect loops, content
types, bad bytes, and an order of documents that does not depend on the number of workers.

    python -m pytest tests/test_data_crawl.py -q
"""
from __future__ import annotations

import time

import pytest

from lmforge.data.crawl import Crawler, extract_links, normalize_url
from lmforge.world.site import Page, Site
from lmforge.world.site_server import serve_site
from lmforge.data.sources import UnreadableInput


def html(*links: str, text: str = "Some text.") -> Page:
    anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return Page(body=f"<html><body><p>{text}</p>{anchors}</body></html>".encode())


def small_site(robots: str | None = "User-agent: *\nDisallow: /private/\n") -> Site:
    site = Site(origin="https://t.example", robots_txt=robots)
    pages = {
        "/": html("/a", "b", "/private/x", "https://elsewhere.example/page", "mailto:someone@x.example", "/missing",
                  "/error", "/loop1", "/moved", "/img", "/big", "/latin", "/a#section"),
        "/a": html("/c", "/"), "/b": html("/c"), "/c": html("/d%C3%B8r"), "/d%C3%B8r": html(text="Dør."),
        "/private/x": html(text="secret"),
        "/error": Page(status=500, body=b"oops"),
        "/loop1": Page(status=302, location="/loop2"), "/loop2": Page(status=302, location="/loop1"),
        "/moved": Page(status=301, location="/new-home"), "/new-home": html(text="Moved here."),
        "/img": Page(body=b"\x89PNG\r\n\x1a\n" + bytes(100), content_type="image/png"),
        "/big": html(text="x" * 5000),
        "/latin": Page(body="<html><p>Blåbær og æøå</p></html>".encode("cp1252")),
    }
    for path, page in pages.items():
        site.add(path, page, "test", "keep")
    return site


def crawl(site: Site, slow_paths: dict | None = None, **kwargs) -> tuple[list, Crawler]:
    # Generous timeouts: a loaded test machine must not turn a normal page into a timeout.
    options = dict(max_pages=100, delay_s=0.0, timeout_s=10.0, workers=4, max_bytes=2000)
    options.update(kwargs)
    with serve_site(site, slow_paths=slow_paths) as base:
        crawler = Crawler([base + "/"], public_origin=(base, site.origin), **options)
        records = list(crawler.crawl("t"))
    return records, crawler


def outcome(record) -> tuple[str, str]:
    if isinstance(record, UnreadableInput):
        return record.location, record.reason
    return record["url"], "ok"


def test_link_extraction_and_normalisation():
    page = '<a href="/x?a=1&amp;b=2#top">x</a><A HREF=\'y\'>y</A><a href=z.html>z</a><a href="javascript:void(0)">j</a>'
    assert extract_links(page, "http://h.example/dir/page") == [
        "http://h.example/x?a=1&b=2", "http://h.example/dir/y", "http://h.example/dir/z.html"]
    assert normalize_url("HTTP://H.Example/Dør") == "http://h.example/D%C3%B8r"
    assert normalize_url("ftp://h.example/") is None


def test_crawl_counts_every_fetch_with_its_reason():
    records, crawler = crawl(small_site())
    got = dict(outcome(r) for r in records)
    origin = "https://t.example"
    assert got == {
        f"{origin}/": "ok", f"{origin}/a": "ok", f"{origin}/b": "ok", f"{origin}/c": "ok",
        f"{origin}/d%C3%B8r": "ok", f"{origin}/new-home": "ok",
        f"{origin}/missing": "http_404", f"{origin}/error": "http_500", f"{origin}/loop1": "redirect_loop",
        f"{origin}/img": "content_type", f"{origin}/big": "too_large", f"{origin}/latin": "invalid_utf8"}
    assert crawler.stats["robots_disallowed"] == 1           # /private/x was never asked for
    assert crawler.stats["off_host_links"] >= 1               # elsewhere.example was not followed
    assert crawler.stats["fetched"] == len(records)
    docs = [r for r in records if not isinstance(r, UnreadableInput)]
    assert all(d["url"].startswith(origin) and d["meta"]["format"] == "html" for d in docs)
    assert any("Dør." in d["text"] for d in docs)


def test_timeout():
    site = Site(origin="https://s.example", robots_txt=None)
    site.add("/", html("/slow", "/fast"), "t", "keep")
    site.add("/slow", html(text="too late"), "t", "keep")
    site.add("/fast", html(text="in time"), "t", "keep")
    records, _ = crawl(site, slow_paths={"/slow": 4.0}, timeout_s=1.5)
    assert dict(outcome(r) for r in records) == {"https://s.example/": "ok", "https://s.example/slow": "timeout",
                                                 "https://s.example/fast": "ok"}


def test_order_does_not_depend_on_workers():
    one, _ = crawl(small_site(), workers=1)
    many, _ = crawl(small_site(), workers=8)
    assert [outcome(r) for r in one] == [outcome(r) for r in many]
    assert [r["id"] for r in one if isinstance(r, dict)] == [r["id"] for r in many if isinstance(r, dict)]


def test_page_limit():
    records, crawler = crawl(small_site(), max_pages=3)
    assert len(records) == 3 and crawler.stats["frontier_left"] > 0


def test_politeness_delay_without_robots_delay():
    site = Site(origin="https://p.example", robots_txt=None)      # no robots.txt: all allowed, our own delay
    site.add("/", html("/1", "/2", "/3"), "t", "keep")
    for path in ("/1", "/2", "/3"):
        site.add(path, html(), "t", "keep")
    started = time.perf_counter()
    records, crawler = crawl(site, delay_s=0.2)
    assert len(records) == 4 and crawler.stats["robots_txt_missing"] == 1
    assert time.perf_counter() - started >= 0.6                   # 3 waits of 0.2 s between 4 requests


def test_robots_crawl_delay_wins(monkeypatch):
    site = Site(origin="https://p.example", robots_txt="User-agent: *\nCrawl-delay: 0\n")
    site.add("/", html("/1"), "t", "keep")
    site.add("/1", html(), "t", "keep")
    started = time.perf_counter()
    records, _ = crawl(site, delay_s=30.0)                         # robots.txt says 0: no wait
    assert len(records) == 2 and time.perf_counter() - started < 5


def test_bad_seed():
    with pytest.raises(ValueError):
        Crawler(["not a url"])
