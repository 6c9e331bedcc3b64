"""Recording training: a certification is valid from completion for the course's validity."""
from __future__ import annotations

import calendar
import datetime as dt
import functools
import json
from typing import Any

from sqlalchemy import select

from referral.accounts.auth import normalise_email
from referral.accounts.models import Role, User
from referral.db import latest_today, local_midnight, local_today, utcnow
from referral.errors import N_, Conflict, NotFound, ValidationFailed
from referral.extensions import db
from referral.security.permissions import Permission, require
from referral.standards.models import Certification, Course
from referral.notify import events

POLICE_ROLES = (Role.officer, Role.supervisor)


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day ``months`` later, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def record_certification(actor: User | None, email: str, course_code: str, completed_on: dt.date,
                         *, today: dt.date | None = None) -> Certification:
    """Record that a police officer completed a course; ``actor`` None is the operator's CLI."""
    if actor is not None:
        require(actor, Permission.TRAINING_CERTIFICATION_RECORD)
    today = today or latest_today(utcnow())  # a date a person gives: no later than it is anywhere
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise NotFound(N_("No account has this e-mail."))
    if user.role not in POLICE_ROLES:
        raise ValidationFailed(N_("Only officers and supervisors hold certifications."),
                               fields={"email": [N_("Not a police account.")]})
    course = db.session.scalar(select(Course).where(Course.code == course_code))
    if course is None:
        raise NotFound(N_("No course has this code."))
    if completed_on > today:
        raise ValidationFailed(N_("A completion date cannot be in the future."),
                               fields={"completed": [N_("In the future.")]})
    existing = db.session.scalar(select(Certification).where(
        Certification.user_id == user.id, Certification.course_id == course.id,
        Certification.completed_on == completed_on))
    if existing is not None:
        raise Conflict(N_("This completion is already recorded."))
    cert = Certification(user_id=user.id, course=course, completed_on=completed_on,
                         expires_on=add_months(completed_on, course.validity_months),
                         recorded_by_id=actor.id if actor else None)
    db.session.add(cert)
    db.session.flush()
    from referral.audit.service import record

    record(db.session, actor, "training.certification.record", object_type="user", object_id=user.id,
           reason=f"course {course.code} completed {completed_on.isoformat()}")
    return cert


# -- compliance -------------------------------------------------------------------

def case_facts(session: Any, referral: Any) -> Any:
    """The facts a standard judges, read from the case, its offers and its actions."""
    from sqlalchemy import func as sa_func

    from referral.referrals.workflow_models import Offer

    offered_at = session.scalar(select(sa_func.min(Offer.offered_at)).where(Offer.referral_id == referral.id))
    actions, services, holds = _split(session.execute(_facts_statements()[1], {"ids": [referral.id]}))  # autoflushes
    return _facts_from(referral, offered_at, tuple(actions[referral.id]), tuple(services[referral.id]),
                       tuple(holds[referral.id]))


SENT_PREFIX = "service_referral:"  # a fact kind: a service referral of that type sent to a provider
HELD, RELEASED = "@held", "@released"  # an officer's acceptance, and its end (no action type starts with @)


def _split(rows: Any) -> tuple[dict[str, list[tuple[str, Any]]], dict[str, list[tuple[str, Any]]],
                               dict[str, list[tuple[int, Any, Any]]]]:
    """The rows of the facts' actions statement, per case: officers' actions, service referrals sent, and
    who held the case when, as (officer, from, until or None). A hold ends when its officer is released
    (recused, reassigned away, the police lost the case) or, for rows from before releases were kept, when
    the next officer accepts."""
    from collections import defaultdict

    actions: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    services: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    holds: dict[str, list[tuple[int, Any, Any]]] = defaultdict(list)
    holding: dict[str, tuple[int, Any]] = {}
    for referral_id, kind, when, _source, n in rows:  # in time order; a release before a hold at one instant
        if kind == HELD or kind == RELEASED:
            n = int(n)  # the officer's id, as text beside the actions' ids
            current = holding.get(referral_id)
            if current is not None and (kind == HELD or current[0] == n):
                holds[referral_id].append((current[0], current[1], when))
                del holding[referral_id]
            if kind == HELD:
                holding[referral_id] = (n, when)
        else:
            (services if kind.startswith(SENT_PREFIX) else actions)[referral_id].append((kind, when))
    for referral_id, (officer, start) in holding.items():
        holds[referral_id].append((officer, start, None))
    return actions, services, holds


