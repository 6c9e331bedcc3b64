"""Login, lockout, server-side sessions and API tokens (SPEC §7).

Every failure answers the same way (``AuthFailed``), whether the e-mail is
unknown, the password or code wrong, the account locked or deactivated, so the
answers never tell which accounts exist. The caller commits even on failure:
the failure counter is the point.
"""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm.attributes import set_committed_value

from referral import rowload
from referral.accounts.models import ApiToken, Enrolment, User, UserSession
from referral.audit.service import DENIED, record
from referral.db import utcnow
from referral.errors import N_, DomainError, ValidationFailed
from referral.extensions import db
from referral.security import passwords, totp
from referral.security.keyring import keyring_for
from referral.security.tokens import TOKEN_PREFIX, digest, new_secret


class AuthFailed(DomainError):
    status = 401
    code = "invalid_credentials"
    message = N_("Invalid e-mail, password or code.")


@dataclass(frozen=True)
class AuthPolicy:
    lockout_threshold: int
    lockout_window: dt.timedelta
    lockout_duration: dt.timedelta
    session_idle: dt.timedelta
    session_absolute: dt.timedelta
    token_ttl: dt.timedelta
    argon2_profile: str

    @classmethod
    def current(cls) -> AuthPolicy:
        c = current_app.config
        return cls(
            lockout_threshold=c["LOCKOUT_THRESHOLD"],
            lockout_window=dt.timedelta(minutes=c["LOCKOUT_WINDOW_MINUTES"]),
            lockout_duration=dt.timedelta(minutes=c["LOCKOUT_MINUTES"]),
            session_idle=dt.timedelta(minutes=c["SESSION_IDLE_MINUTES"]),
            session_absolute=dt.timedelta(hours=c["SESSION_ABSOLUTE_HOURS"]),
            token_ttl=dt.timedelta(hours=c["TOKEN_TTL_HOURS"]),
            argon2_profile=c.get("ARGON2_PROFILE", "default"),
        )


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


# -- TOTP secrets -------------------------------------------------------------

def _totp_aad(user: User) -> str:
    return f"users.totp_secret_sealed:{user.id}"


def set_totp_secret(user: User, secret: str | None = None) -> str:
    """Give ``user`` a TOTP secret (a new one unless given), sealed at rest; return it.

    Only the operator's CLI and the holder's own enrolment call this: an admin never sees the result.
    """
    if user.id is None:
        db.session.flush()
    secret = secret or totp.new_secret()
    user.totp_secret_sealed = keyring_for(current_app).seal(
        secret.encode(), purpose="totp", aad=_totp_aad(user)
    )
    user.totp_last_counter = None
    return secret


def reseal_totp_secret(user: User) -> None:
    """Re-encrypt the TOTP secret under the active KEK (key rotation); the secret is unchanged."""
    secret = totp_secret(user)
    if secret is not None:
        user.totp_secret_sealed = keyring_for(current_app).seal(secret.encode(), purpose="totp", aad=_totp_aad(user))


def totp_secret(user: User) -> str | None:
    if user.totp_secret_sealed is None:
        return None
    return keyring_for(current_app).open_sealed(
        user.totp_secret_sealed, purpose="totp", aad=_totp_aad(user)
    ).decode()


# -- authentication -------------------------------------------------------------

