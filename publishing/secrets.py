"""Destination secrets, encrypted at rest with a key derived from SECRET_KEY.

The plain secret is only ever in memory while a delivery is signed or sent; pages show the last
characters (``hint``), logs and error messages never the secret itself.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    # A separate key per purpose: the raw SECRET_KEY signs sessions; this one encrypts.
    digest = hashlib.sha256(f"contentstudio-destination-secrets:{settings.SECRET_KEY}".encode())
    return Fernet(base64.urlsafe_b64encode(digest.digest()))


def encrypt(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        # Not the secret in the message: it could not be read, so there is none to leak.
        raise ValueError(
            "The destination's secret cannot be decrypted (SECRET_KEY changed?): enter it again."
        ) from None


def hint(secret: str) -> str:
    return "…" + secret[-4:] if len(secret) >= 12 else "…"
