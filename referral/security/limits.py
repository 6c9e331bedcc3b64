"""Abuse limits (SPEC §7): Flask-Limiter on sign-in, token creation, referral submission, SMS intake and
account set-up.

Each limited endpoint has a per-address budget and a per-account budget. The
sign-in budgets are shared by the web form and the API token endpoint, and the
submission budgets by the web form and the API, so switching door buys nothing.

Every password check costs one argon2id hash (~90 ms, about 14 a second on a
two-core server), so the per-address sign-in budget also bounds how much of the
machine one address can spend: at 20 a minute it is 1.8 s of CPU a minute, and
saturating the server takes more than forty addresses. The per-account budget
caps the hashing spent on one account beyond what the lockout (5 failures in 15
minutes, kept in the database) already refuses; it is keyed on the typed e-mail
whether or not the account exists, so a 429 says nothing about who has one.

Storage is Redis when ``REFERRAL_REDIS_URL`` is set (shared by every app server),
memory otherwise. If Redis is set but cannot be reached, each process falls back
to the same limits in its own memory and retries Redis with a growing back-off:
degraded but never unlimited, and never a refused referral (docs/decisions.md).

The limiter is built per application, not as a module-level extension: tests
and tools build several apps in one process with different settings, and a
shared Flask-Limiter instance takes its enabled flag and storage from whichever
app initialised it last.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from flask import Flask, Response, current_app, render_template, request
from flask_babel import gettext as _
from flask_limiter import Limiter, RequestLimit
from flask_limiter.errors import RateLimitExceeded

log = logging.getLogger(__name__)

# Budgets (limits' notation: several windows separated by ";").
LOGIN_PER_ADDRESS = "20/minute;300/hour"
LOGIN_PER_ACCOUNT = "10/15minutes"
SUBMIT_PER_ADDRESS = "60/minute"
SUBMIT_PER_ACCOUNT = "10/minute;200/day"
SMS_PER_ADDRESS = "600/minute"  # the gateway posts every message from a few addresses
SMS_PER_SENDER = "30/hour"
# Account set-up: each try hashes a password; a link's holder needs a few, not hundreds.
ENROL_PER_ADDRESS = "10/minute;60/hour"
ENROL_PER_LINK = "10/hour"

# Endpoints under each shared budget, the methods limited, and whose account pays.
LOGIN_ENDPOINTS = ("web.login", "api.create_token")
SUBMIT_ENDPOINTS = ("web.new_referral", "api.submit_referral")
SMS_ENDPOINTS = ("api.sms_inbound",)
ENROL_ENDPOINTS = ("web.enrol",)

STORAGE_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0}
FALLBACK_RETRY_AFTER = 60
EXTENSION_KEY = "amanat_limiter"


def client_address() -> str:
    """The caller's address (the client's, once ``REFERRAL_PROXY_HOPS`` trusts the proxy)."""
    return request.remote_addr or "unknown"


def _pseudonym(kind: str, value: str) -> str:
    """A keyed hash: storage keys never hold an e-mail address or a phone number."""
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return kind + ":" + hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


def login_account() -> str:
    """The account being signed in to, as typed (form or JSON), known or not."""
    from referral.accounts.auth import normalise_email

    if request.is_json:
        body = request.get_json(silent=True)
        email = body.get("email") if isinstance(body, dict) else None
    else:
        email = request.form.get("email")
    return _pseudonym("login", normalise_email(email if isinstance(email, str) else ""))


def acting_account() -> str:
    """The signed-in submitter; the permission guard has already refused anyone else."""
    from flask_login import current_user

    if current_user.is_authenticated:
        return f"user:{current_user.id}"
    return "address:" + client_address()


def sms_sender() -> str:
    return _pseudonym("sms", (request.form.get("from") or "").strip())


def enrolment_link() -> str:
    """The set-up link being used, as a keyed hash: the link itself never reaches the storage."""
    return _pseudonym("enrol", str((request.view_args or {}).get("token", "")))


def _charged_to_sender(response: Response) -> bool:
    # A forged (401) or replayed (409) message never reaches intake: it must not spend a real phone's budget.
    return response.status_code not in (401, 409)


def init_limits(app: Flask) -> Limiter | None:
    """Attach the limiter to ``app`` unless ``REFERRAL_RATELIMIT_ENABLED`` is false."""
    if not app.config.get("RATELIMIT_ENABLED", True):
        return None
    redis_url = app.config.get("REDIS_URL")
    limiter = Limiter(
        key_func=client_address,
        storage_uri=redis_url or "memory://",
        storage_options=dict(STORAGE_OPTIONS) if redis_url else {},
        strategy="moving-window",
        key_prefix=app.config.get("RATELIMIT_KEY_PREFIX", "amanat"),
        # Redis down: the same limits from each process's memory, not none at all and not a 500.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        headers_enabled=False,  # Retry-After is set on the 429 itself (below)
    )
    limiter.init_app(app)

    budgets = [
        (LOGIN_ENDPOINTS, "login", LOGIN_PER_ADDRESS, LOGIN_PER_ACCOUNT, login_account, None),
        (SUBMIT_ENDPOINTS, "submit", SUBMIT_PER_ADDRESS, SUBMIT_PER_ACCOUNT, acting_account, None),
        (SMS_ENDPOINTS, "sms", SMS_PER_ADDRESS, SMS_PER_SENDER, sms_sender, _charged_to_sender),
        (ENROL_ENDPOINTS, "enrol", ENROL_PER_ADDRESS, ENROL_PER_LINK, enrolment_link, None),
    ]
    for endpoints, scope, per_address, per_account, account_key, deduct_when in budgets:
        by_address = limiter.shared_limit(per_address, scope=f"{scope}-address", methods=["POST"])
        by_account = limiter.shared_limit(per_account, scope=f"{scope}-account", key_func=account_key,
                                          methods=["POST"], deduct_when=deduct_when)
        for endpoint in endpoints:
            # Wrapping the registered view (as the decorators would) keeps the view's access declaration:
            # functools.wraps copies it, and the permission guard reads it from app.view_functions.
            app.view_functions[endpoint] = by_address(by_account(app.view_functions[endpoint]))

    app.register_error_handler(RateLimitExceeded, _too_many_requests)
    app.extensions[EXTENSION_KEY] = limiter
    return limiter


def _retry_after(limiter: Limiter) -> int:
    breached: RequestLimit | None = limiter.current_limit
    try:
        if breached is not None:
            return max(1, breached.reset_at - int(time.time()))
    except Exception as exc:  # noqa: BLE001 - storage trouble must not turn a 429 into a 500
        log.warning("could not read the rate-limit window (%s)", type(exc).__name__)
    return FALLBACK_RETRY_AFTER


def _too_many_requests(err: RateLimitExceeded):  # type: ignore[no-untyped-def]
    from flask import jsonify

    from referral.errors import error_body, wants_json

    limiter: Limiter = current_app.extensions[EXTENSION_KEY]
    # The endpoint and the budget only: the key may be an address, and the body may hold case data.
    log.warning("rate limit %s reached on %s", err.limit.limit, request.endpoint)
    if wants_json():
        response = jsonify(error_body(429, "rate_limited", "Too many requests. Wait a while and try again."))
    else:
        response = current_app.make_response(render_template(
            "error.html", status=429, message=_("Too many attempts. Wait a few minutes and try again.")))
    response.status_code = 429
    response.headers["Retry-After"] = str(_retry_after(limiter))
    return response