def is_locked(user: User, now: dt.datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def record_failure(user: User, now: dt.datetime, policy: AuthPolicy | None = None) -> None:
    """Count a failed proof of the password; the threshold within any window (a sliding one) locks the account."""
    policy = policy or AuthPolicy.current()
    earlier = [dt.datetime.fromisoformat(t) for t in (user.failure_times or "").split()]
    recent = [t for t in earlier if now - t <= policy.lockout_window] + [now]
    recent = recent[-policy.lockout_threshold:]
    user.failure_times = " ".join(t.astimezone(dt.UTC).isoformat() for t in recent)
    user.failed_logins, user.failed_window_started_at = len(recent), recent[0]
    if len(recent) >= policy.lockout_threshold:
        user.locked_until = now + policy.lockout_duration


def clear_failures(user: User) -> None:
    user.failed_logins = 0
    user.failed_window_started_at = None
    user.failure_times = None
    user.locked_until = None


def authenticate(email: str, password: str, otp: str | None, *, now: dt.datetime | None = None) -> User:
    """Check e-mail, password and (for case-reading roles) a fresh TOTP code.

    Five failures within the window lock the account for the lockout period;
    while locked even the right password fails, with the same answer.
    """
    now = now or utcnow()
    policy = AuthPolicy.current()
    # Locked for the rest of this short transaction: concurrent attempts must
    # each count towards the lockout, and a TOTP step must be usable once.
    user = db.session.scalar(select(User).where(User.email == normalise_email(email))
                             .with_for_update().execution_options(populate_existing=True))
    if user is None:
        passwords.burn_verification(policy.argon2_profile)
        # The typed e-mail is not recorded: it may be a mistyped password.
        record(db.session, None, "auth.login", outcome=DENIED, reason="unknown account", now=now)
        raise AuthFailed()

    def refuse(reason: str, *, count: bool) -> AuthFailed:
        if count:
            record_failure(user, now, policy)
        record(db.session, user, "auth.login", object_type="user", object_id=user.id, outcome=DENIED,
               reason=reason + ("; account now locked" if count and is_locked(user, now) else ""), now=now)
        return AuthFailed()

    password_ok = passwords.verify_password(user.password_hash, password or "")
    if is_locked(user, now):
        raise refuse("account locked", count=False)
    if not user.active:
        raise refuse("account deactivated", count=False)
    if user.enrolment_pending:
        # Its password is a random one nobody knows until the holder sets up the account.
        raise refuse("account not set up yet", count=False)
    if not password_ok:
        raise refuse("wrong password", count=True)
    secret = totp_secret(user)
    if user.requires_totp or secret is not None:
        if secret is None:
            # A case-reading account without a secret cannot sign in until its
            # holder sets one up with the link an admin issues (reset TOTP).
            raise refuse("no TOTP enrolled", count=False)
        counter = totp.matching_counter(secret, otp or "", now, user.totp_last_counter)
        if counter is None:
            raise refuse("wrong, missing or replayed code", count=True)
        user.totp_last_counter = counter
    clear_failures(user)
    if passwords.needs_rehash(user.password_hash, policy.argon2_profile):
        user.password_hash = passwords.hash_password(password, policy.argon2_profile)
    record(db.session, user, "auth.login", object_type="user", object_id=user.id, now=now)
    return user


# -- changing one's own password -------------------------------------------------------

class CredentialProblems(ValidationFailed):
    """What the holder must put right; ``problems`` maps a field to codes a page can translate, and the
    API answer carries them in words (the password rules' own, else ``MESSAGES``)."""

    MESSAGES: dict[tuple[str, str], str] = {}

    def __init__(self, problems: dict[str, list[str]]) -> None:
        self.problems = problems
        super().__init__(fields={field: [passwords.PROBLEMS.get(code) or self.MESSAGES[(field, code)]
                                         for code in codes] for field, codes in problems.items()})


class PasswordChangeRefused(CredentialProblems):
    MESSAGES = {
        ("current_password", "wrong"): "This is not your current password.",
        ("current_password", "locked"): "Too many wrong passwords: wait a few minutes and try again.",
        ("new_password", "unchanged"): "Choose a password different from the current one.",
    }


def change_password(user: User, current_password: str, new_password: str, *, keep: UserSession | ApiToken | None,
                    now: dt.datetime | None = None) -> None:
    """The signed-in holder replaces their password, proving the current one (ASVS V6.2.2, V6.2.3).

    A wrong current password counts towards the lockout as at sign-in, so a borrowed session cannot
    guess it, and a locked account cannot change it. The new one follows the same rules as
    everywhere. On success every other session and every API token of the account ends (whoever
    knew the old password may have signed in with it); ``keep``, the credential of this request,
    stays. The caller commits even when this refuses: the failure count is the point.
    """
    now = now or utcnow()
    policy = AuthPolicy.current()
    # Locked like a sign-in: concurrent wrong tries must each count.
    db.session.refresh(user, with_for_update=True)
    problems: dict[str, list[str]] = {}
    if is_locked(user, now):
        problems["current_password"] = ["locked"]
    elif not passwords.verify_password(user.password_hash, current_password or ""):
        record_failure(user, now, policy)
        problems["current_password"] = ["locked" if is_locked(user, now) else "wrong"]
    else:
        codes = passwords.password_problem_codes(new_password or "", email=user.email)
        if not codes and new_password == current_password:
            codes = ["unchanged"]
        if codes:
            problems["new_password"] = codes
    if problems:
        record(db.session, user, "user.password.change", object_type="user", object_id=user.id, outcome=DENIED,
               reason="; ".join(f"{field} {' '.join(codes)}" for field, codes in sorted(problems.items())), now=now)
        raise PasswordChangeRefused(problems)
    user.password_hash = passwords.hash_password(new_password, policy.argon2_profile)
    clear_failures(user)
    ended = end_sign_ins(user, now, keep=keep)
    record(db.session, user, "user.password.change", object_type="user", object_id=user.id, fields=["password"],
           reason=f"{ended} other sign-ins ended", now=now)


# -- web sessions -----------------------------------------------------------------

def start_session(user: User, *, now: dt.datetime | None = None) -> str:
    """Create a server-side session; return the raw pointer for the cookie."""
    now = now or utcnow()
    policy = AuthPolicy.current()
    raw, hashed = new_secret()
    db.session.add(UserSession(token_hash=hashed, user=user, created_at=now, last_seen_at=now,
                               expires_at=now + policy.session_absolute))
    record(db.session, user, "auth.session.start", object_type="user", object_id=user.id, now=now)
    return raw


# Writing last_seen_at on every request would turn each read into a write;
# a minute of slack on a 15-minute idle limit is harmless.
TOUCH_INTERVAL = dt.timedelta(seconds=60)


def resolve_session(raw: str, *, now: dt.datetime | None = None) -> UserSession | None:
    """The live session for a cookie pointer, or None if unknown, revoked, idle or expired."""
    now = now or utcnow()
    policy = AuthPolicy.current()
    row = _with_user(UserSession, _session_with_user(), digest(raw))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if now - row.last_seen_at > policy.session_idle or not row.user.active:
        row.revoked_at = now
        return None
    if now - row.last_seen_at > TOUCH_INTERVAL:
        row.last_seen_at = now
    return row


def end_session(raw: str, *, now: dt.datetime | None = None) -> None:
    row = db.session.scalar(select(UserSession).where(UserSession.token_hash == digest(raw)))
    if row is not None:
        record(db.session, row.user, "auth.logout", object_type="user", object_id=row.user_id, now=now)
    db.session.execute(
        update(UserSession)
        .where(UserSession.token_hash == digest(raw), UserSession.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )


# -- API tokens -------------------------------------------------------------------

def issue_token(user: User, *, now: dt.datetime | None = None) -> tuple[str, ApiToken]:
    now = now or utcnow()
    raw, hashed = new_secret(TOKEN_PREFIX)
    token = ApiToken(token_hash=hashed, user=user, created_at=now, expires_at=now + AuthPolicy.current().token_ttl)
    db.session.add(token)
    record(db.session, user, "auth.token.create", object_type="user", object_id=user.id, now=now)
    return raw, token


@functools.cache
def _token_with_user() -> Any:
    # Built once: every API request runs it, and building it cost about as much as running it. The token's
    # and its user's columns, made into objects by rowload (past the ORM's per-query set-up, about a third
    # of the whole read of the token; docs/performance.md, session 14).
    return (select(*rowload.columns_of(ApiToken), *rowload.columns_of(User))
            .join_from(ApiToken, User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == bindparam("token_hash")))


def _with_user(model: type, statement: Any, token_hash: str) -> Any:
    """The ``model`` row (an API token or a web session) with this hash, its user loaded with it; None if none."""
    found = rowload.execute(db.session, statement, {"token_hash": token_hash}).first()
    if found is None:
        return None
    row = rowload.load(db.session, model, found)
    user = rowload.load(db.session, User, found, len(rowload.columns_of(model)))
    if "user" not in row.__dict__:  # one already in the session keeps what it holds, as with the ORM
        set_committed_value(row, "user", user)
    return row


@functools.cache
def _session_with_user() -> Any:
    # A web session and its user in one statement (the user was a second query), as for API tokens.
    return (select(*rowload.columns_of(UserSession), *rowload.columns_of(User))
            .join_from(UserSession, User, User.id == UserSession.user_id)
            .where(UserSession.token_hash == bindparam("token_hash")))


def resolve_token(raw: str, *, now: dt.datetime | None = None) -> ApiToken | None:
    now = now or utcnow()
    if not raw.startswith(TOKEN_PREFIX):
        return None
    row = _with_user(ApiToken, _token_with_user(), digest(raw))
    if row is None or row.revoked_at is not None or row.expires_at <= now or not row.user.active:
        return None
    if row.last_used_at is None or now - row.last_used_at > TOUCH_INTERVAL:
        row.last_used_at = now
    return row


def revoke_token(token: ApiToken, *, now: dt.datetime | None = None) -> None:
    token.revoked_at = token.revoked_at or now or utcnow()
    record(db.session, token.user, "auth.token.revoke", object_type="user", object_id=token.user_id, now=now)


def revoke_all_credentials(user: User, *, now: dt.datetime | None = None) -> None:
    """End every session, token and unused set-up link of ``user`` (deactivation, TOTP reset)."""
    now = now or utcnow()
    withdraw_links(user, now)
    end_sign_ins(user, now)


def end_sign_ins(user: User, now: dt.datetime, *, keep: UserSession | ApiToken | None = None) -> int:
    """Revoke every live web session and API token of ``user`` but ``keep``; how many ended."""
    sessions = update(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    tokens = update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    if isinstance(keep, UserSession):
        sessions = sessions.where(UserSession.id != keep.id)
    elif isinstance(keep, ApiToken):
        tokens = tokens.where(ApiToken.id != keep.id)
    return db.session.execute(sessions.values(revoked_at=now)).rowcount + \
        db.session.execute(tokens.values(revoked_at=now)).rowcount


def withdraw_links(user: User, now: dt.datetime) -> None:
    """Unused set-up links of ``user`` stop working (referral.accounts.enrolment)."""
    db.session.execute(update(Enrolment).where(Enrolment.user_id == user.id, Enrolment.used_at.is_(None),
                                               Enrolment.revoked_at.is_(None)).values(revoked_at=now))
