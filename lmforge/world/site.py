"""The built-in world published as a small, dirty web site, with the ground truth kept apart.

Every world document becomes an HTML page (one page per article variant, story, dialogue and
worksheet) wrapped in the furniture of a real site: a cookie banner, navigation, a sidebar,
a footer. Around those pages the site adds the dirt that collection and cleaning must cope with:

  exact duplicates     the same page under a tracking URL (?ref=...), and a print version with
                       other boilerplate around the same text
  near duplicates      copies on a "blog" with paragraphs re-ordered, a sentence dropped or
                       added, a few words changed (the truth records their word 5-gram Jaccard)
  spam                 keyword stuffing and link farms
  lorem ipsum          unfinished pages, wholly or partly placeholder text
  unwanted content     stand-ins for adult, violent and self-harm pages, made of invented words
                       that the site's lexicon defines (UNWANTED_WORDS), some under blocklisted
                       URL paths (UNWANTED_URL_WORDS); no real harmful text anywhere
  personal data        e-mail addresses, phone numbers and IP addresses inside real pages
  other languages      German, French, Spanish, Finnish and Dutch pages
  broken encodings     cp1252 bytes served as UTF-8, double-encoded UTF-8 (mojibake), and
                       text already mangled to U+FFFD
  HTTP trouble         broken links (404), a server error (500), a redirect loop, a redirect,
                       an image behind a page link, and a robots.txt-disallowed folder

The truth (`site_truth.jsonl`, one row per URL: its kind, its dirt, what cleaning should do
with it) is written next to the data, never inside it. Held-out entities appear nowhere.

    from lmforge.world.site import build_site
    site = build_site(world, dirt_fraction=0.03, seed=7)
    site.pages["/"]                     # Page(status, body, content_type, location)
    site.write_warc(Path("site.warc.gz")); site.write_truth(Path("site_truth.jsonl"))

    python -m lmforge.world.site --out /tmp/site     # the default world's site as files + truth
"""
from __future__ import annotations

import argparse
import html
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ..config import WorldConfig
from ..files import atomic_path, atomic_write_jsonl
from .build import build_world
from .documents import World
from .site_dirt import (COOKIE, FOOTER, FOREIGN, LOREM_WORDS, NAV, PRINT_LINK, SIDEBAR, SPAM_PHRASES,  # noqa: F401
                        jaccard, lossy, mojibake, near_duplicate_text, shingles)
from .site_pii import PII_TEMPLATES, seen_pii, unseen_line, unseen_pii
from .unwanted_text import (UNWANTED_PATHS, UNWANTED_URL_WORDS, UNWANTED_WORDS, benign_page,  # noqa: F401
                            held_out_page, plan_held_out, seen_sentences)
from .words import SITE

ORIGIN = SITE
PAGES_PER_INDEX = 100


@dataclass
class Page:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    location: str | None = None     # for redirects

    def headers(self) -> list[tuple[str, str]]:
        out = [("Content-Type", self.content_type), ("Content-Length", str(len(self.body)))]
        if self.location:
            out.append(("Location", self.location))
        return out


@dataclass
class Site:
    """Pages by path (insertion order is the order a breadth-first crawl from / meets them)."""
    origin: str = ORIGIN
    pages: dict[str, Page] = field(default_factory=dict)
    truth: dict[str, dict] = field(default_factory=dict)
    robots_txt: str | None = "User-agent: *\nDisallow: /private/\nCrawl-delay: 0\n"   # None: no robots.txt

    def add(self, path: str, page: Page, kind: str, expect: str, dirt: list[str] | None = None, **extra) -> None:
        assert path not in self.pages, path
        self.pages[path] = page
        self.truth[path] = {"url": self.origin + path, "kind": kind, "dirt": dirt or [], "expect": expect, **extra}

    def write_truth(self, path: Path) -> int:
        return atomic_write_jsonl(path, self.truth.values())

    def write_warc(self, path: Path) -> int:
        """Every page that a crawl fetches, as WARC/1.0 response records (gzip per record)."""
        from warcio.statusandheaders import StatusAndHeaders
        from warcio.warcwriter import WARCWriter
        count = 0
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            writer = WARCWriter(handle, gzip=True)
            for page_path, page in self.pages.items():
                if self.truth[page_path]["expect"] == "skip":   # robots.txt keeps crawlers out of these
                    continue
                reason = {200: "OK", 301: "Moved Permanently", 302: "Found", 404: "Not Found",
                          500: "Internal Server Error"}.get(page.status, "Unknown")
                http_headers = StatusAndHeaders(f"{page.status} {reason}", page.headers(), protocol="HTTP/1.1")
                record = writer.create_warc_record(self.origin + page_path, "response",
                                                   payload=io.BytesIO(page.body), http_headers=http_headers)
                writer.write_record(record)
                count += 1
        return count

    def write_folder(self, out_dir: Path) -> int:
        """The HTML pages as files (for the folder source and for looking at)."""
        count = 0
        for page_path, page in self.pages.items():
            if page.status != 200 or not page.content_type.startswith("text/html"):
                continue
            name = re.sub(r"[^A-Za-z0-9._-]+", "_", page_path.strip("/")) or "index"
            target = Path(out_dir) / f"{name}.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(page.body)
            count += 1
        return count


