"""The provider directory and consent-scoped service referrals (SPEC §6)."""
from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from referral.accounts.models import User
from referral.audit.service import DENIED, record
from referral.db import utcnow
from referral.errors import N_, InvalidTransition, Message, NotFound, ValidationFailed
from referral.notify import events
from referral.reference.models import Area, Organisation, OrganisationKind, OrganisationService, ServiceType, organisation_areas
from referral.referrals import crypto
from referral.referrals.models import Referral, Status, parse_case_id
from referral.security.permissions import (case_view, may_send_service_referral, provider_may_see,
                                          provider_sees_where)
from referral.security.sealed import open_field, seal_field
from referral.services_dir import consent
from referral.services_dir.models import ServiceOutcome, ServiceReferral, ServiceReferralStatus

# Paths of the submission body that may be shared, and how to read each from the case.
SHAREABLE = ("survivor.name", "survivor.phone", "survivor.address", "survivor.age_group", "survivor.sex",
             "survivor.disability", "survivor.language", "survivor.safe_contact", "incident.date",
             "incident.narrative", "incident.location_type", "incident.immediate_danger", "perpetrator.name",
             "perpetrator.relationship", "perpetrator.details", "gbv_type", "flags")


def providers_for(session: Session, area: Area, service_type: str | None) -> list[Organisation]:
    """Active providers covering ``area`` or an ancestor, nearest first (then by code), offering
    ``service_type``; one query for the whole lineage."""
    nearness = {place.id: n for n, place in enumerate(area.lineage())}
    query = (select(Organisation, organisation_areas.c.area_id).join(organisation_areas)
             .where(organisation_areas.c.area_id.in_(list(nearness)), Organisation.kind == OrganisationKind.provider,
                    Organisation.active.is_(True)).order_by(Organisation.code))
    if service_type:
        query = query.where(Organisation.id.in_(select(OrganisationService.organisation_id).where(
            OrganisationService.service_type == ServiceType(service_type))))
    seen: list[Organisation] = []
    # Sorted by nearness, keeping the code order within an area; a provider covering several areas of the
    # lineage counts where it is nearest.
    for org, _area_id in sorted(session.execute(query), key=lambda row: nearness[row[1]]):
        if org not in seen:
            seen.append(org)
    return seen


def directory(session: Session, actor: User, area_code: str | None, service_type: str | None) -> list[dict[str, Any]]:
    """Providers covering an area (nearest first), or without an area every active provider, by code."""
    if area_code is None:
        query = (select(Organisation).where(Organisation.kind == OrganisationKind.provider,
                                            Organisation.active.is_(True)).order_by(Organisation.code))
        if service_type:
            query = query.where(Organisation.id.in_(select(OrganisationService.organisation_id).where(
                OrganisationService.service_type == ServiceType(service_type))))
        found = list(session.scalars(query))
        record(session, actor, "services.directory", object_type="area", object_id="all")
    else:
        area = Area.by_code(session, area_code)
        if area is None:
            raise ValidationFailed(fields={"area": [N_("No area has this code.")]})
        found = providers_for(session, area, service_type)
        record(session, actor, "services.directory", object_type="area", object_id=area.code)
    return [{"id": o.id, "code": o.code, "name": o.name, "services": [s.value for s in o.service_types],
             "areas": [a.code for a in o.areas], "coordinator": o.coordinator}
            for o in found]


def coordinator_for(session: Session, area: Area) -> Organisation | None:
    for org in providers_for(session, area, None):
        if org.coordinator:
            return org
    return None


COORDINATION_SHARE = ["flags", "gbv_type", "survivor.age_group", "survivor.language"]


def route_to_coordinator(session: Session, actor: User, referral: Referral, coordinator: Organisation,
                         now: dt.datetime) -> ServiceReferral | None:
    """A services-only case reaches the area's coordinating provider as a pending service referral,
    for the first service type it offers that the survivor consented to, sharing de-identified
    fields only; the focal point shares more if the survivor wishes."""
    for service_type in coordinator.service_types:
        if consent.is_active(session, referral.id, f"services:{service_type.value}", now):
            row = ServiceReferral(referral_id=referral.id, provider_id=coordinator.id,
                                  service_type=service_type.value, share=json.dumps(COORDINATION_SHARE),
                                  created_by_id=actor.id, created_at=now, status=ServiceReferralStatus.pending)
            session.add(row)
            session.flush()
            record(session, actor, "service_referral.create", object_type="referral", object_id=referral.id,
                   reason=f"services-only case to coordinator {coordinator.code}", fields=COORDINATION_SHARE)
            events.service_referral(session, referral, coordinator.id)
            return row
    return None


