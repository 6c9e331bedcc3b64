"""The JSON API blueprint and the helpers every API view uses."""
from __future__ import annotations

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


def _field_errors(messages: Any) -> dict[str, Any]:
    if isinstance(messages, dict):
        return messages
    return {"_schema": messages if isinstance(messages, list) else [str(messages)]}


def load_json(schema: Schema) -> Any:
    """Parse the request body with ``schema``: 415/400 for a bad body, 422 with field errors."""
    if not request.is_json:
        raise UnsupportedMediaType()
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("The body is not valid JSON.", code="malformed_json")
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", code="malformed_json")
    try:
        return schema.load(body)
    except ValidationError as err:
        raise ValidationFailed(fields=_field_errors(err.messages)) from None


class PageArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PER_PAGE))


def load_args(schema: Schema) -> Any:
    """Validate query-string arguments; unknown ones are refused like unknown body fields."""
    try:
        return schema.load(request.args.to_dict())
    except ValidationError as err:
        raise ValidationFailed(fields=_field_errors(err.messages)) from None


def page_body(items: list[Any], *, page: int, per_page: int, total: int) -> dict[str, Any]:
    return {"items": items, "page": page, "per_page": per_page, "total": total}
