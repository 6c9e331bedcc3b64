"""The OpenAPI document at /api/v1/openapi.json (SPEC §9): complete, valid, public-safe."""
from __future__ import annotations

import json

import pytest
import schemathesis

from referral.openapi.operations import OPERATIONS
from referral.security.permissions import PUBLIC, declared_access
from tests.referrals.helpers import canaries, submission


@pytest.fixture()
def document(client):  # type: ignore[no-untyped-def]
    resp = client.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.mimetype == "application/json"
    return resp.get_json()


def _api_routes(app):  # type: ignore[no-untyped-def]
    return {(method.lower(), rule.rule, rule.endpoint) for rule in app.url_map.iter_rules()
            if rule.endpoint.startswith("api.") for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}


def test_served_without_sign_in_as_an_openapi_3_document(document):  # type: ignore[no-untyped-def]
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Amanat API"
    # schemathesis refuses a document that is not valid OpenAPI.
    schema = schemathesis.openapi.from_dict(document)
    assert len(list(schema.get_all_operations())) > 40


def test_every_api_route_is_described_with_its_method(app, document):  # type: ignore[no-untyped-def]
    routes = _api_routes(app)
    documented = {(method, path) for path, operations in document["paths"].items() for method in operations}
    expected = {(method, rule.replace("<int:", "{").replace("<", "{").replace(">", "}")) for method, rule, _e in routes}
    assert documented == expected


def test_every_route_has_its_own_entry_in_the_table(app):  # type: ignore[no-untyped-def]
    """A new endpoint must say what it takes and answers; a removed one must leave the table."""
    endpoints = {endpoint for _m, _r, endpoint in _api_routes(app)}
    assert sorted(endpoints - set(OPERATIONS)) == [], "describe these in referral/openapi/operations.py"
    assert sorted(set(OPERATIONS) - endpoints) == [], "these entries describe no endpoint"


def test_access_rules_come_from_the_views(app, document):  # type: ignore[no-untyped-def]
    bearer = document["components"]["securitySchemes"]["bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"bearer": []}]
    for method, rule, endpoint in _api_routes(app):
        path = rule.replace("<int:", "{").replace("<", "{").replace(">", "}")
        operation = document["paths"][path][method]
        if declared_access(app.view_functions[endpoint]) == PUBLIC:
            assert operation["security"] == [], endpoint
            assert "401" not in operation["responses"] or endpoint in ("api.create_token", "api.sms_inbound")
        else:
            assert "security" not in operation, endpoint  # the global bearer requirement applies
            assert {"401", "403"} <= set(operation["responses"]), endpoint
            assert operation["x-permission"] == declared_access(app.view_functions[endpoint]).value


def test_public_operations_are_exactly_the_documented_three(document):  # type: ignore[no-untyped-def]
    public = sorted(f"{m.upper()} {p}" for p, ops in document["paths"].items() for m, op in ops.items()
                    if op.get("security") == [])
    assert public == ["GET /api/v1/openapi.json", "POST /api/v1/auth/tokens", "POST /api/v1/sms/inbound"]


def test_request_bodies_come_from_the_marshmallow_schemas(document):  # type: ignore[no-untyped-def]
    schemas = document["components"]["schemas"]
    submit = document["paths"]["/api/v1/referrals"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Submission"}
    submission_schema = schemas["Submission"]
    assert set(submission_schema["required"]) == {"area", "survivor", "incident", "consent"}
    assert submission_schema["additionalProperties"] is False  # unknown fields are refused
    assert schemas["Survivor"]["properties"]["age_group"]["enum"] == ["0-5", "6-11", "12-14", "15-17", "18-25",
                                                                      "26-40", "41-60", "61+"]
    services = schemas["Consent"]["properties"]["services"]["oneOf"]
    assert services[0] == {"type": "boolean"} and "health" in services[1]["items"]["enum"]
    listing = document["paths"]["/api/v1/referrals"]["get"]
    per_page = next(p for p in listing["parameters"] if p["name"] == "per_page")
    assert per_page == {"in": "query", "name": "per_page", "required": False,
                        "schema": {"type": "integer", "default": 20, "minimum": 1, "maximum": 100}}
    accept = document["paths"]["/api/v1/referrals/{referral_id}/accept"]["post"]
    assert accept["requestBody"]["required"] is False
    sms = document["paths"]["/api/v1/sms/inbound"]["post"]
    assert "application/x-www-form-urlencoded" in sms["requestBody"]["content"]
    assert {p["name"] for p in sms["parameters"]} == {"X-Amanat-Timestamp", "X-Amanat-Signature"}


def test_errors_and_lists_have_the_contracts_shape(document):  # type: ignore[no-untyped-def]
    schemas = document["components"]["schemas"]
    error = schemas["Error"]["properties"]["error"]
    assert sorted(error["required"]) == ["code", "fields", "message"]
    users = document["paths"]["/api/v1/admin/users"]["get"]["responses"]
    page = users["200"]["content"]["application/json"]["schema"]
    assert sorted(page["required"]) == ["items", "page", "per_page", "total"]
    assert page["properties"]["items"]["items"] == {"$ref": "#/components/schemas/User"}
    for status in ("400", "401", "403", "422", "429"):
        assert users[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    export = document["paths"]["/api/v1/audit/export.csv"]["get"]["responses"]["200"]
    assert list(export["content"]) == ["text/csv"]


def test_the_document_holds_no_case_content(app, client, document, people, place):  # type: ignore[no-untyped-def]
    """Built from code only: cases submitted before it is read cannot appear in it."""
    values = canaries()
    _f, headers = people["focal"]
    assert client.post("/api/v1/referrals", json=submission(place["district"].code, values),
                       headers=headers).status_code == 201
    app.extensions.pop("amanat.openapi", None)  # rebuild now, with a case in the database
    text = client.get("/api/v1/openapi.json").get_data(as_text=True)
    assert json.loads(text) == document
    for value in values.values():
        assert value not in text
    for code in (place["district"].code, place["unit"].code, people["focal"][0].email):
        assert code not in text