def suggest_health_referral(session: Session, referral: Referral) -> ServiceReferral | None:
    """A case in a clinical window (PEP or emergency contraception) gets a health-service suggestion at
    once (sent only with consent)."""
    # Providers are not what a new case changes: no flush of it first (a submission writes the case and the
    # suggestion together, after routing).
    with session.no_autoflush:
        providers = providers_for(session, referral.area, ServiceType.health.value)
    if not providers:
        return None
    suggestion = ServiceReferral(referral_id=referral.id, provider_id=providers[0].id, service_type="health",
                                 share="[]", status=ServiceReferralStatus.suggested)
    session.add(suggestion)
    record(session, None, "service_referral.suggest", object_type="referral", object_id=referral.id,
           reason=f"health service at {providers[0].code} (clinical urgency)")
    return suggestion


def _shared_value(referral: Referral, data_key: bytes | None, path: str) -> Any:
    from referral.referrals.crypto import open_referral_field

    sealed_paths = {"survivor.name", "survivor.phone", "survivor.address", "incident.narrative", "perpetrator.name",
                    "perpetrator.details"}
    if path in sealed_paths:
        return None if data_key is None else open_referral_field(referral, data_key, path)
    if path == "survivor.safe_contact":
        notes = None if data_key is None else open_referral_field(referral, data_key, "survivor.safe_contact.notes")
        return {"method": referral.safe_contact_method, "notes": notes}
    plain = {"survivor.age_group": referral.age_group, "survivor.sex": referral.sex,
             "survivor.disability": referral.disability, "survivor.language": referral.survivor_language,
             "incident.date": referral.incident_date.isoformat() if referral.incident_date else None,
             "incident.location_type": referral.location_type, "incident.immediate_danger": referral.immediate_danger,
             "perpetrator.relationship": referral.perpetrator_relationship, "gbv_type": referral.gbv_type,
             "flags": referral.flag_list}
    return plain[path]


def create_service_referral(session: Session, actor: User, referral_id: str, data: dict[str, Any], *,
                            now: dt.datetime | None = None) -> ServiceReferral:
    """Send a case to a provider, sharing only listed fields, each covered by active consent."""
    now = now or utcnow()
    case_id = parse_case_id(referral_id)
    referral = session.get(Referral, case_id) if case_id else None
    level = case_view(actor, referral) if referral is not None else None
    if referral is None or not may_send_service_referral(actor, referral, level):
        record(session, actor, "service_referral.create", object_type="referral", object_id=case_id or "malformed-id",
               outcome=DENIED, reason="not visible to this user")
        raise NotFound(N_("No such referral."))
    service_type = data["service_type"]
    if service_type not in {t.value for t in ServiceType}:
        raise ValidationFailed(fields={"service_type": [N_("Choose a service type.")]})
    provider = session.get(Organisation, data["provider_id"]) if 0 < data["provider_id"] < 2**31 else None
    if provider is None or provider not in providers_for(session, referral.area, service_type):
        raise ValidationFailed(fields={"provider_id": [N_("No provider of this service covers the case's area.")]})
    scope = f"services:{service_type}"
    unknown = [p for p in data["share"] if p not in SHAREABLE]
    if unknown:
        # Not echoed: a mistyped entry may be case text pasted into the wrong place.
        raise ValidationFailed(fields={"share": [
            Message(N_("1 entry is not a shareable field path; use: %(paths)s."), paths=", ".join(SHAREABLE))
            if len(unknown) == 1 else
            Message(N_("%(count)s entries are not a shareable field path; use: %(paths)s."), count=len(unknown),
                    paths=", ".join(SHAREABLE))]})
    if data["share"] and not consent.is_active(session, referral.id, scope, now):
        record(session, actor, "service_referral.create", object_type="referral", object_id=referral.id,
               outcome=DENIED, reason=f"no active consent for {scope}")
        raise ValidationFailed(N_("The survivor has not consented to sharing with %(service)s services."),
                               params={"service": service_type},
                               fields={"share": [Message(N_("Not covered by consent (%(scope)s)."), scope=scope)]},
                               code="consent_required")
    if referral.status in (Status.withdrawn, Status.closed):
        raise InvalidTransition(N_("A withdrawn or closed case cannot be referred."))
    row = ServiceReferral(referral_id=referral.id, provider_id=provider.id, service_type=service_type,
                          share=json.dumps(sorted(set(data["share"]))), created_by_id=actor.id, created_at=now,
                          status=ServiceReferralStatus.pending)
    session.add(row)
    session.flush()
    record(session, actor, "service_referral.create", object_type="referral", object_id=referral.id,
           reason=f"to {provider.code} for {service_type}", fields=data["share"])
    events.service_referral(session, referral, provider.id)
    return row


def _provider_view(session: Session, actor: User, service_referral_id: str, action: str,
                   now: dt.datetime) -> ServiceReferral:
    """A provider's user sees a service referral of their organisation while consent lasts; else 404."""
    sr_id = parse_case_id(service_referral_id)
    row = session.get(ServiceReferral, sr_id) if sr_id else None
    ok = (row is not None and provider_may_see(actor, row)
          and consent.is_active(session, row.referral_id, f"services:{row.service_type}", now))
    if not ok:
        record(session, actor, action, object_type="service_referral", object_id=sr_id or "malformed-id",
               outcome=DENIED, reason="not visible to this user or consent ended")
        raise NotFound(N_("No such service referral."))
    return row


