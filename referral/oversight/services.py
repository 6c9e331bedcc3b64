"""Oversight services. Every read here is itself audited (SPEC §8)."""
from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import json
from typing import Any

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from referral.accounts.models import User
from referral.audit.models import AuditEvent
from referral.audit.service import DENIED, record
from referral.notify import events
from referral.db import local_zone, utcnow
from referral.errors import N_, Conflict, Message, NotFound, ValidationFailed
from referral.oversight.models import BreakGlassGrant
from referral.referrals import crypto
from referral.referrals.models import Referral, parse_case_id
from referral.security.permissions import Permission, require
from referral.security.sealed import seal_field

AUDIT_COLUMNS = ("seq", "ts", "actor_id", "actor_role", "action", "object_type", "object_id", "outcome", "reason",
                 "source_ip", "request_id", "fields")


def _audit_query(filters: dict[str, Any]) -> Any:
    query = select(AuditEvent)
    if filters.get("case_id"):
        # Every event about a case names it as a "referral": the (object_type, object_id) index serves it.
        query = query.where(AuditEvent.object_type == "referral", AuditEvent.object_id == filters["case_id"])
    if filters.get("actor_id") is not None:
        query = query.where(AuditEvent.actor_id == filters["actor_id"])
    if filters.get("action"):
        query = query.where(AuditEvent.action == filters["action"])
    if filters.get("outcome"):
        query = query.where(AuditEvent.outcome == filters["outcome"])
    if filters.get("since"):
        query = query.where(AuditEvent.ts >= filters["since"])
    if filters.get("until"):
        query = query.where(AuditEvent.ts < filters["until"])
    return query


def event_dict(e: AuditEvent) -> dict[str, Any]:
    return {"seq": e.seq, "ts": e.ts.isoformat(), "actor_id": e.actor_id, "actor_role": e.actor_role,
            "action": e.action, "object_type": e.object_type, "object_id": e.object_id, "outcome": e.outcome,
            "reason": e.reason, "source_ip": e.source_ip, "request_id": e.request_id, "fields": json.loads(e.fields),
            "break_glass": e.action.startswith("break_glass")}


def search_audit(session: Session, actor: User, filters: dict[str, Any], *, page: int,
                 per_page: int) -> tuple[list[dict[str, Any]], int]:
    require(actor, Permission.AUDIT_READ)
    query = _audit_query(filters)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEvent.seq.desc()).limit(per_page).offset((page - 1) * per_page)).all()
    record(session, actor, "audit.search", object_type="audit",
           reason=", ".join(f"{k}={v}" for k, v in sorted(filters.items()) if v is not None) or "all")
    return [event_dict(e) for e in rows], total


def export_audit_csv(session: Session, actor: User, filters: dict[str, Any], *, now: dt.datetime | None = None) -> str:
    """The filtered audit as CSV; the export is itself audited (and flagged when outside working hours)."""
    require(actor, Permission.AUDIT_READ)
    now = now or utcnow()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(AUDIT_COLUMNS)
    count = 0
    for e in session.scalars(_audit_query(filters).order_by(AuditEvent.seq)):
        d = event_dict(e)
        writer.writerow([d[c] if c != "fields" else ";".join(d["fields"]) for c in AUDIT_COLUMNS])
        count += 1
    record(session, actor, "audit.export", object_type="audit", reason=f"{count} events", now=now)
    return out.getvalue()


PURPOSES = {"officer": "assignment", "supervisor": "assignment", "service_provider": "service referral",
            "oversight": "break-glass", "focal_point": "submission"}


def _case_or_404(session: Session, actor: User, referral_id: str, action: str) -> Referral:
    """The case ``referral_id`` names; a denied ``action`` event and 404 when there is none."""
    case_id = parse_case_id(referral_id)
    referral = session.get(Referral, case_id) if case_id else None
    if referral is None:
        record(session, actor, action, object_type="referral", object_id=case_id or "malformed-id",
               outcome=DENIED, reason="no such case")
        raise NotFound(N_("No such referral."))
    return referral


