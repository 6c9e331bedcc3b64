"""Amanat: GBV case referral. ``create_app`` builds the Flask application."""
from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, g, request, request_started
from flask_login import current_user

from config.settings import INSTANCE_DIR, PROJECT_ROOT, load_settings
from referral import extensions as ext

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class AmanatFlask(Flask):
    """Flask, remembering which callables are coroutine functions.

    Flask asks ``inspect.iscoroutinefunction`` of every hook, view and handler it runs, on every request
    (``ensure_sync``, which Flask documents for overriding); the answer never changes for a registered
    callable. Kept for at most ``SYNC_CACHE_SIZE`` callables (what the app registers; anything past it is
    asked afresh, as Flask does): 1.3 % of a read's instructions in the app (docs/performance.md, session 13).
    """

    SYNC_CACHE_SIZE = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ensured: dict[Any, Any] = {}

    def ensure_sync(self, func: Any) -> Any:
        try:
            return self._ensured[func]
        except KeyError:
            ensured = super().ensure_sync(func)
            if len(self._ensured) < self.SYNC_CACHE_SIZE:
                self._ensured[func] = ensured
            return ensured
        except TypeError:  # unhashable
            return super().ensure_sync(func)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings → extensions → blueprints → guards → error handlers → CLI."""
    settings = load_settings(config)
    app = AmanatFlask(__name__, instance_path=str(INSTANCE_DIR))
    app.config.update(settings)
    if app.config["PROXY_HOPS"]:
        # Behind a reverse proxy the audit must record the client's address, not the proxy's.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_HOPS"], x_proto=app.config["PROXY_HOPS"])  # type: ignore[method-assign]
    _ensure_sqlite_directory(app.config["SQLALCHEMY_DATABASE_URI"])

    ext.db.init_app(app)
    with app.app_context():
        ext.install_idle_ping(ext.db.engine, app.config["DB_PING_AFTER_IDLE_SECONDS"])
        ext.widen_query_cache(ext.db.engine)
        ext.describe_lazily(ext.db.engine)
    ext.migrate.init_app(app, ext.db, directory=str(PROJECT_ROOT / "migrations"))
    ext.login_manager.init_app(app)
    ext.login_manager.session_protection = None  # identity comes from server-side rows, not the cookie
    ext.csrf.init_app(app)
    from referral.i18n import init_i18n

    init_i18n(app)
    from referral.web.labels import init_labels

    init_labels(app)

    from referral import models  # noqa: F401  (registers every table on the metadata)
    from referral.accounts import identity  # noqa: F401  (registers the request loader)
    from referral.accounts import views as _account_views  # noqa: F401
    from referral.audit import views as _audit_views  # noqa: F401
    from referral.referrals import views as _referral_views  # noqa: F401
    from referral.standards import views as _standards_views  # noqa: F401
    from referral.services_dir import views as _services_views  # noqa: F401
    from referral.notify import views as _notify_views  # noqa: F401
    from referral.oversight import views as _oversight_views  # noqa: F401
    from referral.reference import views as _reference_views  # noqa: F401
    from referral import openapi as _openapi  # noqa: F401  (GET /api/v1/openapi.json)
    from referral.api import api
    from referral.health import health
    from referral.web import admin as _admin_pages  # noqa: F401  (registers pages on web)
    from referral.web import enrol as _enrol_pages  # noqa: F401
    from referral.web import focal as _focal_pages  # noqa: F401  (registers pages on web)
    from referral.web import oversight as _oversight_pages  # noqa: F401
    from referral.web import police as _police_pages  # noqa: F401
    from referral.web import provider as _provider_pages  # noqa: F401
    from referral.web.views import web

    # API calls carry a bearer token; those that ride a browser session are
    # CSRF-checked in _guard below, after we know how the caller signed in.
    ext.csrf.exempt(api)
    app.register_blueprint(health)
    app.register_blueprint(api)
    app.register_blueprint(web)
    from referral.security.limits import init_limits

    init_limits(app)  # after the blueprints: it wraps their registered views

    from referral.ops import init_ops

    init_ops(app)  # JSON logs, access lines, /metrics (docs: README "Operations")
    _install_request_hooks(app)

    from referral.errors import register_error_handlers

    register_error_handlers(app)

    from referral.cli import register_cli

    register_cli(app)
    return app


def _ensure_sqlite_directory(uri: str) -> None:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:///:memory:"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)


def _install_request_hooks(app: Flask) -> None:
    from referral.security.permissions import guard_request

    # A signal, not before_request: it runs before every before_request hook (CSRF, rate limits), so
    # their refusals, and the log lines written on the way, carry the id too.
    @request_started.connect_via(app)
    def _request_id(_sender: Flask, **_extra: Any) -> None:
        supplied = request.headers.get("X-Request-ID", "")
        g.request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex

    @app.before_request
    def _refuse_nul():  # type: ignore[no-untyped-def]
        # No text column can hold a NUL byte (PostgreSQL refuses it): say so plainly, before anything runs.
        from referral.errors import N_, BadRequest

        # Path parts are not checked here: a malformed id is "not found" like any other (parse_case_id).
        values = [v for _k, vs in request.args.lists() for v in vs]
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            request.get_data(cache=True)  # keep the raw body: the SMS webhook's signature covers it
            values += [v for _k, vs in request.form.lists() for v in vs]
        if any("\x00" in v for v in values):
            raise BadRequest(N_("Text may not contain NUL characters."), code="nul_character")

    @app.before_request
    def _guard():  # type: ignore[no-untyped-def]
        outcome = guard_request()
        if outcome is not None:
            return outcome
        if (request.method in UNSAFE_METHODS and request.path.startswith("/api/")
                and current_user.is_authenticated and g.get("auth_via") == "session"):
            ext.csrf.protect()
        return None

    @app.after_request
    def _no_unwritten_audit(response):  # type: ignore[no-untyped-def]
        """A read that staged audit events but committed nothing still owes them: write them now,
        or fail the request rather than answer without its trace."""
        from referral.audit.service import pending

        if response.status_code < 400 and pending(ext.db.session):
            try:
                ext.db.session.commit()
            except Exception as exc:  # noqa: BLE001 - answered as a generic failure below
                ext.db.session.rollback()
                logging.getLogger(__name__).error("audit write failed after %s (%s)", request.endpoint,
                                                  type(exc).__name__)
                from referral.errors import error_body

                from flask import jsonify
                failed = jsonify(error_body(500, "internal_error", "Something went wrong."))
                failed.status_code = 500
                return failed
        return response

    @app.after_request
    def _headers(response):  # type: ignore[no-untyped-def]
        response.headers["X-Request-ID"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        )
        if request.path.startswith("/api/") or g.get("auth_via") is not None:
            response.headers["Cache-Control"] = "no-store"
        if app.config.get("HSTS"):
            response.headers.setdefault("Strict-Transport-Security", app.config["HSTS"])
        return response
