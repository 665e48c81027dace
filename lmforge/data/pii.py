"""Step 7 of cleaning: replace personal data (e-mail addresses, phone numbers, IP addresses).

Covered: plain and obfuscated e-mail ("ada at host dot com", "[at]", "(at)", " @ "), phone
numbers written internationally (+CC or 00CC, groups split by spaces, dots, hyphens, slashes
or parentheses, or none), nationally with a trunk 0 ("030 123456", "06.12.34.56.78"), or as
three to six digit groups ("312 341 8971"), IPv4, and IPv6 (validated with `ipaddress`).
Whether this holds on formats nobody tuned it for is measured with an independent detector
(lmforge/data/pii_audit.py) and the site's planted truth, not with these patterns.

    from lmforge.data.pii import PiiReplacer, find_pii
    PiiReplacer().process({"text": "Write to ada@post.example", ...})["text"]   # "Write to email@example.com"
    find_pii("call +47 912 34 567")                                          # [("phone", "+47 912 34 567")]

Like FineWeb, the document stays and the data is swapped for a harmless stand-in, so the
sentence still reads naturally: addresses reserved for documentation (example.com, 192.0.2.1)
and a fictional phone number (555-0100). The stand-ins are never replaced again, so the step is
idempotent. The patterns are deliberately narrow for phones (8 to 15 digits in phone-like
groups), so years, populations, dates and sums ("12 + 5 = 17") are never mistaken for numbers.
"""
from __future__ import annotations

import ipaddress
import re

from .steps import Step

EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])")
_AT = r"(?:\s+(?:at|AT)\s+|\s*[\[(<{]\s*(?:at|AT)\s*[\])>}]\s*|\s+@\s+)"
_DOT = r"(?:\s+(?:dot|DOT)\s+|\s*[\[(<{]\s*(?:dot|DOT)\s*[\])>}]\s*|\s+\.\s+)"
OBFUSCATED_EMAIL = re.compile(rf"(?<![\w.+-])[A-Za-z0-9._%+-]+{_AT}(?:[A-Za-z0-9-]+{_DOT})+[A-Za-z]{{2,}}(?![\w-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?![\w]|\.\d)")
IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|:|\d{1,3}(?:\.\d{1,3}){3})(?![\w:])")
_SEP = r"(?:[ .\-/]|\s?\(|\)\s?)"
PHONE = re.compile(rf"""(?<![\w+.])(?:
      (?:\+|00)\d{{1,3}}(?:{_SEP}{{0,2}}\d{{1,5}}){{1,6}}                      # +47 912 34 567, +1 (555) 013-2477, +4915123456789
    | \(?0\d{{1,5}}\)?(?:{_SEP}{{1,2}}\d{{2,8}}){{1,5}}                      # 030 123456, (0)30-123 45, 06.12.34.56.78
    | \(\d{{2,4}}\)\s?\d{{3,5}}[ .-]?\d{{3,4}}                                # (555) 013-2477, (11) 91234-5678
    | \d{{2,4}}(?:[ .-]\d{{2,5}}){{2,5}}                                      # 555-013-2477, 312 341 8971
)(?![\w]|[.-]\d)""", re.VERBOSE)
# ISO and European calendar dates have a phone's digit count and separators: never a number
DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{4}/\d{2}/\d{2}|\d{2}\.\d{2}\.\d{4}")
DEFAULT_REPLACEMENTS = {"email": "email@example.com", "phone": "555-0100", "ip": "192.0.2.1", "ipv6": "2001:db8::1"}


def _digits(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def _is_ipv6(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _counts(kind: str, value: str, stand_ins: set) -> bool:
    """Whether a pattern's match is personal data (not a stand-in, and plausible for its kind)."""
    if value in stand_ins:
        return False
    if kind == "phone":
        return 8 <= _digits(value) <= 15 and not DATE.fullmatch(value)
    if kind == "ipv6":
        return _is_ipv6(value)
    return True


PATTERNS = (("email", EMAIL), ("email", OBFUSCATED_EMAIL), ("ipv6", IPV6), ("ip", IPV4), ("phone", PHONE))


def find_pii(text: str, replacements: dict | None = None) -> list[tuple[str, str]]:
    """(kind, matched text) for every piece of personal data these patterns see, stand-ins excluded."""
    stand_ins = set((replacements or DEFAULT_REPLACEMENTS).values())
    return [(kind, m.group()) for kind, pattern in PATTERNS for m in pattern.finditer(text)
            if _counts(kind, m.group(), stand_ins)]


class PiiReplacer(Step):
    name = "pii"

    def __init__(self, email: bool = True, phone: bool = True, ip: bool = True, replacements: dict | None = None):
        self.replacements = {**DEFAULT_REPLACEMENTS, **(replacements or {})}
        wanted = {"email": email, "ip": ip, "ipv6": ip, "phone": phone}
        self.patterns = [(kind, pattern) for kind, pattern in PATTERNS if wanted[kind]]
        self.stand_ins = set(self.replacements.values())

    def process(self, doc: dict) -> dict:
        text = doc["text"]
        counts = {}
        lowered = None
        for kind, pattern in self.patterns:
            # cheap pre-checks: most documents have no personal data at all
            if pattern is EMAIL and "@" not in text:
                continue
            if pattern is OBFUSCATED_EMAIL:
                lowered = lowered or text.lower()
                if "at" not in lowered or ("dot" not in lowered and " . " not in lowered):
                    continue
            if kind == "ip" and text.count(".") < 3:
                continue
            if kind == "ipv6" and text.count(":") < 2:
                continue
            replacement = self.replacements[kind]

            def swap(match: re.Match, kind=kind, replacement=replacement) -> str:
                value = match.group()
                if not _counts(kind, value, self.stand_ins):
                    return value
                counts[kind] = counts.get(kind, 0) + 1
                return replacement

            text = pattern.sub(swap, text)
        if not counts:
            return doc
        return {**doc, "text": text, "meta": {**doc.get("meta", {}), "pii_replaced": counts}}