def disclosures(session: Session, actor: User, referral_id: str, *, page: int = 1,
                per_page: int = 100) -> tuple[list[dict[str, Any]], int]:
    """Who saw or received which fields of one case, when, and for what purpose: one page, oldest first,
    and how many there are in all (every full read of a case is one, so a busy case has thousands)."""
    require(actor, Permission.AUDIT_READ)
    case_id = _case_or_404(session, actor, referral_id, "referral.disclosures").id
    query = select(AuditEvent).where(AuditEvent.object_type == "referral", AuditEvent.object_id == case_id,
                                     AuditEvent.outcome == "allowed", AuditEvent.fields != "[]")
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEvent.seq).limit(per_page).offset((page - 1) * per_page)).all()
    record(session, actor, "referral.disclosures", object_type="referral", object_id=case_id,
           reason=f"{len(rows)} of {total} shown")
    return [{"seq": e.seq, "ts": e.ts.isoformat(), "actor_id": e.actor_id, "actor_role": e.actor_role,
             "action": e.action, "fields": json.loads(e.fields),
             "purpose": "service referral" if e.action.startswith("service_referral")
             else PURPOSES.get(e.actor_role or "", "system")} for e in rows], total


def match_counts(session: Session, actor: User, referral_id: str) -> dict[str, Any]:
    """How many other cases share this case's survivor phone (within the duplicate window) or its perpetrator,
    found by blind index without decrypting: numbers, never which cases (SPEC §7: matches are named only to
    those entitled to both cases, and shown to oversight as a count)."""
    from referral.referrals.services import related_params

    require(actor, Permission.AUDIT_READ)
    referral = _case_or_404(session, actor, referral_id, "referral.matches")
    params = related_params(referral)
    counts = {name: session.scalar(_match_count(name), {"id": referral.id, **params}) if key in params else 0
              for name, key in (("same_phone", "phone"), ("same_perpetrator", "perpetrator"))}
    record(session, actor, "referral.matches", object_type="referral", object_id=referral.id, reason="counts only")
    return {"id": referral.id, **counts}  # not the reference: what she was told is not oversight's to map


@functools.cache
def _match_count(name: str) -> Any:
    """The number of other cases with the case ``:id``'s blind index: ``:phone`` from ``:since`` to ``:until``
    (the same survivor reported again), or ``:perpetrator`` at any time; as the full read searches them,
    without its limit."""
    from sqlalchemy import bindparam

    column = Referral.survivor_phone_bidx if name == "same_phone" else Referral.perpetrator_bidx
    query = select(func.count()).select_from(Referral).where(
        column == bindparam("phone" if name == "same_phone" else "perpetrator"), Referral.id != bindparam("id"))
    if name == "same_phone":
        query = query.where(Referral.created_at >= bindparam("since"), Referral.created_at <= bindparam("until"))
    return query


def open_break_glass(session: Session, actor: User, case_id_raw: str, justification: str, hours: float, *,
                     now: dt.datetime | None = None) -> BreakGlassGrant:
    """Time-limited access to one case for one oversight user, with a stated justification.

    The event stands out in the audit (``break_glass.open``) and joins the review queue; other
    oversight users are alerted through the queue (and, with the channels issue, a message).
    """
    require(actor, Permission.BREAK_GLASS)
    now = now or utcnow()
    max_hours = current_app.config["BREAK_GLASS_MAX_HOURS"]
    if not 0 < hours <= max_hours:
        raise ValidationFailed(fields={"hours": [Message(N_("Between a few minutes and %(hours)s hours."),
                                                         hours=max_hours)]})
    referral = _case_or_404(session, actor, case_id_raw, "break_glass.open")
    grant = BreakGlassGrant(referral_id=referral.id, user_id=actor.id, granted_at=now,
                            expires_at=now + dt.timedelta(hours=hours))
    session.add(grant)
    session.flush()
    data_key = crypto.case_key(referral)
    if data_key is not None:
        grant.justification_sealed = seal_field(data_key, justification, case_id=referral.id,
                                                table="break_glass_grants", column="justification_sealed",
                                                row_id=str(grant.id))
    record(session, actor, "break_glass.open", object_type="referral", object_id=referral.id,
           reason=f"BREAK-GLASS grant {grant.id} until {grant.expires_at.isoformat()}")
    events.break_glass_opened(session, actor)
    return grant


