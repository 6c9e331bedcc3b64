"""JSON Schema (OpenAPI 3.1) of what the API answers.

Request bodies come from the marshmallow schemas the views load; answers are
built by services as plain dicts, so their shapes are written down here. They
name keys and types only: never an example value, so the document can be public.
Objects the API owns completely are closed (``additionalProperties: false``);
the case read, whose content depends on what the caller may see, lists every
key it can have and requires only those every caller gets.
"""
from __future__ import annotations

from typing import Any

from referral.accounts.models import Gender, Role
from referral.referrals.classification import GbvType
from referral.referrals.models import Status
from referral.services_dir.models import ServiceOutcome, ServiceReferralStatus

Json = dict[str, Any]

STRING: Json = {"type": "string"}
INTEGER: Json = {"type": "integer"}
BOOLEAN: Json = {"type": "boolean"}
NUMBER: Json = {"type": "number"}
TIMESTAMP: Json = {"type": "string", "format": "date-time"}
DATE: Json = {"type": "string", "format": "date"}
CASE_ID: Json = {"type": "string", "format": "uuid"}
STRINGS: Json = {"type": "array", "items": STRING}
ANY_OBJECT: Json = {"type": "object"}


def ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Json) -> Json:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def enum(values: Any) -> Json:
    return {"type": "string", "enum": [getattr(v, "value", v) for v in values]}


def closed(required: Json, optional: Json | None = None) -> Json:
    """An object with exactly these keys: ``required`` always present, ``optional`` sometimes."""
    return {"type": "object", "properties": {**required, **(optional or {})}, "required": sorted(required),
            "additionalProperties": False}


def page_of(item: Json) -> Json:
    """The list envelope of SPEC §9."""
    return closed({"items": {"type": "array", "items": item}, "page": {"type": "integer", "minimum": 1},
                   "per_page": {"type": "integer", "minimum": 1, "maximum": 100},
                   "total": {"type": "integer", "minimum": 0}})


STATUS = enum(Status)
# A de-identified count: exact from 5 up (or none at all), else only "<5" (SPEC §8).
SMALL_COUNT: Json = {"oneOf": [{"type": "integer", "const": 0}, {"type": "integer", "minimum": 5},
                               {"const": "<5"}]}
TIMESTAMPED = {"id": STRING, "created_at": TIMESTAMP}

_user = {
    "id": INTEGER, "email": STRING, "name": STRING, "role": enum(Role), "unit": nullable(STRING),
    "org": nullable(STRING), "gender": enum(Gender), "languages": STRINGS, "phone": nullable(STRING),
    "active": BOOLEAN, "locked": BOOLEAN, "totp_enrolled": BOOLEAN, "enrolment_pending": BOOLEAN,
    "created_at": TIMESTAMP,
}
# A one-time link for the account holder to set up the account (or a new authenticator) themselves: the
# admin hands it over and never sees a password or a TOTP secret (docs/decisions.md).
_enrolment = closed({"url": {"type": "string", "format": "uri"}, "kind": enum(["account", "authenticator"]),
                     "expires_at": TIMESTAMP})

_case_status = {"id": CASE_ID, "reference": STRING, "status": STATUS, "created_at": TIMESTAMP}
_case_summary = {"gbv_type": nullable(enum(GbvType)), "flags": STRINGS, "area": STRING, "age_group": STRING,
                 "accept_by": nullable(TIMESTAMP), "assigned_officer_id": nullable(INTEGER)}
_case_content = {
    "unit": nullable(STRING), "erased": BOOLEAN, "outcome": nullable(STRING), "closure_pending": BOOLEAN,
    "survivor": ANY_OBJECT, "incident": ANY_OBJECT, "perpetrator": ANY_OBJECT, "consent": ANY_OBJECT,
    "consents": ANY_OBJECT, "service_referrals": {"type": "array", "items": ANY_OBJECT},
    "actions": {"type": "array", "items": ANY_OBJECT}, "protection_orders": {"type": "array", "items": ANY_OBJECT},
    "notes": {"type": "array", "items": ANY_OBJECT},
    "matches": closed({"same_phone": STRINGS, "same_perpetrator": STRINGS}),
}

_event = {
    "seq": INTEGER, "ts": TIMESTAMP, "actor_id": nullable(INTEGER), "actor_role": nullable(STRING), "action": STRING,
    "object_type": nullable(STRING), "object_id": nullable(STRING), "outcome": enum(["allowed", "denied", "error"]),
    "reason": nullable(STRING), "source_ip": nullable(STRING), "request_id": nullable(STRING), "fields": STRINGS,
    "break_glass": BOOLEAN,
}

_provider_referral = {"id": STRING, "reference": STRING, "service_type": STRING,
                      "status": enum(ServiceReferralStatus), "outcome": nullable(enum(ServiceOutcome)),
                      "created_at": TIMESTAMP}

