"""Consent per scope and case (SPEC §4): who gave it, who recorded it, expiry, withdrawal, overrides."""
from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from referral.accounts.models import User
from referral.audit.service import DENIED, record
from referral.db import Rows, insert_rows, utcnow
from referral.errors import N_, Conflict, Forbidden, Message, NotFound, ValidationFailed
from referral.reference.models import ServiceType
from referral.referrals import crypto
from referral.referrals.models import Referral, Status, parse_case_id
from referral.security.permissions import case_view, may_override_consent, may_record_consent
from referral.security.sealed import seal_field
from referral.services_dir.models import Consent, GivenBy

BASE_SCOPES = ("police", "sms_contact", "statistics")
SERVICE_SCOPES = tuple(f"services:{t.value}" for t in ServiceType)
SCOPES = BASE_SCOPES + SERVICE_SCOPES
CHILD_AGE_GROUPS = frozenset({"0-5", "6-11", "12-14", "15-17"})


def scopes_from_submission(consent: dict[str, Any]) -> dict[str, bool]:
    services = consent["services"]
    granted_types = {t.value for t in ServiceType} if services is True else set(services or [])
    scopes = {"police": consent["police"], "sms_contact": consent["sms_contact"], "statistics": consent["statistics"]}
    scopes.update({f"services:{t.value}": t.value in granted_types for t in ServiceType})
    return scopes


def submission_consent_rows(actor: User, referral: Referral, consent: dict[str, Any],
                            now: dt.datetime) -> list[dict[str, Any]]:
    """The consent records a submission states, one per scope, for ``insert_consents``."""
    given_by = GivenBy(consent.get("given_by") or "survivor")
    return [{"referral_id": referral.id, "scope": scope, "granted": granted, "given_by": given_by,
             "recorded_by_id": actor.id, "recorded_at": now}
            for scope, granted in scopes_from_submission(consent).items()]


CONSENT_COLUMNS = ("referral_id", "scope", "granted", "given_by", "recorded_by_id", "recorded_at")


def consent_rows(rows: list[dict[str, Any]]) -> list[Rows]:
    """``rows`` as plain rows for ``referral.db.insert_objects`` (none for none)."""
    if not rows:
        return []
    return [(Consent.__table__, CONSENT_COLUMNS,
             [(r["referral_id"], r["scope"], r["granted"], GivenBy(r["given_by"]).value, r["recorded_by_id"],
               r["recorded_at"]) for r in rows])]


