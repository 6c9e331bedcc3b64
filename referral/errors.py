"""Domain errors and the one place that turns them into HTTP answers.

Clients never see exception text: each error carries a message written for
them, and anything unexpected becomes a generic 500 with a request id.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


def N_(message: str) -> str:  # noqa: N802 (gettext's conventional name for a marker)
    """Marks a message a person may read on a page for the catalogs (``pybabel extract -k N_``), unchanged.

    The API answers in English, as integrators' scripts expect; a page shows the message in the reader's
    language (``DomainError.translated``, ``translate``)."""
    return message


class Phrase(str):
    """A parameter value that is itself a marked message (``P_``): a page shows it translated too."""


class Message(str):
    """A field message with parameters (codes, counts, never case content): it reads as its English text,
    as the API answers; a page translates the marked template and fills the parameters in (``translate``).
    ``Message(N_("Give one of: %(choices)s."), choices="a, b")``."""

    template: str
    params: dict[str, Any]

    def __new__(cls, template: str, **params: Any) -> Message:
        message = super().__new__(cls, template % params)
        message.template, message.params = template, params
        return message


def P_(message: str) -> Phrase:  # noqa: N802
    """Marks a phrase used as a parameter (``pybabel extract -k P_``), e.g. what could not be done."""
    return Phrase(message)


class Stage(str):
    """A case status code as a parameter: the API says the code, a page the stage's name."""


def translate(message: Any) -> str:
    """A marked message in the page's language (unmarked text comes back as it is; anything else as text)."""
    from flask_babel import gettext

    if isinstance(message, Message):
        return gettext(message.template, **message.params)
    message = message if isinstance(message, str) else str(message)
    return gettext(message) if message else message


class DomainError(Exception):
    status = 400
    code = "bad_request"
    message = N_("The request could not be processed.")

    def __init__(self, message: str | None = None, *, fields: dict[str, Any] | None = None,
                 code: str | None = None, params: dict[str, Any] | None = None) -> None:
        """``message`` may name ``params`` as ``%(name)s``: the English text fills them in, and a page
        fills them into the translated text. Parameters are codes, counts and names, never case content."""
        self.template = message or self.message
        self.params = params or {}
        self.message = self.template % self.params if self.params else self.template
        super().__init__(self.message)
        self.fields = fields or {}
        if code:
            self.code = code

    def translated(self, *, with_fields: bool = True) -> str:
        """The message in the page's language, with the field messages after it (``with_fields``)."""
        from flask_babel import gettext

        from referral.i18n import stage_names

        stages = stage_names() if any(isinstance(v, Stage) for v in self.params.values()) else {}
        params = {k: translate(v) if isinstance(v, Phrase) else stages.get(v, v) if isinstance(v, Stage) else v
                  for k, v in self.params.items()}
        text = gettext(self.template, **params) if params else translate(self.template)
        return " ".join([text, *field_messages(self.fields)]) if with_fields else text


def field_messages(fields: dict[str, Any]) -> list[str]:
    """The messages per field, flattened (nested schemas give nested dicts), each in the page's language."""
    out: list[str] = []
    for value in fields.values():
        if isinstance(value, dict):
            out.extend(field_messages(value))
        elif isinstance(value, list):
            out.extend(translate(v) for v in value)
        else:
            out.append(translate(value))
    return out


class ValidationFailed(DomainError):
    status = 422
    code = "validation_failed"
    message = N_("Some fields are missing or invalid.")


class BadRequest(DomainError):
    status = 400
    code = "bad_request"


class Unauthenticated(DomainError):
    status = 401
    code = "unauthenticated"
    message = N_("Sign in first.")


class Forbidden(DomainError):
    """The caller may see the record but not do this (e.g. accept uncertified)."""

    status = 403
    code = "forbidden"
    message = N_("You are not allowed to do this.")


class NotFound(DomainError):
    """Not there, or not visible to the caller: the two are never told apart."""

    status = 404
    code = "not_found"
    message = N_("Not found.")


class Conflict(DomainError):
    status = 409
    code = "conflict"
    message = N_("The record changed; reload and try again.")


class InvalidTransition(Conflict):
    code = "invalid_transition"


def error_body(status: int, code: str, message: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def wants_json() -> bool:
    if request.path.startswith("/api/") or request.path == "/healthz":
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json"


def _respond(status: int, code: str, message: str, fields: dict[str, Any] | None = None, *,
             page: Callable[[], str] | None = None):  # type: ignore[no-untyped-def]
    """JSON in English for API clients; for a person, the error page in their language (``page()``, else
    ``message`` translated). Nothing is translated for the API."""
    if wants_json():
        return jsonify(error_body(status, code, message, fields)), status
    from flask import render_template

    return render_template("error.html", status=status, message=page() if page else translate(message)), status


# What a page says for an HTTP error raised outside the services (routing, size limits, a missing
# CSRF token): Werkzeug's own descriptions are long, and English only. The API keeps Werkzeug's text.
_PAGE_MESSAGES = {
    400: N_("The request could not be processed."),
    401: N_("Sign in first."),
    403: N_("You are not allowed to do this."),
    404: N_("Not found."),
    405: N_("This page cannot be used that way."),
    409: N_("The record changed; reload and try again."),
    413: N_("What you sent is too large."),
    415: N_("The request could not be processed."),
    422: N_("Some fields are missing or invalid."),
    429: N_("Too many attempts. Wait a few minutes and try again."),
}
FORM_EXPIRED = N_("The form expired. Reload the page and try again.")


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
        return _respond(err.status, err.code, err.message, err.fields, page=err.translated)

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):  # type: ignore[no-untyped-def]
        status = err.code or 500
        # Werkzeug's descriptions are generic and never contain request data.
        message = err.description if status < 500 else "Something went wrong."
        page = _PAGE_MESSAGES.get(status, N_("Something went wrong."))
        if status == 400 and "CSRF" in (err.description or ""):
            message = page = FORM_EXPIRED
        return _respond(status, _HTTP_CODES.get(status, "error"), message or "Error.", page=lambda: translate(page))

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):  # type: ignore[no-untyped-def]
        from flask_babel import gettext

        from referral.security.keyring import SealIntegrityError

        request_id = getattr(g, "request_id", None) or uuid.uuid4().hex
        if isinstance(err, SealIntegrityError):
            _record_integrity_error()
            integrity = N_("A stored record failed its integrity check; this has been reported (request %(id)s).")
            return _respond(500, "integrity_error", integrity % {"id": request_id},
                            page=lambda: gettext(integrity, id=request_id))
        _settle_transaction()
        # Log the type and the request id only: exception text may quote case data.
        log.error("unhandled %s in %s request_id=%s", type(err).__name__, request.endpoint, request_id,
                  exc_info=app.debug or app.testing)
        failed = N_("Something went wrong (request %(id)s).")
        return _respond(500, "internal_error", failed % {"id": request_id},
                        page=lambda: gettext(failed, id=request_id))
