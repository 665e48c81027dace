"""Step 7 of cleaning: replace personal data (e-mail addresses, phone numbers, IP addresses).

    from lmforge.data.pii import PiiReplacer, find_pii
    PiiReplacer().process({"text": "Write to ada@post.example", ...})["text"]   # "Write to email@example.com"
    find_pii("call +47 912 34 567")                                          # [("phone", "+47 912 34 567")]

Like FineWeb, the document stays and the data is swapped for a harmless stand-in, so the
sentence still reads naturally: addresses reserved for documentation (example.com, 192.0.2.1)
and a fictional phone number (555-0100). The stand-ins are never replaced again, so the step is
idempotent. The patterns are deliberately narrow for phones (8 to 15 digits in phone-like
groups), so years, populations and sums ("12 + 5 = 17") are never mistaken for numbers.
"""
from __future__ import annotations

import re

from .steps import Step

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?![\w]|\.\d)")
PHONE = re.compile(r"""(?<![\w+])(?:
      \+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}   # +47 912 34 567, +1 (555) 013-2477
    | \(\d{3}\)[ ]?\d{3}[ .-]\d{4}                                         # (555) 013-2477
    | \d{3}[.-]\d{3}[.-]\d{4}                                              # 555-013-2477
)(?![\w])""", re.VERBOSE)
DEFAULT_REPLACEMENTS = {"email": "email@example.com", "phone": "555-0100", "ip": "192.0.2.1"}


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def find_pii(text: str, replacements: dict | None = None) -> list[tuple[str, str]]:
    """(kind, matched text) for every piece of personal data, stand-ins excluded."""
    stand_ins = set((replacements or DEFAULT_REPLACEMENTS).values())
    found = []
    for kind, pattern in (("email", EMAIL), ("ip", IPV4), ("phone", PHONE)):
        for match in pattern.finditer(text):
            value = match.group()
            if value in stand_ins or (kind == "phone" and not 8 <= _digits(value) <= 15):
                continue
            found.append((kind, value))
    return found


class PiiReplacer(Step):
    name = "pii"

    def __init__(self, email: bool = True, phone: bool = True, ip: bool = True, replacements: dict | None = None):
        self.replacements = {**DEFAULT_REPLACEMENTS, **(replacements or {})}
        self.patterns = [(kind, pattern) for kind, pattern, on in
                         (("email", EMAIL, email), ("ip", IPV4, ip), ("phone", PHONE, phone)) if on]
        self.stand_ins = set(self.replacements.values())

    def process(self, doc: dict) -> dict:
        text = doc["text"]
        counts = {}
        for kind, pattern in self.patterns:
            if kind == "email" and "@" not in text:
                continue        # cheap pre-checks: most documents have no personal data at all
            if kind == "ip" and text.count(".") < 3:
                continue
            replacement = self.replacements[kind]

            def swap(match: re.Match, kind=kind, replacement=replacement) -> str:
                value = match.group()
                if value in self.stand_ins or (kind == "phone" and not 8 <= _digits(value) <= 15):
                    return value
                counts[kind] = counts.get(kind, 0) + 1
                return replacement

            text = pattern.sub(swap, text)
        if not counts:
            return doc
        return {**doc, "text": text, "meta": {**doc.get("meta", {}), "pii_replaced": counts}}
