"""Who is calling: a bearer token (API) or a server-side session (web)."""
from __future__ import annotations

from flask import Request, g, session

from referral.accounts import auth
from referral.accounts.models import User
from referral.extensions import db, login_manager

SESSION_KEY = "sid"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


@login_manager.request_loader
def load_user_from_request(request: Request) -> User | None:
    g.auth_via = None
    raw = bearer_token(request)
    if raw is not None:
        token = auth.resolve_token(raw)
        if token is None:
            return None
        g.auth_via, g.api_token = "token", token
        user = token.user
    else:
        pointer = session.get(SESSION_KEY)
        if not isinstance(pointer, str):
            return None
        row = auth.resolve_session(pointer)
        if row is None:
            session.pop(SESSION_KEY, None)
            db.session.commit()  # persist the revocation of an idle session
            return None
        g.auth_via, g.user_session = "session", row
        user = row.user
    # Touching last_seen/last_used happens before the view does anything, so
    # committing it here cannot split the view's own transaction.
    if db.session.dirty:
        db.session.commit()
    return user
