"""Domain errors and the one place that turns them into HTTP answers.

Clients never see exception text: each error carries a message written for
them, and anything unexpected becomes a generic 500 with a request id.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class DomainError(Exception):
    status = 400
    code = "bad_request"
    message = "The request could not be processed."

    def __init__(self, message: str | None = None, *, fields: dict[str, Any] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.fields = fields or {}
        if code:
            self.code = code


class ValidationFailed(DomainError):
    status = 422
    code = "validation_failed"
    message = "Some fields are missing or invalid."


class BadRequest(DomainError):
    status = 400
    code = "bad_request"


class Unauthenticated(DomainError):
    status = 401
    code = "unauthenticated"
    message = "Sign in first."


class Forbidden(DomainError):
    """The caller may see the record but not do this (e.g. accept uncertified)."""

    status = 403
    code = "forbidden"
    message = "You are not allowed to do this."


class NotFound(DomainError):
    """Not there, or not visible to the caller: the two are never told apart."""

    status = 404
    code = "not_found"
    message = "Not found."


class Conflict(DomainError):
    status = 409
    code = "conflict"
    message = "The record changed; reload and try again."


class InvalidTransition(Conflict):
    code = "invalid_transition"


def error_body(status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def wants_json() -> bool:
    if request.path.startswith("/api/") or request.path == "/healthz":
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json"


def _respond(status: int, code: str, message: str, fields: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    if wants_json():
        return jsonify(error_body(status, code, message, fields)), status
    from flask import render_template

    return render_template("error.html", status=status, message=message), status


_HTTP_CODES = {
    400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
    422: "validation_failed", 429: "rate_limited",
}


def _settle_transaction() -> None:
    """Undo the failed action but keep its denied/error audit events: refusals must leave a trace."""
    from referral.audit.service import keep_only_refusals_after_failure
    from referral.extensions import db

    try:
        if keep_only_refusals_after_failure(db.session):
            db.session.commit()
    except Exception as exc:  # the answer is already an error; say so in the log, by type only
        log.error("could not record the audit events of a failed request (%s)", type(exc).__name__)
        db.session.rollback()


def _record_integrity_error() -> None:
    """A ciphertext that fails authentication was tampered with or moved: audit it, loudly."""
    from flask_login import current_user

    from referral.audit.service import ERROR, record
    from referral.extensions import db

    db.session.rollback()
    actor = current_user._get_current_object() if current_user and current_user.is_authenticated else None
    object_id = (request.view_args or {}).get("referral_id")
    record(db.session, actor, "integrity.failure", object_type="referral" if object_id else None,
           object_id=object_id, outcome=ERROR, reason="a sealed value failed authentication")
    db.session.commit()
    log.critical("integrity failure on %s request_id=%s", request.endpoint, g.get("request_id"))


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(err: DomainError):  # type: ignore[no-untyped-def]
        _settle_transaction()
        return _respond(err.status, err.code, err.message, err.fields)

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):  # type: ignore[no-untyped-def]
        status = err.code or 500
        # Werkzeug's descriptions are generic and never contain request data.
        message = err.description if status < 500 else "Something went wrong."
        if status == 400 and "CSRF" in (err.description or ""):
            message = "The form expired. Reload the page and try again."
        return _respond(status, _HTTP_CODES.get(status, "error"), message or "Error.")

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):  # type: ignore[no-untyped-def]
        from referral.security.keyring import SealIntegrityError

        request_id = getattr(g, "request_id", None) or uuid.uuid4().hex
        if isinstance(err, SealIntegrityError):
            _record_integrity_error()
            return _respond(500, "integrity_error",
                            f"A stored record failed its integrity check; this has been reported (request {request_id}).")
        _settle_transaction()
        # Log the type and the request id only: exception text may quote case data.
        log.error("unhandled %s in %s request_id=%s", type(err).__name__, request.endpoint, request_id,
                  exc_info=app.debug or app.testing)
        return _respond(500, "internal_error", f"Something went wrong (request {request_id}).")