def insert_consents(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert consent records past the ORM, without loading them back (nothing in the request needs them as
    objects; ``current`` and ``latest_by_scope`` read the table). Flushes pending changes first: the case
    they belong to may not be in the database yet."""
    if rows:
        session.flush()
        for table, columns, values in consent_rows(rows):
            insert_rows(session, table, columns, values)


def current(session: Session, referral_id: str, scope: str) -> Consent | None:
    return session.scalar(select(Consent).where(Consent.referral_id == referral_id, Consent.scope == scope)
                          .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1))


@functools.cache
def records_statement() -> Any:
    # Built once: every full read of a case runs it. Plain rows, not Consent objects (a read changes none).
    return (select(Consent.scope, Consent.granted, Consent.given_by, Consent.recorded_at, Consent.expires_at,
                   Consent.withdrawn_at)
            .where(Consent.referral_id == bindparam("id")).order_by(Consent.recorded_at, Consent.id))


def latest_by_scope(session: Session, referral_id: str, rows: Any = None) -> dict[str, Any]:
    """The latest record of every scope of a case, in one query, as rows (scope, granted, given_by,
    recorded_at, expires_at, withdrawn_at); ``rows``: those ``records_statement`` gave, already read."""
    latest: dict[str, Any] = {}
    for row in session.execute(records_statement(), {"id": referral_id}) if rows is None else rows:
        latest[row.scope] = row
    return latest


def _active(row: Any, now: dt.datetime) -> bool:
    return bool(row and row.granted and row.withdrawn_at is None and (row.expires_at is None or row.expires_at > now))


def is_active(session: Session, referral_id: str, scope: str, now: dt.datetime | None = None) -> bool:
    """Granted, not withdrawn, not expired — checked at every access, so a withdrawal acts at once."""
    return _active(current(session, referral_id, scope), now or utcnow())


def change_consent(session: Session, actor: User, referral_id: str, data: dict[str, Any], *,
                   now: dt.datetime | None = None) -> Consent:
    """Record a new consent statement for one scope (grant, refusal or withdrawal).

    The submitting focal point or the case's officer/supervisor record what the
    survivor (or caregiver, or a child's assent) said. A supervisor may record a
    best-interest override for a child, with a reason (sealed: it is case text).
    """
    now = now or utcnow()
    case_id = parse_case_id(referral_id)
    # Locked: a police withdrawal changes the case's stage, which must not race an officer's accept.
    referral = session.scalar(select(Referral).where(Referral.id == case_id).with_for_update()
                              .execution_options(populate_existing=True)) if case_id else None
    level = case_view(actor, referral) if referral is not None else None
    if referral is None or not may_record_consent(actor, referral, level):
        record(session, actor, "consent.change", object_type="referral", object_id=case_id or "malformed-id",
               outcome=DENIED, reason="not visible to this user")
        raise NotFound(N_("No such referral."))
    scope, given_by = data["scope"], GivenBy(data["given_by"])
    if scope not in SCOPES:
        raise ValidationFailed(fields={"scope": [Message(N_("Use one of: %(choices)s."), choices=", ".join(SCOPES))]})
    if data.get("expires_at") is not None and data["expires_at"] <= now:
        raise ValidationFailed(fields={"expires_at": [N_("Must be in the future.")]})
    child = referral.age_group in CHILD_AGE_GROUPS
    if given_by is GivenBy.supervisor_override:
        if not may_override_consent(actor):
            record(session, actor, "consent.override", object_type="referral", object_id=referral.id, outcome=DENIED,
                   reason="only a supervisor may override")
            raise Forbidden(N_("Only the unit's supervisor may record a best-interest override."))
        if not child:
            raise ValidationFailed(fields={"given_by": [N_("A best-interest override is only for a child survivor.")]})
        if not data.get("reason"):
            raise ValidationFailed(fields={"reason": [N_("An override needs its reason.")]})
    if given_by is GivenBy.child_assent and not child:
        raise ValidationFailed(fields={"given_by": [N_("Child assent is only for a child survivor.")]})
    if scope == "police" and data["granted"] and referral.status is Status.services_only:
        # Its standard's clocks ran from the submission while no officer could see it: a case for the police
        # is a new referral with police consent (the duplicate check links the two), not this one moved.
        raise Conflict(N_("This case stays with support services. To involve the police, submit a new "
                          "referral with the survivor's consent to police."))
    row = Consent(referral_id=referral.id, scope=scope, granted=data["granted"], given_by=given_by,
                  recorded_by_id=actor.id, recorded_at=now, expires_at=data.get("expires_at"),
                  withdrawn_at=None if data["granted"] else now)
    session.add(row)
    session.flush()
    if data.get("reason"):
        data_key = crypto.case_key(referral)
        if data_key is not None:
            row.reason_sealed = seal_field(data_key, data["reason"], case_id=referral.id, table="consents",
                                           column="reason_sealed", row_id=str(row.id))
    record(session, actor, "consent.change", object_type="referral", object_id=referral.id,
           reason=f"{scope} {'granted' if data['granted'] else 'withdrawn or refused'} by {given_by.value}")
    from referral.referrals.workflow import WITH_POLICE, leave_police

    if scope == "police" and not data["granted"] and referral.status in WITH_POLICE:
        if child and given_by in (GivenBy.caregiver, GivenBy.child_assent):
            # A child's case stays with the police on a caregiver's (or the child's) withdrawal: the
            # caregiver may be the one she needs protecting from, and SPEC §4 gives the best-interest
            # decision to the supervisor, who can only make it while the police can see the case.
            record(session, actor, "consent.police_kept", object_type="referral", object_id=referral.id,
                   reason=f"child case: police withdrawal by {given_by.value} left for the supervisor's decision")
            from referral.notify import events

            events.escalated(session, referral)
        else:
            leave_police(session, actor, referral, now)
    session.flush()
    return row


def consent_view(session: Session, referral: Referral, now: dt.datetime | None = None, *,
                 rows: Any = None) -> dict[str, Any]:
    now = now or utcnow()
    latest = latest_by_scope(session, referral.id, rows)
    return {scope: {"active": _active(row, now), "given_by": row.given_by.value,
                    "recorded_at": row.recorded_at.isoformat(),
                    "expires_at": row.expires_at.isoformat() if row.expires_at else None}
            for scope in SCOPES if (row := latest.get(scope)) is not None}