def _facts_from(case: Any, offered_at: Any, actions: tuple[Any, ...], services: tuple[Any, ...] = (),
                holds: tuple[Any, ...] = ()) -> Any:
    """``case`` is a Referral, or a row with its columns (bulk_facts)."""
    from referral.referrals.models import split_flags, urgent
    from referral.standards.compliance import CaseFacts

    flags = tuple(split_flags(case.flags))
    if not holds and case.assigned_officer_id and case.first_accepted_at:
        # No acceptance on record but an assigned officer (rows loaded past the application): theirs since
        # the first acceptance, the best the row tells.
        holds = ((case.assigned_officer_id, case.first_accepted_at, None),)
    return CaseFacts(
        submitted_at=case.created_at, offered_at=offered_at, accepted_at=case.first_accepted_at,
        # A services-only case is no police work from when the police lost it (or from the start): its
        # clocks stop then, as for a withdrawal, so it shows no breach nobody could have prevented.
        incident_date=case.incident_date, withdrawn=case.status.value in ("withdrawn", "services_only"),
        closed_at=case.closed_at or (case.created_at if case.status.value == "services_only" else None),
        flags=flags, gbv_type=case.gbv_type, relationship=case.perpetrator_relationship, age_group=case.age_group,
        urgent=urgent(flags), actions=actions, services=services, holds=holds)


def bulk_facts(session: Any, ids: list[str], *, without_actions: frozenset[str] = frozenset()) \
        -> list[tuple[Any, Any, Any]]:
    """(case row, facts, parsed standard) for the cases ``ids``, in at most three queries, not three per case.

    The row holds the de-identified columns a standard judges, and the case's unit and officer: judging
    never touches sealed data. Every write that changes a case comes through here (step statuses), so the
    statements are built once and run on the connection, past the ORM. ``without_actions``: cases the
    caller knows have no actions (created in this transaction, none recorded since), not asked for.
    Standards already in the session (the submission just chose one) are not read again: a loaded
    version never changes.
    """
    from referral.standards.loader import STANDARD_BODIES

    if not ids:
        return []
    cases_sql, actions_sql, standards_sql = _facts_statements()
    connection = session.connection()
    cases = connection.execute(cases_sql, {"ids": ids}).all()
    asked = [i for i in ids if i not in without_actions]
    actions, services, holds = _split(connection.execute(actions_sql, {"ids": asked}) if asked else ())
    known = session.info.get(STANDARD_BODIES, {})
    bodies: dict[int, Any] = {}
    wanted = []
    for sid in {case.standard_id for case in cases} - {None}:
        if sid in known:
            bodies[sid] = parsed_standard(known[sid])
        else:
            wanted.append(sid)
    if wanted:
        bodies.update({sid: parsed_standard(body) for sid, body in connection.execute(standards_sql, {"ids": wanted})})
    return [(case, _facts_from(case, case.offered_at, tuple(actions.get(case.id, ())), tuple(services.get(case.id, ())),
                               tuple(holds.get(case.id, ()))),
             bodies.get(case.standard_id))
            for case in cases]