# ---------------------------------------------------------------- rendering

def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def path_of(url: str) -> str:
    """The site path of a world URL, percent-encoded as it would be on the wire ("ø" -> "%C3%B8")."""
    path = url[len(ORIGIN):] if url.startswith(ORIGIN) else url
    return quote(path, safe="/?=&%")


def _link(path: str, text: str) -> str:
    return f'<a href="{_esc(path)}">{_esc(text)}</a>'


def body_html(text: str, source: str) -> str:
    """The world document's text as article HTML: a title, paragraphs, headed sections."""
    parts = [p for p in text.strip().split("\n\n") if p.strip()]
    out = []
    if source == "article":
        out.append(f"<h1>{_esc(parts[0])}</h1>")
        parts = parts[1:]
    for part in parts:
        lines = part.split("\n")
        if source == "article" and len(lines) > 1:
            # "Header\nline\nline": a section; each line is a sentence group of its own.
            out.append(f"<h2>{_esc(lines[0])}</h2>")
            out += [f"<p>{_esc(line)}</p>" for line in lines[1:]]
        elif source in ("dialogue", "arithmetic"):
            out += [f"<p>{_esc(line)}</p>" for line in lines]
        else:
            out.append(f"<p>{_esc(' '.join(lines))}</p>")
    return "\n".join(out)


def render_page(title: str, main_html: str, lang: str, skin: int, sidebar_links: list[tuple[str, str]] = (),
                extra_links: list[tuple[str, str]] = (), charset: str = "utf-8") -> str:
    """A full page: banner, navigation, the main article, a sidebar, a footer."""
    nav_lang = lang if lang in NAV else "en"
    nav_paths = ["/", "/index/0000", "/index/0000", "/index/0000", "/index/0000", "/about", "/contact"]
    nav = "".join(f"<li>{_link(p, t)}</li>" for p, t in zip(nav_paths, NAV[nav_lang]))
    cookie = COOKIE[nav_lang][skin % 2]
    footer = FOOTER[nav_lang]
    side = "".join(f"<li>{_link(p, t)}</li>" for p, t in sidebar_links)
    extra = " · ".join(_link(p, t) for p, t in extra_links)
    footer_html = "".join(f"<p>{_esc(line)}</p>" for line in (footer if skin != 1 else footer[:2]))
    footer_links = f"<p>{_link('/privacy', 'Privacy policy')} · {_link('/terms', 'Terms of use')}</p>"
    layout = [
        f'<div id="cookie-consent" class="cookie-banner"><p>{_esc(cookie)}</p><button>OK</button></div>',
        f'<header class="site-header"><div class="logo">{_link("/", "World Encyclopedia")}</div>'
        f'<nav class="main-menu"><ul>{nav}</ul></nav></header>',
        f'<main id="content"><article class="post">\n{main_html}\n</article>'
        + (f'<div class="share-tools">{extra}</div>' if extra else "") + "</main>",
        f'<aside class="sidebar"><h3>{_esc(SIDEBAR[nav_lang])}</h3><ul>{side}</ul></aside>' if side else "",
        f'<footer class="site-footer">{footer_html}{footer_links}</footer>',
    ]
    if skin == 2:  # another skin puts the sidebar before the content
        layout[2], layout[3] = layout[3], layout[2]
    return (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="{charset}">'
            f"<title>{_esc(title)} – World Encyclopedia</title></head>\n<body>\n" + "\n".join(layout)
            + "\n</body></html>\n")


