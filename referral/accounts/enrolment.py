"""Enrolment by the account holder, so an admin never learns a password or a TOTP secret (SPEC §1).

An admin who creates an account, or resets its authenticator, gets a one-time link (valid 72 hours)
to hand to the holder out of band. With it the holder chooses the password (a new account) or gives
the current one (a reset), adds a TOTP secret to an authenticator app, and confirms with a current
code; only then is the account usable and the link spent. Focal points have no TOTP: for them the
link sets the password only.

The TOTP secret is made when the page is shown and kept only encrypted under a key derived from the
link and a random value in the showing browser's session. Whoever opens the link in another browser
(an admin looking before handing it over) is shown a different secret, and the earlier one can no
longer be confirmed; the holder's own browser, reloading, sees the same one. A database reader sees
neither.

Links carry 256 random bits and are stored as SHA-256 only, like API tokens. Audit events name the
account, the kind of link and what failed; never the link, a password or a secret. Services here
never commit: a failed attempt leaves only its denied event (and a counted password failure) for
the caller to commit, as sign-in does.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from referral.accounts import auth
from referral.accounts.models import Enrolment, EnrolmentKind, User
from referral.audit.service import DENIED, record
from referral.db import utcnow
from referral.errors import N_, NotFound
from referral.extensions import db
from referral.security import passwords, totp
from referral.security.tokens import digest, new_secret

LINK_TTL = dt.timedelta(hours=72)
_KEY_LABEL = b"amanat enrolment totp v1\x00"
_NONCE_BYTES = 12


@dataclass(frozen=True)
class IssuedLink:
    """The raw link token, given once to the admin who asked for it; only its hash is kept."""

    token: str
    kind: EnrolmentKind
    expires_at: dt.datetime


@dataclass(frozen=True)
class EnrolmentPage:
    enrolment: Enrolment
    secret: str | None  # the TOTP secret this browser is to scan; None for focal points


class LinkRefused(NotFound):
    """Unknown, used, withdrawn or expired: one answer for all, so a link reveals nothing."""

    code = "enrolment_link_refused"
    message = N_("This set-up link cannot be used.")


class EnrolmentRefused(auth.CredentialProblems):
    MESSAGES = {
        ("current_password", "wrong"): "This is not the account's password.",
        ("current_password", "locked"): "Too many wrong passwords: wait a few minutes and try again.",
        ("otp", "wrong"): "This code does not match. Check the time on your phone and use the newest code.",
        ("otp", "stale"): "The set-up page was opened again since; add the key shown now to your app.",
    }


# -- issuing (admins, the actor explicit) -----------------------------------------------------------

def issue_link(actor: User | None, user: User, kind: EnrolmentKind, *, now: dt.datetime | None = None) -> IssuedLink:
    """A new one-time link for ``user``'s holder; any earlier unused link of the account stops working.

    Callers have checked that ``actor`` may manage ``user``.
    """
    now = now or utcnow()
    auth.withdraw_links(user, now)
    raw, hashed = new_secret()
    expires_at = now + LINK_TTL
    db.session.add(Enrolment(token_hash=hashed, user_id=user.id, kind=kind, issued_by_id=getattr(actor, "id", None),
                             created_at=now, expires_at=expires_at))
    record(db.session, actor, "user.enrolment.issue", object_type="user", object_id=user.id,
           reason=f"{kind.value} link, valid until {expires_at.isoformat(timespec='minutes')}", now=now)
    return IssuedLink(token=raw, kind=kind, expires_at=expires_at)


# -- using (the holder, who is not signed in) ---------------------------------------------------------

def _refusal(row: Enrolment | None, now: dt.datetime) -> str | None:
    if row is None:
        return "unknown link"
    if row.used_at is not None:
        return "link already used"
    if row.revoked_at is not None:
        return "link withdrawn"
    if row.expires_at <= now:
        return "link expired"
    if not row.user.active:
        return "account deactivated"
    return None


def _find(raw: str, action: str, now: dt.datetime) -> Enrolment:
    """The live enrolment behind ``raw``, locked for this transaction (one completion wins), or a refusal."""
    row = db.session.scalar(select(Enrolment).where(Enrolment.token_hash == digest(raw or ""))
                            .with_for_update().execution_options(populate_existing=True))
    reason = _refusal(row, now)
    if reason is not None:
        record(db.session, None, action, object_type="user" if row else None, object_id=row.user_id if row else None,
               outcome=DENIED, reason=reason, now=now)
        raise LinkRefused()
    assert row is not None
    return row


def _key(raw: str, browser_key: str) -> bytes:
    return hmac.new(raw.encode(), _KEY_LABEL + browser_key.encode(), hashlib.sha256).digest()


def _aad(row: Enrolment) -> bytes:
    return f"enrolments.pending_secret:{row.id}".encode()


def _pending_secret(row: Enrolment, raw: str, browser_key: str) -> str | None:
    """The secret shown to this browser, if it is still the one stored; None if another browser was shown one since."""
    blob = row.pending_secret
    if not blob or not browser_key:
        return None
    try:
        return AESGCM(_key(raw, browser_key)).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(row)).decode()
    except InvalidTag:
        return None


def open_page(raw: str, browser_key: str, *, now: dt.datetime | None = None) -> EnrolmentPage:
    """What the holder's set-up page shows: the account, and the TOTP secret for this browser.

    A browser that was shown a secret before sees it again; any other gets a new one, which replaces it.
    """
    now = now or utcnow()
    row = _find(raw, "user.enrolment.open", now)
    user, secret, shown = row.user, None, "no authenticator"
    if user.requires_totp:
        secret = _pending_secret(row, raw, browser_key)
        shown = "same authenticator key shown again"
        if secret is None:
            secret = totp.new_secret()
            nonce = os.urandom(_NONCE_BYTES)
            row.pending_secret = nonce + AESGCM(_key(raw, browser_key)).encrypt(nonce, secret.encode(), _aad(row))
            shown = "new authenticator key shown"
    record(db.session, user, "user.enrolment.open", object_type="user", object_id=user.id,
           reason=f"{row.kind.value} link; {shown}", now=now)
    return EnrolmentPage(enrolment=row, secret=secret)


def complete(raw: str, browser_key: str, *, password: str = "", current_password: str = "", code: str = "",
             now: dt.datetime | None = None) -> User:
    """Set the account up and spend the link.

    A new account's holder chooses the password (the same rules as everywhere: 8-128 characters, not a
    common one); after a reset the holder proves the current one, and wrong tries count towards the
    lockout as at sign-in. Roles that read case content must confirm the secret they were shown with a
    current code, which is then used up. Nothing changes unless everything is right.
    """
    now = now or utcnow()
    row = _find(raw, "user.enrolment.complete", now)
    user = row.user
    problems: dict[str, list[str]] = {}
    if row.kind is EnrolmentKind.account:
        codes = passwords.password_problem_codes(password or "", email=user.email)
        if codes:
            problems["password"] = codes
    else:
        password_ok = passwords.verify_password(user.password_hash, current_password or "")
        if auth.is_locked(user, now):
            problems["current_password"] = ["locked"]
        elif not password_ok:
            auth.record_failure(user, now)
            problems["current_password"] = ["locked" if auth.is_locked(user, now) else "wrong"]
    secret, counter = None, None
    if user.requires_totp:
        secret = _pending_secret(row, raw, browser_key)
        counter = totp.matching_counter(secret, code or "", now, None) if secret else None
        if secret is None:
            problems["otp"] = ["stale"]
        elif counter is None:
            problems["otp"] = ["wrong"]
    if problems:
        record(db.session, user, "user.enrolment.complete", object_type="user", object_id=user.id, outcome=DENIED,
               reason="; ".join(f"{field} {' '.join(codes)}" for field, codes in sorted(problems.items())), now=now)
        raise EnrolmentRefused(problems)

    written = []
    if row.kind is EnrolmentKind.account:
        user.password_hash = passwords.hash_password(password, auth.AuthPolicy.current().argon2_profile)
        user.enrolment_pending = False
        written.append("password")
    else:
        auth.clear_failures(user)
    if secret is not None:
        auth.set_totp_secret(user, secret)
        user.totp_last_counter = counter  # the confirming code cannot also sign in
        written.append("totp_secret")
    row.used_at, row.pending_secret = now, None
    record(db.session, user, "user.enrolment.complete", object_type="user", object_id=user.id,
           reason=f"{row.kind.value} link", fields=written, now=now)
    return user
