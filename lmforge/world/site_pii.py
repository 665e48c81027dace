"""Personal data the built-in site plants inside real pages: the formats the PII rules were
written for (seen), and formats they were not (unseen), each kept in the site's truth.

    from lmforge.world.site_pii import seen_pii, unseen_pii
    seen_pii("Ada Berg", rng)        # {"email": "ada.berg12@postbox.example", "phone": "+47 912 34 567", ...}
    unseen_pii("Ada Berg", rng)      # [{"kind": "phone_national", "value": "030 123456"}, ...]

Seen: e-mail addresses, four phone formats (+47, +1 (...), NNN-NNN-NNNN, +44 20) and IPv4.
Unseen, made with libphonenumber's metadata (`phonenumbers`), so the formats come from the
library, not from whoever wrote the rules:

  phone_international   a valid number of one of 16 countries in the library's
                        INTERNATIONAL format ("+49 1512 3456789", "+81 90-1234-5678")
  phone_national        the same kind of number as its country writes it at home
                        ("0151 23456789", "06 12 34 56 78", "(11) 91234-5678")
  phone_dotted          international, with every space and hyphen a dot ("+33.6.12.34.56.78")
  phone_e164            no separators at all ("+4915123456789")
  email_obfuscated      "ada.berg12 at postbox dot example", "[at]"/"(at)" and "[dot]"/"(dot)",
                        upper case, " @ " and " . "
  ipv6                  a global unicast address, compressed or written out in full
"""
from __future__ import annotations

import ipaddress
import random
import re

PII_TEMPLATES = {"en": ["Questions about this page? Write to {email} or call {phone}.",
                        "This page was last edited from the address {ip}."],
                 "nb": ["Spørsmål om siden? Skriv til {email} eller ring {phone}.",
                        "Siden ble sist redigert fra adressen {ip}."]}
UNSEEN_TEMPLATES = {"en": "The author can also be reached as {email}, by phone on {phone}, or at the server {ip}.",
                    "nb": "Forfatteren kan også nås som {email}, på telefon {phone}, eller på serveren {ip}."}
MAIL_DOMAINS = ["postbox.example", "mailhub.example", "inbox.example", "letters.example"]
UNSEEN_DOMAINS = ["fjordpost.example", "mail.nordlys.test", "bergen.post.example", "kontor.test"]
REGIONS = ["DE", "FR", "GB", "JP", "BR", "IN", "AU", "ES", "IT", "NL", "SE", "PL", "ZA", "MX", "KR", "CH"]
PHONE_KINDS = ("phone_international", "phone_national", "phone_dotted", "phone_e164")
OBFUSCATIONS = [(" at ", " dot "), (" [at] ", " [dot] "), ("(at)", "(dot)"), (" AT ", " DOT "), (" @ ", " . ")]
UNSEEN_KINDS = PHONE_KINDS + ("email_obfuscated", "ipv6")


def local_part(name: str, rng: random.Random) -> str:
    return f"{re.sub(r'[^a-z]+', '.', name.lower()).strip('.') or 'reader'}{rng.randint(1, 99)}"


# ---------------------------------------------------------------- seen formats (the site's originals)

def _phone(rng: random.Random) -> str:
    style = rng.randrange(4)
    if style == 0:
        return f"+47 {rng.randint(400, 999)} {rng.randint(10, 99)} {rng.randint(100, 999)}"
    if style == 1:
        return f"+1 ({rng.randint(200, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
    if style == 2:
        return f"{rng.randint(200, 989)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}"
    return f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"


def _ip(rng: random.Random) -> str:
    first = rng.choice([10, 172, 192, 203, 81, 46])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _email(name: str, rng: random.Random) -> str:
    return f"{local_part(name, rng)}@{rng.choice(MAIL_DOMAINS)}"


def seen_pii(name: str, rng: random.Random) -> dict:
    """The seen formats; drawn in this order from the site's own random stream (unchanged)."""
    return {"email": _email(name, rng), "phone": _phone(rng), "ip": _ip(rng)}


# ---------------------------------------------------------------- unseen formats

def _valid_number(region: str, rng: random.Random):
    """A random valid mobile or fixed-line number of the region (the example number with its
    last digits redrawn until libphonenumber says it is valid)."""
    import phonenumbers
    from phonenumbers import PhoneNumberType
    kind = rng.choice([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE])
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    digits = str(example.national_number)
    for _ in range(50):
        keep = max(2, len(digits) - 5)
        candidate = digits[:keep] + "".join(str(rng.randrange(10)) for _ in range(len(digits) - keep))
        number = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if phonenumbers.is_valid_number(number):
            return number
    return example


def unseen_phone(kind: str, rng: random.Random) -> str:
    import phonenumbers
    from phonenumbers import PhoneNumberFormat as F
    number = _valid_number(rng.choice(REGIONS), rng)
    if kind == "phone_national":
        return phonenumbers.format_number(number, F.NATIONAL)
    if kind == "phone_e164":
        return phonenumbers.format_number(number, F.E164)
    text = phonenumbers.format_number(number, F.INTERNATIONAL)
    return re.sub(r"[ -]", ".", text) if kind == "phone_dotted" else text


def obfuscated_email(name: str, rng: random.Random) -> str:
    at, dot = rng.choice(OBFUSCATIONS)
    host = rng.choice(UNSEEN_DOMAINS)
    return local_part(name, rng) + at + dot.join(host.split("."))


def ipv6(rng: random.Random) -> str:
    # 2000::/3 is global unicast; documentation addresses (2001:db8::/32) are the stand-ins
    address = ipaddress.IPv6Address((0x1 << 125) | rng.getrandbits(125))
    if address in ipaddress.IPv6Network("2001:db8::/32"):
        address = ipaddress.IPv6Address(int(address) ^ (1 << 120))
    return address.exploded if rng.random() < 0.3 else str(address)


def unseen_pii(name: str, rng: random.Random) -> list[dict]:
    """One e-mail, one phone number and one IPv6 address in formats the seen rules never saw."""
    phone_kind = rng.choice(PHONE_KINDS)
    return [{"kind": "email_obfuscated", "value": obfuscated_email(name, rng)},
            {"kind": phone_kind, "value": unseen_phone(phone_kind, rng)},
            {"kind": "ipv6", "value": ipv6(rng)}]


def unseen_line(items: list[dict], lang: str) -> str:
    values = {item["kind"].split("_")[0]: item["value"] for item in items}
    return UNSEEN_TEMPLATES[lang].format(email=values["email"], phone=values["phone"], ip=values["ipv6"])
