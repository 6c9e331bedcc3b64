"""TOTP (RFC 6238) with replay protection: a code's time step is usable once."""
from __future__ import annotations

import datetime as dt
import hmac

import pyotp

# One step either side absorbs phone clocks that drift by up to 30 seconds.
VALID_WINDOW = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def matching_counter(secret: str, code: str, now: dt.datetime, last_counter: int | None) -> int | None:
    """The time step ``code`` belongs to, if it is valid now and newer than the last one used.

    Returning the step lets the caller store it, so the same code (or an older
    one) is refused next time: a code seen over a shoulder cannot be replayed.
    """
    code = (code or "").strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for counter in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if last_counter is not None and counter <= last_counter:
            continue
        if hmac.compare_digest(totp.generate_otp(counter), code):
            return counter
    return None


def code_at(secret: str, when: dt.datetime) -> str:
    return pyotp.TOTP(secret).at(when)