@functools.cache
def _facts_statements() -> tuple[Any, Any, Any]:
    from sqlalchemy import bindparam
    from sqlalchemy import func as sa_func

    from sqlalchemy import Integer, String, cast, literal, null, or_, type_coerce, union_all

    from referral.referrals.models import Referral
    from referral.referrals.workflow_models import CaseAction, Offer, OfferStatus
    from referral.services_dir.models import ServiceReferral, ServiceReferralStatus
    from referral.standards.models import Standard

    cases, offers, actions = Referral.__table__.c, Offer.__table__.c, CaseAction.__table__.c
    sent = ServiceReferral.__table__.c
    first_offer = select(sa_func.min(offers.offered_at)).where(offers.referral_id == cases.id).scalar_subquery()
    # Officers' actions and the service referrals sent (not the system's suggestions) in one statement:
    # (case, kind, when, source, id), actions first among equal times, each in its own order.
    facts = union_all(
        select(actions.referral_id, type_coerce(actions.type, String).label("kind"), actions.created_at.label("at"),
               literal(0).label("source"), actions.id.label("n"))
        .where(actions.referral_id.in_(bindparam("ids", expanding=True))),
        select(sent.referral_id, (literal(SENT_PREFIX) + sent.service_type).label("kind"), sent.created_at,
               literal(1), type_coerce(null(), Integer))
        .where(sent.referral_id.in_(bindparam("ids", expanding=True)),
               sent.status != ServiceReferralStatus.suggested.value),
        # Whom steps count against: each acceptance (an offer accepted, or one released since) and its end.
        select(offers.referral_id, literal(HELD), offers.responded_at, literal(3), cast(offers.officer_id, String))
        .where(offers.referral_id.in_(bindparam("ids", expanding=True)), offers.responded_at.is_not(None),
               or_(offers.status == OfferStatus.accepted.value, offers.released_at.is_not(None)),
               or_(offers.released_at.is_(None), offers.released_at > offers.responded_at)),
        select(offers.referral_id, literal(RELEASED), offers.released_at, literal(2), cast(offers.officer_id, String))
        .where(offers.referral_id.in_(bindparam("ids", expanding=True)), offers.released_at > offers.responded_at),
    ).subquery()
    return (
        select(cases.id, cases.created_at, cases.first_accepted_at, cases.incident_date, cases.closed_at,
               cases.status, cases.flags, cases.gbv_type, cases.perpetrator_relationship, cases.age_group,
               cases.standard_id, cases.assigned_officer_id, cases.unit_id, first_offer.label("offered_at"))
        .where(cases.id.in_(bindparam("ids", expanding=True))),
        select(facts).order_by(facts.c.at, facts.c.source, facts.c.n),
        select(Standard.__table__.c.id, Standard.__table__.c.body)
        .where(Standard.__table__.c.id.in_(bindparam("ids", expanding=True))),
    )


@functools.lru_cache(maxsize=64)
def parsed_standard(body: str) -> Any:
    """A standard's body parsed once per process (a loaded version never changes; treat it as read-only)."""
    return json.loads(body)


def compliance_of(session: Any, referral: Any, now: dt.datetime) -> list[Any]:
    from referral.standards.compliance import evaluate
    from referral.standards.models import Standard

    standard = session.get(Standard, referral.standard_id) if referral.standard_id else None
    if standard is None:
        return []
    return evaluate(standard.body, case_facts(session, referral), now)


