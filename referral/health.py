"""Liveness (``/healthz``) and readiness (``/readyz``) for reverse proxies and orchestrators.

Liveness says only that this process answers HTTP: restarting it cannot fix a database outage, so it
does not look at the database (a probe that did would restart every app server at once during one).
Readiness says whether this process can serve requests now: the database answers, its schema is the
one this code was written for, and the keyring loads. A proxy routes to ready servers only. Answers
name the failing check, never a URL, a path or an exception's text.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from config.settings import PROJECT_ROOT
from referral.extensions import db
from referral.security.permissions import public

health = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@health.get("/healthz")
@public
def healthz():  # type: ignore[no-untyped-def]
    return jsonify(status="ok")


class NotReady(Exception):
    """A readiness check failed; the text is a short code for the operator, never data."""


def _database() -> str:
    db.session.execute(text("SELECT 1"))
    return "ok"


@lru_cache(maxsize=1)
def _code_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """(heads, every revision) of the migrations shipped with this code; read once per process."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    script = ScriptDirectory.from_config(config)
    return frozenset(script.get_heads()), frozenset(rev.revision for rev in script.walk_revisions())


def _migrations() -> str:
    """At this code's head. A revision this code does not know belongs to a newer release: migrations
    are applied before new code starts and stay compatible with the code before them, so an old app
    server stays ready during a rolling deploy ("ahead")."""
    try:
        current = frozenset(db.session.scalars(text("SELECT version_num FROM alembic_version")))
    except SQLAlchemyError:
        db.session.rollback()
        raise NotReady("not_migrated") from None
    heads, known = _code_revisions()
    if not current:
        raise NotReady("not_migrated")
    if current == heads:
        return "ok"
    if current <= known:
        raise NotReady("behind")  # this code needs migrations the database has not had
    return "ahead"


def _keyring() -> str:
    from referral.security.keyring import keyring_for

    ring = keyring_for(current_app)
    ring.refresh()  # re-read if the file changed, so a damaged keyring shows here, not at the next case
    ring.active  # noqa: B018 - raises when no active key-encryption key is there
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {"database": _database, "migrations": _migrations, "keyring": _keyring}


@health.get("/readyz")
@public
def readyz():  # type: ignore[no-untyped-def]
    results: dict[str, str] = {}
    failing: list[str] = []
    for name, check in CHECKS.items():
        if name == "migrations" and "database" in failing:
            results[name] = "skipped"  # nothing to ask a database that does not answer
            continue
        try:
            results[name] = check()
            continue
        except NotReady as exc:
            results[name] = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; logged by type only
            db.session.rollback()
            results[name] = "unavailable"
            log.error("readyz: %s check failed (%s)", name, type(exc).__name__)
        failing.append(name)
    body = {"status": "unavailable" if failing else "ready", "checks": results, "failing": failing}
    return jsonify(body), 503 if failing else 200