def _html_page(text: str) -> Page:
    return Page(body=text.encode("utf-8"))


# ---------------------------------------------------------------- building

@dataclass
class _Plan:
    """Which dirt hangs off which original page (decided before any page is rendered)."""
    links: dict[int, list[tuple[str, str]]] = field(default_factory=dict)   # original index -> links
    pii: dict[int, dict] = field(default_factory=dict)

    def attach(self, index: int, path: str, text: str) -> None:
        self.links.setdefault(index, []).append((path, text))


def add_held_out_pages(site, pages: list[tuple[str, dict]], trained_names: list[str]) -> None:
    for target, params in pages:
        rng = random.Random(params["seed"])
        name = rng.choice(trained_names) if trained_names else "Norvania"
        if params["unwanted"]:
            title, sentences = held_out_page(params["family"], params["category"], name, rng)
        else:
            title, sentences = benign_page(name, rng)
        main = f"<h1>{_esc(title)}</h1>\n" + "\n".join(f"<p>{_esc(s)}</p>" for s in sentences)
        page = _html_page(render_page(title, main, "en", len(target) % 3))
        if params["unwanted"]:
            site.add(target, page, "unwanted", "remove", ["unwanted_held_out"], category=params["category"],
                     family=params["family"], language="en")
        else:
            site.add(target, page, "community", "keep", [], language="en")