def read_compliance(session: Any, actor: User, referral_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Step-by-step judgement of one case. No case content: oversight may read it too."""
    from referral.audit.service import DENIED, record
    from referral.referrals.models import Referral, parse_case_id
    from referral.security.permissions import CaseView, case_view
    from referral.standards.models import Standard

    now = now or dt.datetime.now(dt.UTC)
    case_id = parse_case_id(referral_id)
    referral = session.get(Referral, case_id) if case_id else None
    allowed = referral is not None and (actor.role is Role.oversight or case_view(actor, referral) is CaseView.CONTENT)
    if not allowed:
        record(session, actor, "referral.compliance", object_type="referral", object_id=case_id or "malformed-id",
               outcome=DENIED, reason="not visible to this user")
        raise NotFound(N_("No such referral."))
    standard = session.get(Standard, referral.standard_id) if referral.standard_id else None
    steps = compliance_of(session, referral, now)
    record(session, actor, "referral.compliance", object_type="referral", object_id=referral.id,
           fields=["compliance"])
    return {"id": referral.id, "reference": referral.reference,
            "standard": {"code": standard.code, "version": standard.version} if standard else None,
            "steps": [s.as_dict() for s in steps]}


def _insert_once(session: Any, row: Any) -> bool:
    """Insert ``row`` unless a racing tick already did (its unique key says so); True if inserted."""
    from sqlalchemy.exc import IntegrityError

    nested = session.begin_nested()
    try:
        session.add(row)
        session.flush()
        nested.commit()
        return True
    except IntegrityError:
        nested.rollback()
        return False


STEP_BREACH_BATCH = 500


def record_step_breaches(session: Any, now: dt.datetime, *, limit: int) -> tuple[int, int]:
    """Record up to ``limit`` newly overdue steps of open cases (once each): the supervisor is told and each
    is audited. Returns (steps looked at, breaches recorded); fewer looked at than ``limit`` means none is
    left. The caller commits between calls (``sla tick`` does), so a first tick over a long backlog holds
    the audit chain's head, which every request appends to, for one batch at a time, not for all of it."""
    from referral.audit.service import record
    from referral.referrals.models import Referral, Status
    from referral.standards import step_statuses
    from referral.standards.models import StepBreach

    open_states = (Status.offered, Status.escalated, Status.accepted, Status.in_progress, Status.closed)
    # Steps breached at ``now`` and not yet recorded, read from the stored step statuses in one query
    # (judging every open case in Python cost three queries a case: minutes a tick at 100 k cases).
    overdue = step_statuses.overdue_unrecorded(session, now, open_states, limit=limit)
    ids = list(dict.fromkeys(row.referral_id for row in overdue))
    cases = {r.id: r for r in session.scalars(select(Referral).where(Referral.id.in_(ids)))} if ids else {}
    recorded = 0
    for row in overdue:
        referral = cases[row.referral_id]
        if not _insert_once(session, StepBreach(referral_id=referral.id, step_code=row.step_code,
                                                due_at=row.due_at or now, recorded_at=now)):
            continue
        recorded += 1
        events.breached(session, referral)
        record(session, None, "sla.step_breach", object_type="referral", object_id=referral.id,
               reason=f"step {row.step_code} overdue since {row.due_at.isoformat() if row.due_at else '-'}")
    return len(overdue), recorded


def tick_steps(session: Any, now: dt.datetime, *, between_batches: Any = None) -> dict[str, int]:
    """Record newly overdue steps of open cases (once each, ``STEP_BREACH_BATCH`` at a time, calling
    ``between_batches()`` after each: ``sla tick`` commits there) and raise certificate and protection-order
    reminders."""
    from referral.audit.service import record
    from referral.standards.models import CertificationReminder

    stats = {"step_breaches": 0, "certificate_reminders": 0}
    batch = STEP_BREACH_BATCH
    while True:
        looked_at, recorded = record_step_breaches(session, now, limit=batch)
        stats["step_breaches"] += recorded
        if between_batches is not None:
            between_batches()
        if looked_at < batch or recorded == 0:  # none left, or none that would go in: the next tick
            break
    stats["protection_order_reminders"] = _remind_protection_orders(session, now)
    today = local_today(now)
    soon = today + dt.timedelta(days=30)
    reminded = select(CertificationReminder.certification_id)
    for cert in session.scalars(select(Certification).where(
            Certification.expires_on > today, Certification.expires_on <= soon,
            Certification.id.not_in(reminded))):
        if not _insert_once(session, CertificationReminder(certification_id=cert.id, sent_at=now)):
            continue
        stats["certificate_reminders"] += 1
        holder = session.get(User, cert.user_id)
        if holder is not None:
            events.certificate_expiring(session, holder, cert.expires_on)
        record(session, None, "training.reminder", object_type="user", object_id=cert.user_id,
               reason=f"{cert.course.code} expires {cert.expires_on.isoformat()}")
    session.flush()
    return stats


def _remind_protection_orders(session: Any, now: dt.datetime) -> int:
    """Tell the case's officer (SPEC §2: expiry reminders) of each order expiring within the setting's days,
    once per expiry: an extension moves the expiry and earns a new reminder. A case the police may no
    longer see (withdrawn, services only) gets none. Each order is claimed by one conditional UPDATE, so
    two ticks at once remind once."""
    from flask import current_app
    from sqlalchemy import or_, update

    from referral.audit.service import record
    from referral.referrals.models import Referral, Status
    from referral.referrals.workflow_models import ProtectionOrder

    days = current_app.config.get("PROTECTION_ORDER_REMINDER_DAYS", 3)
    today = local_today(now)
    not_reminded = or_(ProtectionOrder.reminded_expiry.is_(None),
                       ProtectionOrder.reminded_expiry != ProtectionOrder.expires_on)
    due = session.execute(
        select(ProtectionOrder.id, ProtectionOrder.expires_on, ProtectionOrder.referral_id)
        .join(Referral, Referral.id == ProtectionOrder.referral_id)
        .where(ProtectionOrder.expires_on >= today, ProtectionOrder.expires_on <= today + dt.timedelta(days=days),
               not_reminded, Referral.status.not_in((Status.withdrawn, Status.services_only)),
               Referral.erased_at.is_(None))
        .order_by(ProtectionOrder.expires_on, ProtectionOrder.id)).all()
    sent = 0
    for order_id, expires_on, referral_id in due:
        claimed = session.execute(update(ProtectionOrder).where(ProtectionOrder.id == order_id,
                                                                ProtectionOrder.expires_on == expires_on,
                                                                not_reminded)
                                  .values(reminded_expiry=expires_on)).rowcount
        if claimed != 1:
            continue
        referral = session.get(Referral, referral_id)
        events.protection_order_expiring(session, referral, expires_on)
        record(session, None, "protection_order.reminder", object_type="referral", object_id=referral_id,
               reason=f"order {order_id} expires {expires_on.isoformat()}")
        sent += 1
    return sent


# -- courses (admin) ----------------------------------------------------------------

def list_courses(session: Any, actor: User, *, page: int, per_page: int) -> tuple[list[Course], int]:
    from sqlalchemy import func as sa_func

    from referral.audit.service import record

    require(actor, Permission.TRAINING_CERTIFICATION_RECORD)
    total = session.scalar(select(sa_func.count()).select_from(Course)) or 0
    items = session.scalars(select(Course).order_by(Course.code).limit(per_page).offset((page - 1) * per_page)).all()
    record(session, actor, "course.list", object_type="course")
    return list(items), total


def list_standards(session: Any, actor: User, *, page: int, per_page: int) -> tuple[list[Any], int]:
    """Every loaded version, by code then newest first. Loaded with `standards load` or `reference load`:
    a version never changes once loaded, so there is nothing here to edit."""
    from sqlalchemy import func as sa_func

    from referral.audit.service import record
    from referral.standards.models import Standard

    require(actor, Permission.ADMIN_REFERENCE_MANAGE)
    total = session.scalar(select(sa_func.count()).select_from(Standard)) or 0
    items = session.scalars(select(Standard).order_by(Standard.code, Standard.version.desc())
                            .limit(per_page).offset((page - 1) * per_page)).all()
    record(session, actor, "standard.list", object_type="standard")
    return list(items), total


def save_course(session: Any, actor: User, data: dict[str, Any]) -> tuple[Course, bool]:
    """Create a course, or update its name, validity or requirement (keyed by code)."""
    from flask import current_app

    from referral.audit.service import record
    from referral.standards.models import CourseRequirement

    require(actor, Permission.TRAINING_CERTIFICATION_RECORD)
    values = {"name": data["name"], "required_for": CourseRequirement(data["required_for"]),
              "validity_months": data["validity_months"] or current_app.config["CERTIFICATE_VALIDITY_MONTHS"]}
    course = session.scalar(select(Course).where(Course.code == data["code"]))
    created = course is None
    if created:
        course = Course(code=data["code"], **values)
        session.add(course)
    else:
        for key, value in values.items():
            setattr(course, key, value)
    session.flush()
    record(session, actor, "course.create" if created else "course.update", object_type="course",
           object_id=course.code)
    return course, created


# -- aggregates ---------------------------------------------------------------------

def compliance_summary(session: Any, actor: User, *, unit_code: str | None, since: dt.date | None,
                       until: dt.date | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Per unit and officer: share of steps on time, median hours to accept and to first contact,
    breaches by step and month, coverage gaps. De-identified: counts and times only.

    Oversight sees every unit; a supervisor only their own. Counted in the database from the stored
    step statuses (``step_statuses``), which say the same as judging every case at ``now``.
    """
    from collections import Counter, defaultdict

    from sqlalchemy import func as sa_func

    from referral.audit.service import record
    from referral.errors import ValidationFailed
    from referral.reference.models import Unit
    from referral.referrals.models import Referral
    from referral.referrals.workflow_models import Alert, AlertKind
    from referral.standards.compliance import BREACHED, MET, MET_LATE
    from referral.standards import step_statuses

    require(actor, Permission.COMPLIANCE_SUMMARY)
    now = now or dt.datetime.now(dt.UTC)
    unit = None
    if unit_code:
        unit = session.scalar(select(Unit).where(Unit.code == unit_code))
        if unit is None:
            raise ValidationFailed(fields={"unit": [N_("No unit has this code.")]})
    if actor.role is Role.supervisor:
        if unit is not None and unit.id != actor.unit_id:
            raise ValidationFailed(fields={"unit": [N_("Supervisors see their own unit only.")]})
        unit = actor.unit
    # Days on the service's calendar.
    start = local_midnight(since) if since else None
    end = local_midnight(until + dt.timedelta(days=1)) if until else None
    within = {"unit_id": unit.id if unit is not None else None, "start": start, "end": end}
    step_statuses.sync(session)  # this transaction's own changes count too
    step_counts: dict[str, Counter[str]] = defaultdict(Counter)
    by_officer: dict[int, Counter[str]] = defaultdict(Counter)
    breaches_by_month: Counter[tuple[str, str]] = Counter()
    for (code, officer_id, status, month), count in step_statuses.counts(session, now, **within).items():
        step_counts[code][status] += count
        if officer_id:
            by_officer[officer_id][status] += count
        if status == BREACHED:
            breaches_by_month[(code, month)] += count
    cases = select(sa_func.count()).select_from(Referral)
    if unit is not None:
        cases = cases.where(Referral.unit_id == unit.id)
    if start is not None:
        cases = cases.where(Referral.created_at >= start)
    if end is not None:
        cases = cases.where(Referral.created_at < end)
    case_count = session.scalar(cases) or 0
    to_accept, to_contact = step_statuses.median_hours(session, **within)

    def on_time(counts: Counter[str]) -> float | None:
        judged = counts[MET] + counts[MET_LATE] + counts[BREACHED]
        return round(counts[MET] / judged, 3) if judged else None

    gaps = select(sa_func.count()).select_from(Alert).where(Alert.kind == AlertKind.coverage_gap)
    if unit is not None:
        gaps = gaps.where(Alert.unit_id == unit.id)
    if start is not None:  # the period's gaps, as for every other figure here
        gaps = gaps.where(Alert.created_at >= start)
    if end is not None:
        gaps = gaps.where(Alert.created_at < end)
    record(session, actor, "compliance.summary", object_type="unit", object_id=unit.code if unit else "all",
           reason=f"{case_count} cases")
    return {
        "unit": unit.code if unit else None, "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None, "cases": case_count,
        "steps": {code: {"on_time": on_time(c), **dict(c)} for code, c in sorted(step_counts.items())},
        "officers": [{"officer_id": oid, "on_time": on_time(c), **dict(c)} for oid, c in sorted(by_officer.items())],
        "median_hours_to_accept": to_accept,
        "median_hours_to_first_contact": to_contact,
        "breaches_by_step_and_month": [{"step": s, "month": m, "count": n}
                                       for (s, m), n in sorted(breaches_by_month.items())],
        "coverage_gaps": session.scalar(gaps) or 0,
    }
