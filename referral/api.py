"""The JSON API blueprint and the helpers every API view uses."""
from __future__ import annotations

import functools
import re
from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, ValidationError, fields, validate

from referral.errors import BadRequest, DomainError, ValidationFailed

api = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_PER_PAGE = 100


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"
    message = "Send the body as application/json."


_FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


def _safe_keys(messages: dict[Any, Any]) -> dict[str, Any]:
    """Field errors keyed by names the client sent: echo only names that look like field names.

    An unknown "field" may really be text pasted into the wrong place (a name, a
    story); such keys are counted under ``_unknown`` instead of being echoed.
    """
    safe: dict[str, Any] = {}
    hidden = 0
    for key, value in messages.items():
        if isinstance(key, int) or (isinstance(key, str) and _FIELD_NAME.match(key)):
            safe[str(key)] = _safe_keys(value) if isinstance(value, dict) else value
        else:
            hidden += 1
    if hidden:
        safe["_unknown"] = [f"{hidden} unknown field(s) whose names are not repeated here."]
    return safe


def _field_errors(messages: Any) -> dict[str, Any]:
    if isinstance(messages, dict):
        return _safe_keys(messages)
    return {"_schema": messages if isinstance(messages, list) else [str(messages)]}


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


@functools.cache
def _schema(cls: type[Schema]) -> Schema:
    # One instance per schema class and process: building one copies every declared field, which cost
    # a submission more than validating it. Loading keeps no state on the instance (marshmallow 4).
    return cls()


def load_json(schema: type[Schema]) -> Any:
    """Parse the request body with ``schema``: 415/400 for a bad body, 422 with field errors."""
    if not request.is_json:
        raise UnsupportedMediaType()
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("The body is not valid JSON.", code="malformed_json")
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", code="malformed_json")
    # A parsed string holds NUL only from the escape \u0000 (JSON refuses a raw control character in a
    # string) or from a body in UTF-16 or UTF-32, whose bytes hold zeros: without either in the body as
    # sent (cached by get_json), there is nothing to walk.
    raw = request.get_data()
    if (b"\\u0000" in raw or b"\x00" in raw) and _has_nul(body):
        raise BadRequest("Text may not contain NUL characters.", code="nul_character")
    try:
        return _schema(schema).load(body)
    except ValidationError as err:
        raise ValidationFailed(fields=_field_errors(err.messages)) from None


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PER_PAGE))


def load_args(schema: type[Schema]) -> Any:
    """Validate query-string arguments; unknown ones are refused like unknown body fields."""
    try:
        return _schema(schema).load(request.args.to_dict())
    except ValidationError as err:
        raise ValidationFailed(fields=_field_errors(err.messages)) from None


def acting_user():  # type: ignore[no-untyped-def]
    """The signed-in user as a plain object, to hand to services explicitly."""
    from flask_login import current_user

    return current_user._get_current_object()


def page_body(items: list[Any], *, page: int, per_page: int, total: int) -> dict[str, Any]:
    return {"items": items, "page": page, "per_page": per_page, "total": total}


def page_of_list(items: list[Any], args: dict[str, Any]) -> dict[str, Any]:
    """The list envelope for a short list computed whole (providers of an area, the break-glass queue,
    anomalies): the page asked for, and how many there are."""
    page, per_page = args["page"], args["per_page"]
    return page_body(items[(page - 1) * per_page:page * per_page], page=page, per_page=per_page, total=len(items))


def paged_listing(lister: Any, dump: Any) -> Any:
    """A list endpoint's whole answer: ``lister(session, actor, page=, per_page=)`` gives (rows, total), each
    row goes through ``dump``; the listing's audit event commits with it."""
    from flask import jsonify

    from referral.extensions import db

    args = load_args(PageArgs)
    items, total = lister(db.session, acting_user(), page=args["page"], per_page=args["per_page"])
    body = page_body([dump(item) for item in items], page=args["page"], per_page=args["per_page"], total=total)
    db.session.commit()
    return jsonify(body)
