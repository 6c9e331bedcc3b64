"""The OpenAPI 3.1 document of API v1, served at ``GET /api/v1/openapi.json`` (SPEC §9).

Built from the app itself: every rule of the ``api`` blueprint
becomes an operation, its access rule read from the view's declaration, its body
and query parameters from the marshmallow schemas the view loads (through
apispec), its answers from ``operations.OPERATIONS``. The document names shapes,
never values: it is public, like any API reference (docs/decisions.md).
"""
from __future__ import annotations

import json
import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, current_app, jsonify
from werkzeug.routing import Rule

from referral.api import api
from referral.referrals.schemas import SERVICE_TYPES, ServicesConsent
from referral.security.permissions import PUBLIC, ROLE_PERMISSIONS, Permission, declared_access, public

from referral.openapi.operations import OPERATIONS, Op
from referral.openapi.shapes import SCHEMAS, ref

TITLE = "Amanat API"
VERSION = "1"
DOCUMENTED_BLUEPRINTS = ("api.",)
METHODS = ("get", "post", "put", "patch", "delete")
_PARAM = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_INT_ID = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}

DESCRIPTIONS = {
    400: "The request is malformed (not JSON, not an object, a NUL character)",
    401: "Not signed in, or the credentials or signature are wrong",
    403: "The caller's role may not do this, or a rule refuses it (the message says which)",
    404: "No such record, or not visible to the caller: the two are never told apart",
    409: "The record is not in a state that allows this, or it changed meanwhile",
    415: "The body is not application/json",
    422: "Some fields are missing or invalid; ``fields`` names them",
    429: "Too many requests; try again later",
    503: "The service cannot answer now",
}


@api.get("/openapi.json")
@public
def openapi_document():  # type: ignore[no-untyped-def]
    """Documentation, served without sign-in: it describes shapes and rules, never data."""
    return jsonify(document(current_app))


def document(app: Flask) -> dict[str, Any]:
    """The document for ``app``, built once: it depends only on code, never on the database."""
    cached = app.extensions.get("amanat.openapi")
    if cached is None:
        cached = app.extensions["amanat.openapi"] = build(app)
    return cached


def build(app: Flask) -> dict[str, Any]:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=TITLE, version=VERSION, openapi_version="3.1.0", plugins=[plugin],
        info={"description": "GBV case referral. Errors answer {\"error\": {\"code\", \"message\", \"fields\"}}; "
                             "lists take ?page=&per_page= (at most 100) and answer "
                             "{\"items\", \"page\", \"per_page\", \"total\"}."},
        servers=[{"url": "/"}],
        security=[{"bearer": []}],
    )
    plugin.converter.add_attribute_function(_services_consent)  # type: ignore[union-attr]
    spec.components.security_scheme("bearer", {
        "type": "http", "scheme": "bearer",
        "description": "A personal token from POST /api/v1/auth/tokens (or a browser session, CSRF-checked)."})
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema)
    for path, operations in _operations(app):
        spec.path(path=path, operations=operations)
    return _plain(spec.to_dict())


def _operations(app: Flask) -> list[tuple[str, dict[str, Any]]]:
    by_path: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.endpoint.startswith(DOCUMENTED_BLUEPRINTS) or rule.endpoint.endswith(".static"):
            continue
        path, parameters = _path(rule)
        op = OPERATIONS.get(rule.endpoint) or _undocumented(app, rule)
        access = declared_access(app.view_functions.get(rule.endpoint))
        for method in sorted(m.lower() for m in rule.methods or ()):
            if method in METHODS:
                by_path.setdefault(path, {})[method] = _operation(rule.endpoint, op, access, parameters)
    return sorted(by_path.items())


def _path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    parameters = []
    for match in _PARAM.finditer(rule.rule):
        schema = dict(_INT_ID) if match["converter"] == "int" else {"type": "string", "format": "uuid"}
        parameters.append({"in": "path", "name": match["name"], "required": True, "schema": schema})
    return _PARAM.sub(lambda m: "{" + m["name"] + "}", rule.rule), parameters


def _operation(endpoint: str, op: Op, access: Any, path_parameters: list[dict[str, Any]]) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": endpoint.split(".", 1)[1], "summary": op.summary, "tags": [op.tag]}
    parameters: list[Any] = list(path_parameters)
    parameters += [{"in": "header", "name": name, "required": True, "schema": {"type": "string"},
                    "description": text} for name, text in op.headers]
    parameters += [{"in": "header", "name": name, "required": False,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,128}$"},
                    "description": text} for name, text in op.optional_headers]
    if op.query is not None:
        parameters.append({"in": "query", "schema": op.query})
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {"required": not op.body_optional,
                                    "content": {"application/json": {"schema": op.body}}}
    elif op.form is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/x-www-form-urlencoded": {"schema": op.form}}}
    refusals = set(op.refusals) | {400, 429}
    if access == PUBLIC:
        operation["security"] = []
    else:
        refusals |= {401, 403}
        if isinstance(access, Permission):
            roles = sorted(role.value for role, held in ROLE_PERMISSIONS.items() if access in held)
            operation["description"] = f"Needs `{access.value}`, held by: {', '.join(roles)}."
            operation["x-permission"] = access.value
    if path_parameters:
        refusals.add(404)
    if op.body is not None:
        refusals |= {415, 422}
    if op.query is not None:
        refusals.add(422)
    responses: dict[str, Any] = {str(op.status): _success(op, "Done")}
    for status, description in op.also.items():
        responses[str(status)] = _success(op, description)
    for status in sorted(refusals):
        responses[str(status)] = {"description": DESCRIPTIONS[status],
                                  "content": {"application/json": {"schema": ref("Error")}}}
    operation["responses"] = responses
    return operation


def _success(op: Op, description: str) -> dict[str, Any]:
    if op.answer is None:
        return {"description": description}
    return {"description": description, "content": {op.answer_type: {"schema": op.answer}}}


def _undocumented(app: Flask, rule: Rule) -> Op:
    """An endpoint the table does not describe yet still appears, with what the URL map knows."""
    view = app.view_functions.get(rule.endpoint)
    summary = ((view.__doc__ or "").strip().splitlines() or [rule.endpoint])[0] if view else rule.endpoint
    return Op(summary, "other", answer={"type": "object"}, refusals=(404, 409, 415, 422))


def _services_consent(self: Any, field: Any, **kwargs: Any) -> dict[str, Any]:
    """``consent.services``: true, false, or a list of service types (a custom field apispec cannot read)."""
    if isinstance(field, ServicesConsent):
        return {"oneOf": [{"type": "boolean"},
                          {"type": "array", "items": {"type": "string", "enum": list(SERVICE_TYPES)}}]}
    return {}


def _plain(document: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready: dates from validators as ISO strings; query parameters never null (a query string
    cannot carry one); defaults dropped where they are ``null``."""
    plain = json.loads(json.dumps(document, default=lambda value: value.isoformat()))
    for operations in plain["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                if isinstance(schema.get("type"), list):
                    schema["type"] = next(t for t in schema["type"] if t != "null")
                if "enum" in schema:
                    schema["enum"] = [v for v in schema["enum"] if v is not None]
                if schema.get("default", 0) is None:
                    del schema["default"]
    return plain