def build_site(world: World, dirt_fraction: float = 0.03, seed: int = 0) -> Site:
    """The world's documents as a site, plus dirt pages; see the module docstring."""
    rng = random.Random(f"{world.config.seed}:{seed}:site")
    docs = list(world.documents())
    n = len(docs)
    n_dirt = max(3, round(dirt_fraction * n)) if n else 0
    site = Site()
    plan = _Plan()
    trained_names = [e["name"] for e in world.trained]
    products = sorted({v for e in world.trained for k, v in e["attributes"].items() if k in ("product", "purpose")})
    with_non_ascii = [i for i, d in enumerate(docs) if any(ord(c) > 127 for c in d["text"])]
    big_enough = [i for i, d in enumerate(docs) if d["source"] in ("article", "story") and len(d["text"]) > 400]

    def pick(pool: list[int], count: int) -> list[int]:
        return sorted(rng.sample(pool, min(count, len(pool))))

    def spread(count: int) -> list[int]:
        # Dirt pages without an original hang off originals spread evenly through the site.
        return [min(n - 1, (j * n) // max(1, count)) for j in range(count)]

    # --- decide the dirt (all randomness here, in a fixed order) ---
    dirt: list[tuple[int, str, dict]] = []            # (original index it hangs off, kind, params)
    for i in pick(list(range(n)), n_dirt):
        dirt.append((i, "exact_ref", {}))
    for i in pick(big_enough, n_dirt):
        dirt.append((i, "exact_print", {}))
    for i in pick(big_enough, n_dirt):
        dirt.append((i, "near", {"seed": rng.random()}))
    for i in pick(with_non_ascii, max(1, n_dirt // 3)):
        dirt.append((i, "cp1252", {}))
    for i in pick(with_non_ascii, max(1, n_dirt // 3)):
        dirt.append((i, "mojibake", {}))
    for i in pick([i for i in with_non_ascii if docs[i]["meta"]["language"] == "nb"], max(1, n_dirt // 3)):
        dirt.append((i, "lossy", {}))
    for j, i in enumerate(spread(n_dirt)):
        dirt.append((i, "spam", {"j": j}))
    for j, i in enumerate(spread(n_dirt)):
        dirt.append((i, "lorem", {"j": j}))
    for j, i in enumerate(spread(n_dirt)):
        dirt.append((i, "unwanted", {"j": j}))
    for j, i in enumerate(spread(n_dirt)):
        dirt.append((i, "foreign", {"j": j}))
    for j, i in enumerate(spread(6)):
        dirt.append((i, "http", {"j": j}))
    for i in pick(list(range(n)), n_dirt):
        name = docs[i]["meta"].get("title") or rng.choice(trained_names)
        plan.pii[i] = seen_pii(name, rng)
    # Stable order of dirt pages: by the original they hang off, then by kind order above.
    dirt.sort(key=lambda item: item[0])
    # Held-out unwanted pages and their benign look-alikes: decided from a random stream of
    # their own, after everything above, so every page the site had before is byte-identical.
    held_out = plan_held_out(plan, n, n_dirt, random.Random(f"{world.config.seed}:{seed}:held-out"))

    # --- paths of the dirt pages, and the links to them from their originals ---
    dirt_pages = []
    for number, (i, kind, params) in enumerate(dirt):
        doc = docs[i]
        lang, path = doc["meta"]["language"], path_of(doc["url"])
        if kind == "exact_ref":
            target = f"{path}?ref=popular"
            plan.attach(i, target, "Popular")
        elif kind == "exact_print":
            target = f"/print{path}"
            plan.attach(i, target, PRINT_LINK[lang])
        elif kind == "near":
            target = f"/{lang}/blog/{number:05d}"
            plan.attach(i, target, "Blog")
        elif kind == "cp1252":
            target = f"/legacy{path}"
            plan.attach(i, target, "Legacy")
        elif kind == "mojibake":
            target = f"/archive{path}"
            plan.attach(i, target, "Archive")
        elif kind == "lossy":
            target = f"/mirror{path}"
            plan.attach(i, target, "Mirror")
        elif kind == "spam":
            target = f"/deals/{params['j']:05d}"
            plan.attach(i, target, "Sponsored")
        elif kind == "lorem":
            target = f"/{lang}/drafts/{params['j']:05d}"
            plan.attach(i, target, "Draft")
        elif kind == "unwanted":
            category = list(UNWANTED_WORDS)[params["j"] % 3]
            params["category"] = category
            # A third each: caught by the URL only, by the words only, by both.
            params["route"] = ("url", "words", "both")[(params["j"] // 3) % 3]
            folder = UNWANTED_PATHS[category] if params["route"] in ("url", "both") else "community"
            target = f"/{folder}/{params['j']:05d}"
            plan.attach(i, target, "Community")
        elif kind == "foreign":
            params["language"] = list(FOREIGN)[params["j"] % len(FOREIGN)]
            target = f"/{params['language']}/{params['j']:05d}"
            plan.attach(i, target, params["language"].upper())
        else:  # http trouble, one of each
            target = ["/en/missing-page", "/server-error", "/loop/a", "/go/first", "/images/map.png",
                      "/private/notes"][params["j"]]
            plan.attach(i, target, "More")
        dirt_pages.append((target, i, kind, params))

    # --- the home page and the index pages (depth 0 and 1 of a crawl) ---
    index_paths = [f"/index/{k:04d}" for k in range((n + PAGES_PER_INDEX - 1) // PAGES_PER_INDEX)]
    furniture = ["/about", "/contact", "/privacy", "/terms"]
    home_links = [(p, f"Index {k + 1}") for k, p in enumerate(index_paths)]
    home_links += [(p, p.strip("/").title()) for p in furniture]
    site.add("/", _html_page(render_page("Welcome", "<h1>The World Encyclopedia</h1>\n<ul>"
                                         + "".join(f"<li>{_link(p, t)}</li>" for p, t in home_links) + "</ul>",
                                         "en", 0)), "index", "remove", ["navigation"])
    for k, ipath in enumerate(index_paths):
        chunk = docs[k * PAGES_PER_INDEX:(k + 1) * PAGES_PER_INDEX]
        items = "".join(f"<li>{_link(path_of(d['url']), d['meta'].get('title') or d['id'])}</li>" for d in chunk)
        site.add(ipath, _html_page(render_page(f"Index {k + 1}", f"<h1>Index {k + 1}</h1>\n<ul>{items}</ul>",
                                               "en", k % 3)), "index", "remove", ["navigation"])
    furniture_text = {"/about": "About us. The World Encyclopedia is a volunteer project.",
                      "/contact": "Contact. Write to editors@world.lmforge.local or call +47 400 10 200.",
                      "/privacy": "Privacy policy. We store as little as we can.",
                      "/terms": "Terms of use. Be kind to each other."}
    for fpath in furniture:
        site.add(fpath, _html_page(render_page(fpath.strip("/").title(), f"<p>{_esc(furniture_text[fpath])}</p>",
                                               "en", 0)), "furniture", "remove", ["navigation"])

    # --- the originals (depth 2) ---
    for i, doc in enumerate(docs):
        lang, path = doc["meta"]["language"], path_of(doc["url"])
        text, extra_dirt, pii = doc["text"], [], []
        if i in plan.pii:
            p = plan.pii[i]
            lines = [t.format(**p) for t in PII_TEMPLATES[lang]]
            text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n" if doc["source"] != "article" else \
                text.rstrip("\n") + "\n\n" + ("Contact" if lang == "en" else "Kontakt") + "\n" + "\n".join(lines) + "\n"
            extra_dirt, pii = ["pii"], [p["email"], p["phone"], p["ip"]]
            # The same pages carry personal data in formats the PII rules were not written for,
            # drawn from a stream per page (the seen values above are unchanged).
            unseen = unseen_pii(p["email"].split("@")[0], random.Random(f"{world.config.seed}:{seed}:pii:{i}"))
            text = text.rstrip("\n") + "\n" + unseen_line(unseen, lang) + "\n"
        popular = [(path_of(docs[(i + step) % n]["url"]), docs[(i + step) % n]["meta"].get("title") or "Read more")
                   for step in (1, 7, 31)]
        page_html = render_page(doc["meta"].get("title") or doc["source"].title(), body_html(text, doc["source"]),
                                lang, i % 3, sidebar_links=popular, extra_links=plan.links.get(i, []))
        site.add(path, _html_page(page_html), doc["source"], "keep", extra_dirt, origin=doc["id"], pii=pii,
                 language=lang, group=doc["id"], **({"pii_unseen": unseen} if pii else {}))

    # --- the dirt (depth 3) ---
    for target, i, kind, params in dirt_pages:
        doc = docs[i]
        lang, path = doc["meta"]["language"], path_of(doc["url"])
        original_page = site.pages[path]
        title = doc["meta"].get("title") or doc["source"].title()
        prng = random.Random(f"{world.config.seed}:{seed}:dirt:{target}")
        if kind == "exact_ref":
            site.add(target, Page(body=original_page.body), "duplicate", "remove", ["exact_duplicate"],
                     origin=doc["id"], group=doc["id"], language=lang)
        elif kind == "exact_print":
            # Same text, other furniture: only extraction makes the two equal.
            page = render_page(title, body_html(doc["text"], doc["source"]), lang, (i + 1) % 3,
                               sidebar_links=[("/", "Home")])
            site.add(target, _html_page(page), "duplicate", "remove", ["exact_duplicate", "boilerplate_only"],
                     origin=doc["id"], group=doc["id"], language=lang)
        elif kind == "near":
            text = near_duplicate_text(doc["text"], lang, prng)
            page = render_page(title, body_html(text, doc["source"]), lang, (i + 2) % 3)
            site.add(target, _html_page(page), "duplicate", "remove", ["near_duplicate"], origin=doc["id"],
                     group=doc["id"], language=lang, jaccard=round(jaccard(doc["text"], text), 4))
        elif kind == "cp1252":
            page = render_page(title, body_html(doc["text"], doc["source"]), lang, i % 3)
            body = page.encode("cp1252", errors="xmlcharrefreplace")   # but it still says utf-8
            site.add(target, Page(body=body), "duplicate", "unreadable", ["broken_encoding"], origin=doc["id"],
                     group=doc["id"], language=lang, encoding="cp1252")
        elif kind == "mojibake":
            page = render_page(title, body_html(mojibake(doc["text"]), doc["source"]), lang, i % 3)
            site.add(target, _html_page(page), "duplicate", "remove", ["broken_encoding", "exact_duplicate"],
                     origin=doc["id"], group=doc["id"], language=lang, encoding="mojibake")
        elif kind == "lossy":
            page = render_page(title, body_html(lossy(doc["text"]), doc["source"]), lang, i % 3)
            site.add(target, _html_page(page), "duplicate", "remove", ["broken_encoding"], origin=doc["id"],
                     group=doc["id"], language=lang, encoding="lossy")
        elif kind == "spam":
            # Keyword stuffing: a few phrases about one product, over and over.
            keyword = prng.choice(products) if products else "lamps"
            phrases = [p.format(k=keyword) for p in prng.sample(SPAM_PHRASES, 3)]
            lines = []
            for _ in range(prng.randint(10, 20)):
                lines.append(" ".join(prng.choice(phrases) for _ in range(prng.randint(5, 10))).capitalize() + "!")
            if params["j"] % 2:   # a link farm under the stuffing
                lines.append(" ".join(f"{keyword} {w}" for w in ("shop", "store", "outlet", "market", "deals") * 4))
            main = f"<h1>{_esc(keyword.title())} deals</h1>\n" + "\n".join(f"<p>{_esc(x)}</p>" for x in lines)
            site.add(target, _html_page(render_page("Deals", main, "en", params["j"] % 3)), "spam", "remove",
                     ["spam"], language="en", keyword=keyword)
        elif kind == "lorem":
            lorem = []
            for _ in range(prng.randint(3, 6)):
                words = [prng.choice(LOREM_WORDS) for _ in range(prng.randint(30, 60))]
                lorem.append(("Lorem ipsum " if not lorem else "") + " ".join(words).capitalize() + ".")
            if params["j"] % 2:   # a half-finished page: real text, then placeholder
                main = body_html(doc["text"], doc["source"]) + "\n" + "\n".join(f"<p>{_esc(x)}</p>" for x in lorem)
            else:
                main = f"<h1>{_esc(title)}</h1>\n" + "\n".join(f"<p>{_esc(x)}</p>" for x in lorem)
            site.add(target, _html_page(render_page(title, main, lang, params["j"] % 3)), "lorem", "remove",
                     ["lorem_ipsum"], language=lang)
        elif kind == "unwanted":
            category, route = params["category"], params["route"]
            name = prng.choice(trained_names) if trained_names else "someone"
            sentences = seen_sentences(route, UNWANTED_WORDS[category], name, prng)
            main = "<h1>Community board</h1>\n" + "\n".join(f"<p>{_esc(s)}</p>" for s in sentences)
            site.add(target, _html_page(render_page("Community", main, "en", params["j"] % 3)), "unwanted",
                     "remove", ["unwanted"], category=category, route=route, language="en")
        elif kind == "foreign":
            language = params["language"]
            name = prng.choice(trained_names) if trained_names else "Norvania"
            templates = FOREIGN[language]
            sentences = [t.format(name=name, year=prng.randint(1100, 1900))
                         for t in prng.sample(templates, len(templates))]
            sentences += [t.format(name=prng.choice(trained_names) if trained_names else name,
                                   year=prng.randint(1100, 1900)) for t in prng.sample(templates, 4)]
            main = f"<h1>{_esc(name)}</h1>\n" + "\n".join(f"<p>{_esc(' '.join(sentences[k:k + 3]))}</p>"
                                                          for k in range(0, len(sentences), 3))
            site.add(target, _html_page(render_page(name, main, language, params["j"] % 3)), "foreign", "remove",
                     ["foreign_language"], language=language)
        else:
            _add_http_trouble(site, target, path)
    add_held_out_pages(site, held_out, trained_names)
    return site


def _add_http_trouble(site: Site, target: str, original_path: str) -> None:
    if target == "/en/missing-page":
        site.add(target, Page(status=404, body=b"<html><body><h1>Not found</h1></body></html>"), "http", "unreadable",
                 ["http_error"])
    elif target == "/server-error":
        site.add(target, Page(status=500, body=b"<html><body><h1>Server error</h1></body></html>"), "http",
                 "unreadable", ["http_error"])
    elif target == "/loop/a":
        site.add(target, Page(status=302, location="/loop/b"), "http", "unreadable", ["http_error"])
        site.add("/loop/b", Page(status=302, location="/loop/a"), "http", "skip", ["http_error"])
    elif target == "/go/first":
        # A redirect to a page the crawl has already fetched: followed, then skipped as seen.
        site.add(target, Page(status=301, location=original_path), "http", "skip", ["redirect"])
    elif target == "/images/map.png":
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
        site.add(target, Page(body=png, content_type="image/png"), "http", "unreadable", ["http_error"])
    else:  # /private/...: robots.txt disallows it, so a polite crawler never asks
        site.add(target, _html_page("<html><body><p>Private notes.</p></body></html>"), "http", "skip",
                 ["robots_disallowed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the HTML files, site.warc.gz and site_truth.jsonl")
    parser.add_argument("--dirt-fraction", type=float, default=0.03)
    args = parser.parse_args()
    site = build_site(build_world(WorldConfig()), args.dirt_fraction)
    out = Path(args.out)
    files = site.write_folder(out / "pages")
    records = site.write_warc(out / "site.warc.gz")
    site.write_truth(out / "site_truth.jsonl")
    print(json.dumps({"pages": len(site.pages), "html_files": files, "warc_records": records}))


if __name__ == "__main__":
    main()