def _provider_body(session: Session, row: ServiceReferral, *, with_fields: bool) -> dict[str, Any]:
    referral = session.get(Referral, row.referral_id)
    body: dict[str, Any] = {"id": row.id, "reference": referral.reference, "service_type": row.service_type,
                            "status": row.status.value, "outcome": row.outcome.value if row.outcome else None,
                            "created_at": row.created_at.isoformat()}
    if with_fields:
        data_key = crypto.case_key(referral)
        body["fields"] = {path: _shared_value(referral, data_key, path) for path in json.loads(row.share)}
    return body


def read_for_provider(session: Session, actor: User, service_referral_id: str, *,
                      now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    row = _provider_view(session, actor, service_referral_id, "service_referral.read", now)
    body = _provider_body(session, row, with_fields=True)
    record(session, actor, "service_referral.read", object_type="referral", object_id=row.referral_id,
           fields=json.loads(row.share), reason=f"service referral {row.id}")
    return body


def list_for_provider(session: Session, actor: User, *, page: int, per_page: int,
                      now: dt.datetime | None = None) -> tuple[list[dict[str, Any]], int]:
    now = now or utcnow()
    visible = provider_sees_where(actor)
    if visible is None:
        record(session, actor, "service_referral.list", outcome=DENIED, reason="not a provider")
        return [], 0
    rows = [r for r in session.scalars(select(ServiceReferral).where(*visible)
                                       .order_by(ServiceReferral.created_at.desc()))
            if consent.is_active(session, r.referral_id, f"services:{r.service_type}", now)]
    record(session, actor, "service_referral.list", reason=f"{len(rows)} visible")
    chunk = rows[(page - 1) * per_page: page * per_page]
    return [_provider_body(session, r, with_fields=False) for r in chunk], len(rows)


TRANSITIONS = {
    "accept": ({ServiceReferralStatus.pending}, ServiceReferralStatus.accepted),
    "decline": ({ServiceReferralStatus.pending}, ServiceReferralStatus.declined),
    "complete": ({ServiceReferralStatus.pending, ServiceReferralStatus.accepted}, ServiceReferralStatus.completed),
}


def respond(session: Session, actor: User, service_referral_id: str, verb: str, data: dict[str, Any], *,
            now: dt.datetime | None = None) -> ServiceReferral:
    """The provider accepts, declines or completes with a GBVIMS outcome and an optional (sealed) note."""
    now = now or utcnow()
    row = _provider_view(session, actor, service_referral_id, f"service_referral.{verb}", now)
    allowed_from, target = TRANSITIONS[verb]
    if row.status not in allowed_from:
        raise InvalidTransition(N_("A service referral that is %(status)s cannot be %(target)s."),
                                params={"status": row.status.value, "target": target.value})
    if verb == "complete" and not data.get("outcome"):
        raise ValidationFailed(fields={"outcome": [N_("Completion needs a GBVIMS outcome.")]})
    row.status, row.responded_at = target, now
    if data.get("outcome"):
        row.outcome = ServiceOutcome(data["outcome"])
    if data.get("note"):
        referral = session.get(Referral, row.referral_id)
        data_key = crypto.case_key(referral)
        if data_key is not None:
            row.note_sealed = seal_field(data_key, data["note"], case_id=referral.id, table="service_referrals",
                                         column="note_sealed", row_id=row.id)
    session.flush()
    record(session, actor, f"service_referral.{verb}", object_type="referral", object_id=row.referral_id,
           reason=f"service referral {row.id}" + (f", outcome {row.outcome.value}" if row.outcome else ""))
    return row


@functools.cache
def timeline_statement() -> Any:
    # Built once: every full read of a case runs it. The provider comes in the same query.
    # Plain rows, not objects: a read changes none of them.
    return (select(ServiceReferral.id, Organisation.code.label("provider"), ServiceReferral.service_type,
                   ServiceReferral.status, ServiceReferral.outcome, ServiceReferral.share, ServiceReferral.note_sealed)
            .join(Organisation, Organisation.id == ServiceReferral.provider_id)
            .where(ServiceReferral.referral_id == bindparam("id")).order_by(ServiceReferral.created_at,
                                                                            ServiceReferral.id))


def timeline(session: Session, referral: Referral, data_key: bytes | None, rows: Any = None) -> list[dict[str, Any]]:
    """Service referrals as the case's handlers see them, with the provider's notes (``rows``: those
    ``timeline_statement`` gave, already read)."""
    out = []
    for row in session.execute(timeline_statement(), {"id": referral.id}) if rows is None else rows:
        note = None
        if row.note_sealed is not None and data_key is not None:
            note = open_field(data_key, bytes(row.note_sealed), case_id=referral.id, table="service_referrals",
                              column="note_sealed", row_id=row.id)
        out.append({"id": row.id, "provider": row.provider, "service_type": row.service_type,
                    "status": row.status.value, "outcome": row.outcome.value if row.outcome else None,
                    "share": json.loads(row.share), "note": note})
    return out