def active_break_glass(session: Session, user: User, referral_id: str, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    return session.scalar(select(BreakGlassGrant.id).where(
        BreakGlassGrant.referral_id == referral_id, BreakGlassGrant.user_id == user.id,
        BreakGlassGrant.granted_at <= now, BreakGlassGrant.expires_at > now).limit(1)) is not None


def review_queue(session: Session, actor: User) -> list[dict[str, Any]]:
    """Every grant, those awaiting review first. A grant awaiting review shows its justification: a
    review judges the reason given (SPEC §8). It is sealed under the case's key (it may name case
    facts), so each one opened for the queue is a disclosure of that case, audited."""
    require(actor, Permission.BREAK_GLASS)
    rows = session.scalars(select(BreakGlassGrant).order_by(BreakGlassGrant.reviewed_at.is_not(None),
                                                             BreakGlassGrant.granted_at.desc())).all()
    record(session, actor, "break_glass.queue", object_type="audit")
    return [{"id": g.id, "case_id": g.referral_id, "user_id": g.user_id, "granted_at": g.granted_at.isoformat(),
             "expires_at": g.expires_at.isoformat(), "reviewed": g.reviewed_at is not None,
             "review_outcome": g.review_outcome,
             "justification": None if g.reviewed_at is not None else _justification(session, actor, g)}
            for g in rows]


def _justification(session: Session, actor: User, grant: BreakGlassGrant) -> str | None:
    from referral.security.sealed import open_field

    if grant.justification_sealed is None:
        return None
    referral = session.get(Referral, grant.referral_id)
    data_key = crypto.case_key(referral) if referral is not None else None
    if data_key is None:
        return None  # the case was erased, and the reason with it
    text = open_field(data_key, bytes(grant.justification_sealed), case_id=grant.referral_id,
                      table="break_glass_grants", column="justification_sealed", row_id=str(grant.id))
    record(session, actor, "break_glass.justification", object_type="referral", object_id=grant.referral_id,
           reason=f"grant {grant.id}, for review", fields=["break_glass.justification"])
    return text


def review_break_glass(session: Session, actor: User, grant_id: int, outcome: str, *,
                       now: dt.datetime | None = None) -> BreakGlassGrant:
    """Another oversight user (never the one who opened it) reviews a break-glass access."""
    require(actor, Permission.BREAK_GLASS)
    grant = session.get(BreakGlassGrant, grant_id) if 0 < grant_id < 2**31 else None
    if grant is None:
        record(session, actor, "break_glass.review", object_type="break_glass",
               object_id=str(grant_id) if 0 < grant_id < 2**31 else "malformed-id", outcome=DENIED,
               reason="no such grant")
        raise NotFound(N_("No such break-glass grant."))
    if grant.user_id == actor.id:
        raise ValidationFailed(fields={"outcome": [N_("Someone else must review your own break-glass access.")]})
    if grant.reviewed_at is not None:
        record(session, actor, "break_glass.review", object_type="referral", object_id=grant.referral_id,
               outcome=DENIED, reason=f"grant {grant.id} already reviewed")
        raise Conflict(N_("This break-glass access has already been reviewed."))
    grant.reviewed_at, grant.reviewed_by_id, grant.review_outcome = now or utcnow(), actor.id, outcome
    record(session, actor, "break_glass.review", object_type="referral", object_id=grant.referral_id,
           reason=f"grant {grant.id}: {outcome}")
    return grant


# Reads of case content, by whoever: a provider opening many service referrals reads names and phones too.
CASE_READS = ("referral.read", "service_referral.read")


def _hour_of(session: Session, shift: dt.timedelta) -> Any:
    """The UTC clock hour an event fell in once moved back by ``shift``, as the database can group by it."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", AuditEvent.ts) - shift)
    # SQLite keeps UTC times as text
    return func.strftime("%Y-%m-%dT%H:00:00", AuditEvent.ts, f"-{int(shift.total_seconds() // 60)} minutes")


def _window_start(value: Any, shift: dt.timedelta) -> dt.datetime:
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=dt.UTC) + shift


def _busy_hours(session: Session, measure: Any, where: list[Any], threshold: int) -> list[tuple[int, dt.datetime, int]]:
    """(actor, start, count) of every hour-long window in which ``measure`` reached ``threshold``: windows on
    the hour and on the half hour, so a burst across a clock hour's end is not split in two. Overlapping
    windows of one actor are one signal: the larger count is kept (the clock hour on a tie)."""
    found = []
    for shift in (dt.timedelta(0), dt.timedelta(minutes=30)):
        hour = _hour_of(session, shift).label("hour")
        for actor_id, bucket, count in session.execute(
                select(AuditEvent.actor_id, hour, measure).where(*where).group_by(AuditEvent.actor_id, hour)
                .having(measure >= threshold)):
            found.append((actor_id, _window_start(bucket, shift), count))
    kept: list[tuple[int, dt.datetime, int]] = []
    for actor_id, start, count in sorted(found):
        last = kept[-1] if kept else None
        if last is not None and last[0] == actor_id and start - last[1] < dt.timedelta(hours=1):
            if count > last[2] or (count == last[2] and start.minute == 0):  # a tie: the clock hour reads best
                kept[-1] = (actor_id, start, count)
            continue
        kept.append((actor_id, start, count))
    return kept


def anomalies(session: Session, actor: User, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Signals for the oversight dashboard (thresholds are settings): any hour of the last
    ``ANOMALY_LOOKBACK_DAYS`` (7) in which someone read too many cases or was refused too often, newest
    first, so a burst at 02:00 is still there in the morning; exports outside working hours in the last day."""
    require(actor, Permission.AUDIT_READ)
    now = now or utcnow()
    config = current_app.config
    since = now - dt.timedelta(days=config.get("ANOMALY_LOOKBACK_DAYS", 7))
    found: list[dict[str, Any]] = []
    for actor_id, start, count in _busy_hours(
            session, func.count(func.distinct(AuditEvent.object_id)),
            [AuditEvent.action.in_(CASE_READS), AuditEvent.outcome == "allowed", AuditEvent.ts >= since,
             AuditEvent.actor_id.is_not(None)], config["ANOMALY_CASES_PER_HOUR"]):
        found.append({"kind": "many_cases_read", "actor_id": actor_id, "count": count, "ts": start.isoformat()})
    for actor_id, start, count in _busy_hours(
            session, func.count(),
            [AuditEvent.outcome == "denied", AuditEvent.ts >= since, AuditEvent.actor_id.is_not(None)],
            config["ANOMALY_DENIALS_PER_HOUR"]):
        found.append({"kind": "repeated_denials", "actor_id": actor_id, "count": count, "ts": start.isoformat()})
    found.sort(key=lambda item: item["ts"], reverse=True)
    start, end = config["WORKING_HOURS"]
    exports = session.scalars(select(AuditEvent).where(AuditEvent.action == "audit.export",
                                                       AuditEvent.ts >= now - dt.timedelta(days=1))).all()
    for e in exports:
        if not start <= e.ts.hour < end:
            found.append({"kind": "export_outside_hours", "actor_id": e.actor_id, "seq": e.seq, "ts": e.ts.isoformat()})
    record(session, actor, "oversight.anomalies", object_type="audit", reason=f"{len(found)} found")
    return found




def dashboard(session: Session, actor: User, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Figures for the oversight dashboard: de-identified counts and times only."""
    from statistics import median

    from referral.reference.models import Unit
    from referral.referrals.workflow_models import Alert, AlertKind
    from referral.standards.models import StepBreach

    require(actor, Permission.AUDIT_READ)
    now = now or utcnow()
    units = {u.id: u.code for u in session.scalars(select(Unit))}
    by_stage = session.execute(select(Referral.status, func.count()).group_by(Referral.status)).all()
    accept_hours: dict[str, list[float]] = {}
    for unit_id, created, accepted in session.execute(select(
            Referral.unit_id, Referral.created_at, Referral.first_accepted_at).where(
            Referral.first_accepted_at.is_not(None))):
        accept_hours.setdefault(units.get(unit_id, "none"), []).append((accepted - created).total_seconds() / 3600)
    breaches = session.execute(select(Referral.unit_id, StepBreach.due_at).join(
        Referral, Referral.id == StepBreach.referral_id)).all()
    by_unit_month: dict[str, int] = {}
    zone = local_zone()  # months on the service's calendar
    for unit_id, due in breaches:
        key = f"{units.get(unit_id, 'none')} {due.astimezone(zone).strftime('%Y-%m')}"
        by_unit_month[key] = by_unit_month.get(key, 0) + 1
    gaps = session.execute(select(Alert.unit_id, func.count()).where(Alert.kind == AlertKind.coverage_gap)
                           .group_by(Alert.unit_id)).all()
    record(session, actor, "oversight.dashboard", object_type="audit")
    return {
        "open_by_stage": sorted((status.value, n) for status, n in by_stage),
        "median_hours_to_accept": sorted((code, round(median(v), 1)) for code, v in accept_hours.items()),
        "breaches_by_unit_month": sorted(by_unit_month.items()),
        "coverage_gaps": sorted((units.get(unit_id, "none"), n) for unit_id, n in gaps),
        "anomalies": anomalies(session, actor, now=now),
    }
