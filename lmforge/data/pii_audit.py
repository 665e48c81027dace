"""An independent detector of personal data, to audit what the PII step left in kept text.

    from lmforge.data.pii_audit import audit
    audit("call 06.12.34.56.78 or write to ada at host dot test")   # [("phone", ...), ("email", ...)]

It shares no pattern with the replacer (lmforge/data/pii.py), so it can find what the replacer
misses instead of re-running the replacer's own regexes (which can only find nothing):

  phone    digit runs joined by at most one separator (space . - / or a parenthesis) holding 8
           to 15 digits, an optional "+" in front: any grouping, any country; not a calendar
           date (2024-05-01, 01.05.2024)
  ip       whitespace tokens, stripped of punctuation at their edges, that `ipaddress` parses
           as IPv4 or IPv6
  email    tokens with "@" and a dot after it, and token sequences written to dodge scrapers:
           name, "at" (any case, or in brackets, or "@"), label, then "dot" and label, ...

The documentation stand-ins the replacer writes (email@example.com, 555-0100, 192.0.2.1,
2001:db8::1) are not personal data and are not reported.
"""
from __future__ import annotations

import ipaddress
import re

from .pii import DEFAULT_REPLACEMENTS

STAND_INS = frozenset(DEFAULT_REPLACEMENTS.values())
DIGIT_RUN = re.compile(r"\d+")
JOINERS = frozenset(" .-/()")
# a calendar date joined the same way (2024-05-01, 01.05.2024, 2024/5/1) is not a phone number
DATE = re.compile(r"(?:\d{4}([-./])\d{1,2}\1\d{1,2}|\d{1,2}([-./])\d{1,2}\2\d{4})")
AT_WORDS = frozenset({"at", "[at]", "(at)", "{at}", "<at>", "@"})
DOT_WORDS = frozenset({"dot", "[dot]", "(dot)", "{dot}", "<dot>", "."})
EDGE = "\"'.,;:!?()[]{}<>«»“”‘’"
# "look at the dot com": English words that follow "at" are not a mail host
NOT_HOSTS = frozenset("the a an this that his her their our my your its home work night once least last first".split())


def _phones(text: str) -> list[str]:
    out = []
    runs = [(m.start(), m.end()) for m in DIGIT_RUN.finditer(text)]
    i = 0
    while i < len(runs):
        start, end = runs[i]
        digits = end - start
        j = i
        # join the next run when one separator (or ") " / " (") stands between them
        while j + 1 < len(runs):
            gap = text[runs[j][1]:runs[j + 1][0]]
            if not gap or len(gap) > 2 or any(ch not in JOINERS for ch in gap) or (len(gap) == 2 and gap not in (") ", " (")):
                break
            j += 1
            digits += runs[j][1] - runs[j][0]
        begin = start - 1 if start and text[start - 1] == "+" else start
        if begin and text[begin - 1] == "(":
            begin -= 1
        value = text[begin:runs[j][1]]
        if 8 <= digits <= 15 and value not in STAND_INS and not _is_ip(value) and not DATE.fullmatch(value):
            out.append(value)
        i = j + 1
    return out


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _ips(tokens: list[str]) -> list[str]:
    out = []
    for token in tokens:
        if (token.count(".") >= 3 or token.count(":") >= 2) and _is_ip(token) and token not in STAND_INS:
            out.append(token)
    return out


def _emails(raw: list[str], tokens: list[str]) -> list[str]:
    out = []
    for token in tokens:
        if "@" in token and "." in token.split("@", 1)[1] and token not in STAND_INS:
            out.append(token)
    for token in raw:            # written without spaces: name(at)host(dot)test
        low = token.lower()
        if any(m in low for m in ("(at)", "[at]", "{at}")) and any(m in low for m in ("(dot)", "[dot]", "{dot}")):
            out.append(token)
    lowered = [t.lower() for t in raw]
    for i in range(1, len(raw) - 3):
        if lowered[i] not in AT_WORDS or not tokens[i - 1] or not tokens[i + 1] or lowered[i + 1] in NOT_HOSTS:
            continue
        k = i + 2
        while k + 1 < len(raw) and lowered[k] in DOT_WORDS and tokens[k + 1]:
            k += 2
        if k > i + 2:
            out.append(" ".join(raw[i - 1:k]))
    return out


def audit(text: str) -> list[tuple[str, str]]:
    """(kind, text) for each piece of personal data found; stand-ins excluded."""
    raw = text.split()
    tokens = [t.strip(EDGE) for t in raw]
    return ([("phone", v) for v in _phones(text)] + [("ip", v) for v in _ips(tokens)]
            + [("email", v) for v in _emails(raw, tokens)])
