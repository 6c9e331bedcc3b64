"""API: directory, consents, service referrals (SPEC §12)."""
from __future__ import annotations

import datetime as dt

from flask import jsonify
from marshmallow import Schema, fields, validate

from referral.api import acting_user, PageArgs, api, load_args, load_json, page_body, page_of_list
from referral.extensions import db
from referral.reference.models import ServiceType
from referral.referrals.schemas import Bool
from referral.security.permissions import Permission, requires
from referral.services_dir import consent, services
from referral.services_dir.models import GivenBy, ServiceOutcome

TYPES = [t.value for t in ServiceType]



class DirectoryArgs(PageArgs):
    area = fields.String(load_default=None, validate=validate.Length(min=1, max=64))  # none: every provider
    type = fields.String(load_default=None, validate=validate.OneOf(TYPES))


class ConsentIn(Schema):
    scope = fields.String(required=True, validate=validate.OneOf(consent.SCOPES))
    granted = Bool(required=True)
    given_by = fields.String(load_default="survivor", validate=validate.OneOf([g.value for g in GivenBy]))
    # Bounded so that time-zone arithmetic on it cannot overflow (9999-12-31T23:59-14:00 is year 10000 in UTC).
    expires_at = fields.AwareDateTime(load_default=None, allow_none=True, validate=validate.Range(
        min=dt.datetime(2000, 1, 1, tzinfo=dt.UTC), max=dt.datetime(2100, 1, 1, tzinfo=dt.UTC)))
    reason = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=2000))


class ServiceReferralIn(Schema):
    provider_id = fields.Integer(required=True, strict=True)
    service_type = fields.String(required=True, validate=validate.OneOf(TYPES))
    share = fields.List(fields.String(validate=validate.Length(max=64)), required=True,
                        validate=validate.Length(max=len(services.SHAREABLE)))


class RespondIn(Schema):
    outcome = fields.String(load_default=None, allow_none=True,
                            validate=validate.OneOf([o.value for o in ServiceOutcome]))
    note = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=5000))


@api.get("/services")
@requires(Permission.SERVICES_DIRECTORY)
def service_directory():  # type: ignore[no-untyped-def]
    args = load_args(DirectoryArgs)
    items = services.directory(db.session, acting_user(), args["area"], args["type"])
    db.session.commit()
    return jsonify(page_of_list(items, args))


@api.post("/referrals/<referral_id>/consents")
@requires(Permission.CONSENT_RECORD)
def record_consent(referral_id: str):  # type: ignore[no-untyped-def]
    data = load_json(ConsentIn)
    row = consent.change_consent(db.session, acting_user(), referral_id, data)
    db.session.commit()
    return jsonify(scope=row.scope, granted=row.granted, given_by=row.given_by.value,
                   recorded_at=row.recorded_at.isoformat(),
                   expires_at=row.expires_at.isoformat() if row.expires_at else None), 201


@api.post("/referrals/<referral_id>/service-referrals")
@requires(Permission.SERVICE_REFERRAL_CREATE)
def create_service_referral(referral_id: str):  # type: ignore[no-untyped-def]
    data = load_json(ServiceReferralIn)
    row = services.create_service_referral(db.session, acting_user(), referral_id, data)
    db.session.commit()
    return jsonify(id=row.id, status=row.status.value, provider_id=row.provider_id, service_type=row.service_type), 201


@api.get("/service-referrals")
@requires(Permission.SERVICE_REFERRAL_READ)
def list_service_referrals():  # type: ignore[no-untyped-def]
    args = load_args(PageArgs)
    items, total = services.list_for_provider(db.session, acting_user(), page=args["page"], per_page=args["per_page"])
    db.session.commit()
    return jsonify(page_body(items, page=args["page"], per_page=args["per_page"], total=total))


@api.get("/service-referrals/<service_referral_id>")
@requires(Permission.SERVICE_REFERRAL_READ)
def read_service_referral(service_referral_id: str):  # type: ignore[no-untyped-def]
    body = services.read_for_provider(db.session, acting_user(), service_referral_id)
    db.session.commit()
    return jsonify(body)


def _respond(service_referral_id: str, verb: str):  # type: ignore[no-untyped-def]
    data = load_json(RespondIn) if _has_body() else {}
    row = services.respond(db.session, acting_user(), service_referral_id, verb, data)
    db.session.commit()
    return jsonify(id=row.id, status=row.status.value, outcome=row.outcome.value if row.outcome else None)


def _has_body() -> bool:
    from flask import request

    return bool(request.get_data())


@api.post("/service-referrals/<service_referral_id>/accept")
@requires(Permission.SERVICE_REFERRAL_RESPOND)
def accept_service_referral(service_referral_id: str):  # type: ignore[no-untyped-def]
    return _respond(service_referral_id, "accept")


@api.post("/service-referrals/<service_referral_id>/decline")
@requires(Permission.SERVICE_REFERRAL_RESPOND)
def decline_service_referral(service_referral_id: str):  # type: ignore[no-untyped-def]
    return _respond(service_referral_id, "decline")


@api.post("/service-referrals/<service_referral_id>/complete")
@requires(Permission.SERVICE_REFERRAL_RESPOND)
def complete_service_referral(service_referral_id: str):  # type: ignore[no-untyped-def]
    return _respond(service_referral_id, "complete")
