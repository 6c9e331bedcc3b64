"""High-entropy secrets for sessions and API tokens.

They carry 256 bits of randomness, so a plain SHA-256 lookup is safe and fast;
a password hash here would only cost capacity (argon2 manages ~14/s here).
"""
from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "amn_"


def new_secret(prefix: str = "") -> tuple[str, bytes]:
    raw = prefix + secrets.token_urlsafe(32)
    return raw, digest(raw)


def digest(raw: str) -> bytes:
    return hashlib.sha256(raw.encode("utf-8")).digest()