SCHEMAS: dict[str, Json] = {
    "Error": closed({"error": closed({
        "code": STRING, "message": STRING,
        "fields": {"type": "object", "description": "Field name → messages; values are never echoed."}})}),
    "Token": closed({"token": STRING, "expires_at": TIMESTAMP}),
    "User": closed(_user),
    "UserWithEnrolmentLink": closed({**_user, "enrolment": _enrolment}),
    "CaseCreated": closed({"id": CASE_ID, "reference": STRING, "status": STATUS, "gbv_type": enum(GbvType),
                           "flags": STRINGS}),
    "CaseStatus": closed(_case_status),
    "Case": closed(_case_status, {**_case_summary, **_case_content}),
    "CaseState": closed({"id": CASE_ID, "reference": STRING, "status": STATUS,
                         "assigned_officer_id": nullable(INTEGER), "closure_pending": BOOLEAN}),
    "CaseStage": closed({"id": CASE_ID, "reference": STRING, "status": STATUS}),
    "CaseErased": closed({"id": CASE_ID, "reference": STRING, "status": STATUS, "erased": {"const": True}}),
    "NoteCreated": closed(TIMESTAMPED),
    "ActionCreated": closed({**TIMESTAMPED, "type": STRING}),
    "CaseCompliance": closed({"id": CASE_ID, "reference": STRING,
                              "standard": nullable(closed({"code": STRING, "version": INTEGER})),
                              "steps": {"type": "array", "items": closed({
                                  "step": STRING, "name": STRING, "status": STRING,
                                  "due_at": nullable(TIMESTAMP), "done_at": nullable(TIMESTAMP)})}}),
    "ConsentRecorded": closed({"scope": STRING, "granted": BOOLEAN, "given_by": STRING, "recorded_at": TIMESTAMP,
                               "expires_at": nullable(TIMESTAMP)}),
    "Provider": closed({"id": INTEGER, "code": STRING, "name": STRING, "services": STRINGS, "areas": STRINGS,
                        "coordinator": BOOLEAN}),
    "ServiceReferralCreated": closed({"id": STRING, "status": enum(ServiceReferralStatus), "provider_id": INTEGER,
                                      "service_type": STRING}),
    "ProviderServiceReferral": closed(_provider_referral, {"fields": ANY_OBJECT}),
    "ServiceReferralState": closed({"id": STRING, "status": enum(ServiceReferralStatus),
                                    "outcome": nullable(enum(ServiceOutcome))}),
    "AuditEvent": closed(_event),
    "MatchCounts": closed({"id": CASE_ID, "same_phone": INTEGER, "same_perpetrator": INTEGER}),
    "Disclosure": closed({"seq": INTEGER, "ts": TIMESTAMP, "actor_id": nullable(INTEGER),
                          "actor_role": nullable(STRING), "action": STRING, "fields": STRINGS, "purpose": STRING}),
    "ChainVerification": closed({"ok": BOOLEAN, "count": INTEGER, "first_bad_seq": nullable(INTEGER),
                                 "problem": nullable(STRING), "checkpoints": INTEGER}),
    "BreakGlassGrant": closed({"id": INTEGER, "case_id": CASE_ID, "expires_at": TIMESTAMP}),
    "BreakGlassQueueItem": closed({"id": INTEGER, "case_id": CASE_ID, "user_id": INTEGER, "granted_at": TIMESTAMP,
                                   "expires_at": TIMESTAMP, "reviewed": BOOLEAN,
                                   "review_outcome": nullable(STRING), "justification": nullable(STRING)}),
    "BreakGlassReview": closed({"id": INTEGER, "review_outcome": nullable(STRING)}),
    "Anomaly": {"type": "object", "required": ["kind", "actor_id"],
                "properties": {"kind": STRING, "actor_id": nullable(INTEGER), "count": INTEGER, "seq": INTEGER,
                               "ts": TIMESTAMP}},
    "DeidentifiedStatistics": closed({
        "since": nullable(DATE), "until": nullable(DATE), "cases": SMALL_COUNT,
        "tables": {"type": "object", "additionalProperties": closed({
            "cells": {"type": "object", "additionalProperties": {
                "oneOf": [{"type": "integer", "minimum": 5}, {"enum": ["<5", "suppressed"]}]}},
            "total": SMALL_COUNT})}}),
    "ComplianceSummary": {"type": "object", "required": ["unit", "since", "until", "cases", "steps"],
                          "properties": {"unit": nullable(STRING), "since": nullable(DATE), "until": nullable(DATE),
                                         "cases": INTEGER, "steps": ANY_OBJECT}},
    "Course": closed({"code": STRING, "name": STRING, "validity_months": INTEGER, "required_for": STRING}),
    "Standard": closed({"code": STRING, "version": INTEGER, "name": STRING, "countries": STRINGS,
                        "effective_from": DATE, "settings": {"type": "object", "additionalProperties": NUMBER},
                        "steps": {"type": "array", "items": closed({"code": STRING, "name": STRING})}}),
    "CertificationRecorded": closed({"email": STRING, "course": STRING, "completed_on": DATE, "expires_on": DATE}),
    "Area": closed({"code": STRING, "name": STRING, "kind": STRING, "parent": nullable(STRING),
                    "depth": {"type": "integer", "minimum": 0}}),
    "Unit": closed({"code": STRING, "name": STRING, "areas": STRINGS, "routing": enum(["direct", "pool"]),
                    "closure_approval": BOOLEAN, "active": BOOLEAN}),
    "Organisation": closed({"code": STRING, "name": STRING, "kind": STRING, "services": STRINGS, "areas": STRINGS,
                            "coordinator": BOOLEAN, "active": BOOLEAN}),
    "SmsResult": closed({"result": enum(["created", "status", "unknown_reference", "malformed"])},
                        {"reference": STRING}),
    "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"]},
}
