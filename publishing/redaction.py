"""Secrets out of everything stored or logged about a delivery.

A receiver may echo what we sent (a 401 page that prints the ``Authorization`` header, a
debug answer with the whole request), so an attempt's error is redacted before it is stored
in a delivery, its attempt log or its events, and before it is logged: the destination's own
credentials in every form we send them (plain, without spaces, base64 of ``user:password``),
then anything shaped like a credential (Authorization values, ``whsec_`` secrets, JWTs). The
answer's text itself is for admins only; ``public_error`` is what other members see.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

REDACTED = "[redacted]"

_PATTERNS = [
    # Authorization / Proxy-Authorization header values, quoted or not, any scheme.
    # (the scheme, if any, and the credential after it).
    re.compile(r"(?i)((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)(?:[A-Za-z]+ +)?[^\s\"',}]+"),
    # Schemes with a credential after them wherever they appear (an echoed header line): a
    # credential has a digit or a base64 sign in it, or is long; "token provided" is words.
    re.compile(
        r"(?i)\b(basic|bearer|ghost|token)(\s+)"
        r"(?:(?=[A-Za-z._~-]*[0-9+/=])[A-Za-z0-9+/=._~-]{8,}|[A-Za-z0-9+/=._~-]{20,})"
    ),
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),
    # JWTs: three base64url parts, the first a JSON header ("eyJ").
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
]


def secret_forms(*, secret: str, username: str = "") -> list[str]:
    """The ways a destination's credentials can appear in an answer: the secret, without its
    spaces (WordPress application passwords), base64 of ``user:password`` (HTTP basic auth),
    each part of a Ghost ``id:hex`` key."""
    forms: set[str] = set()
    if not secret:
        return []
    compact = secret.replace(" ", "")
    for value in {secret, compact}:
        forms.add(value)
        if username:
            pair = f"{username}:{value}".encode()
            forms.add(base64.b64encode(pair).decode())
            forms.add(base64.b64encode(pair).decode().rstrip("="))
    key_id, sep, hex_secret = secret.partition(":")
    if sep and hex_secret:
        forms.update({hex_secret, key_id} if len(key_id) >= 8 else {hex_secret})
    if secret.startswith("whsec_"):
        forms.add(secret.removeprefix("whsec_"))
    # Short fragments would blank out ordinary words: only forms long enough to be secrets.
    return sorted((f for f in forms if len(f) >= 6), key=len, reverse=True)


def redact(text: str, *, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secrets and anything shaped like a credential replaced."""
    if not text:
        return text
    for value in secrets:
        if value:
            text = text.replace(value, REDACTED)
    text = _PATTERNS[0].sub(lambda m: m.group(1) + REDACTED, text)
    text = _PATTERNS[1].sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    for pattern in _PATTERNS[2:]:
        text = pattern.sub(REDACTED, text)
    return text


def public_error(text: str) -> str:
    """What a member who is not an admin sees of an attempt's error: what happened (the status
    code, a timeout, a refusal), never the receiver's answer."""
    if text.startswith("HTTP ") and ":" in text:
        return text.split(":", 1)[0] + " (the receiver's answer is shown to project admins)"
    return text
