"""Recording training: a certification is valid from completion for the course's validity."""
from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from sqlalchemy import select

from referral.accounts.auth import normalise_email
from referral.accounts.models import Role, User
from referral.errors import Conflict, NotFound, ValidationFailed
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
    today = today or dt.date.today()
    user = db.session.scalar(select(User).where(User.email == normalise_email(email)))
    if user is None:
        raise NotFound("No account has this e-mail.")
    if user.role not in POLICE_ROLES:
        raise ValidationFailed("Only officers and supervisors hold certifications.",
                               fields={"email": ["Not a police account."]})
    course = db.session.scalar(select(Course).where(Course.code == course_code))
    if course is None:
        raise NotFound("No course has this code.")
    if completed_on > today:
        raise ValidationFailed("A completion date cannot be in the future.",
                               fields={"completed": ["In the future."]})
    existing = db.session.scalar(select(Certification).where(
        Certification.user_id == user.id, Certification.course_id == course.id,
        Certification.completed_on == completed_on))
    if existing is not None:
        raise Conflict("This completion is already recorded.")
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

    from referral.referrals.workflow_models import CaseAction, Offer

    offered_at = session.scalar(select(sa_func.min(Offer.offered_at)).where(Offer.referral_id == referral.id))
    actions = session.execute(select(CaseAction.type, CaseAction.created_at).where(
        CaseAction.referral_id == referral.id).order_by(CaseAction.created_at, CaseAction.id)).all()
    return _facts_from(referral, offered_at, tuple((t.value, when) for t, when in actions))


def _facts_from(referral: Any, offered_at: Any, actions: tuple[Any, ...]) -> Any:
    from referral.standards.compliance import CaseFacts

    return CaseFacts(
        submitted_at=referral.created_at, offered_at=offered_at, accepted_at=referral.first_accepted_at,
        incident_date=referral.incident_date, closed_at=referral.closed_at,
        withdrawn=referral.status.value == "withdrawn", flags=tuple(referral.flag_list), gbv_type=referral.gbv_type,
        relationship=referral.perpetrator_relationship, age_group=referral.age_group, urgent=referral.is_urgent,
        actions=actions)


def bulk_facts(session: Any, query: Any) -> list[tuple[Any, Any, Any]]:
    """(case, facts, parsed standard) for every case of ``query`` in three queries, not three per case.

    Only the de-identified columns are loaded: a summary never touches sealed data.
    """
    import json as _json
    from collections import defaultdict

    from sqlalchemy import func as sa_func
    from sqlalchemy.orm import load_only

    from referral.referrals.models import Referral
    from referral.referrals.workflow_models import CaseAction, Offer
    from referral.standards.models import Standard

    cases = session.scalars(query.options(load_only(
        Referral.id, Referral.created_at, Referral.first_accepted_at, Referral.incident_date, Referral.closed_at,
        Referral.status, Referral.flags, Referral.gbv_type, Referral.perpetrator_relationship, Referral.age_group,
        Referral.standard_id, Referral.assigned_officer_id))).all()
    ids = query.with_only_columns(Referral.id).subquery()
    offered = dict(session.execute(select(Offer.referral_id, sa_func.min(Offer.offered_at))
                                   .where(Offer.referral_id.in_(select(ids.c.id))).group_by(Offer.referral_id)).all())
    actions: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for referral_id, kind, when in session.execute(
            select(CaseAction.referral_id, CaseAction.type, CaseAction.created_at)
            .where(CaseAction.referral_id.in_(select(ids.c.id))).order_by(CaseAction.created_at, CaseAction.id)):
        actions[referral_id].append((kind.value, when))
    bodies = {s.id: _json.loads(s.body) for s in session.scalars(select(Standard))}
    return [(case, _facts_from(case, offered.get(case.id), tuple(actions.get(case.id, ()))),
             bodies.get(case.standard_id)) for case in cases]


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
        raise NotFound("No such referral.")
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


def tick_steps(session: Any, now: dt.datetime) -> dict[str, int]:
    """Record newly overdue steps of open cases (once each) and raise certificate reminders."""
    from referral.audit.service import record
    from referral.referrals.models import Referral, Status
    from referral.standards.compliance import BREACHED
    from referral.standards.models import CertificationReminder, StepBreach

    stats = {"step_breaches": 0, "certificate_reminders": 0}
    open_states = (Status.offered, Status.escalated, Status.accepted, Status.in_progress, Status.closed)
    cases = session.scalars(select(Referral).where(Referral.status.in_(open_states),
                                                   Referral.standard_id.is_not(None))).all()
    for referral in cases:
        known = set(session.scalars(select(StepBreach.step_code).where(StepBreach.referral_id == referral.id)))
        for result in compliance_of(session, referral, now):
            if result.status != BREACHED or result.code in known:
                continue
            if not _insert_once(session, StepBreach(referral_id=referral.id, step_code=result.code,
                                                    due_at=result.due_at or now, recorded_at=now)):
                continue
            stats["step_breaches"] += 1
            events.breached(session, referral)
            record(session, None, "sla.step_breach", object_type="referral", object_id=referral.id,
                   reason=f"step {result.code} overdue since {result.due_at.isoformat() if result.due_at else '-'}")
    soon = now.date() + dt.timedelta(days=30)
    reminded = select(CertificationReminder.certification_id)
    for cert in session.scalars(select(Certification).where(
            Certification.expires_on > now.date(), Certification.expires_on <= soon,
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


# -- courses (admin) ----------------------------------------------------------------

def list_courses(session: Any, actor: User, *, page: int, per_page: int) -> tuple[list[Course], int]:
    from sqlalchemy import func as sa_func

    from referral.audit.service import record

    require(actor, Permission.TRAINING_CERTIFICATION_RECORD)
    total = session.scalar(select(sa_func.count()).select_from(Course)) or 0
    items = session.scalars(select(Course).order_by(Course.code).limit(per_page).offset((page - 1) * per_page)).all()
    record(session, actor, "course.list", object_type="course")
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

def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def compliance_summary(session: Any, actor: User, *, unit_code: str | None, since: dt.date | None,
                       until: dt.date | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """Per unit and officer: share of steps on time, median hours to accept and to first contact,
    breaches by step and month, coverage gaps. De-identified: counts and times only.

    Oversight sees every unit; a supervisor only their own.
    """
    from collections import Counter, defaultdict

    from referral.audit.service import record
    from referral.errors import ValidationFailed
    from referral.reference.models import Unit
    from referral.referrals.models import Referral
    from referral.referrals.workflow_models import Alert, AlertKind
    from referral.standards.compliance import BREACHED, MET, MET_LATE

    require(actor, Permission.COMPLIANCE_SUMMARY)
    now = now or dt.datetime.now(dt.UTC)
    query = select(Referral)
    unit = None
    if unit_code:
        unit = session.scalar(select(Unit).where(Unit.code == unit_code))
        if unit is None:
            raise ValidationFailed(fields={"unit": ["No unit has this code."]})
    if actor.role is Role.supervisor:
        if unit is not None and unit.id != actor.unit_id:
            raise ValidationFailed(fields={"unit": ["Supervisors see their own unit only."]})
        unit = actor.unit
    if unit is not None:
        query = query.where(Referral.unit_id == unit.id)
    if since:
        query = query.where(Referral.created_at >= dt.datetime.combine(since, dt.time.min, tzinfo=dt.UTC))
    if until:
        query = query.where(Referral.created_at < dt.datetime.combine(until + dt.timedelta(days=1), dt.time.min,
                                                                      tzinfo=dt.UTC))
    step_counts: dict[str, Counter[str]] = defaultdict(Counter)
    by_officer: dict[int, Counter[str]] = defaultdict(Counter)
    breaches_by_month: Counter[tuple[str, str]] = Counter()
    to_accept: list[float] = []
    to_contact: list[float] = []
    cases = 0
    from referral.standards.compliance import evaluate

    for referral, facts, standard in bulk_facts(session, query):
        cases += 1
        if facts.accepted_at:
            to_accept.append((facts.accepted_at - facts.submitted_at).total_seconds() / 3600)
            contact = [when for kind, when in facts.actions if kind == "contact_made"]
            if contact:
                to_contact.append((contact[0] - facts.accepted_at).total_seconds() / 3600)
        for result in (evaluate(standard, facts, now) if standard is not None else []):
            step_counts[result.code][result.status] += 1
            if referral.assigned_officer_id:
                by_officer[referral.assigned_officer_id][result.status] += 1
            if result.status == BREACHED:
                month = (result.due_at or referral.created_at).strftime("%Y-%m")
                breaches_by_month[(result.code, month)] += 1

    def on_time(counts: Counter[str]) -> float | None:
        judged = counts[MET] + counts[MET_LATE] + counts[BREACHED]
        return round(counts[MET] / judged, 3) if judged else None

    gaps = select(Alert).where(Alert.kind == AlertKind.coverage_gap)
    if unit is not None:
        gaps = gaps.where(Alert.unit_id == unit.id)
    record(session, actor, "compliance.summary", object_type="unit", object_id=unit.code if unit else "all",
           reason=f"{cases} cases")
    return {
        "unit": unit.code if unit else None, "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None, "cases": cases,
        "steps": {code: {"on_time": on_time(c), **dict(c)} for code, c in sorted(step_counts.items())},
        "officers": [{"officer_id": oid, "on_time": on_time(c), **dict(c)} for oid, c in sorted(by_officer.items())],
        "median_hours_to_accept": _median(to_accept),
        "median_hours_to_first_contact": _median(to_contact),
        "breaches_by_step_and_month": [{"step": s, "month": m, "count": n}
                                       for (s, m), n in sorted(breaches_by_month.items())],
        "coverage_gaps": len(session.scalars(gaps).all()),
    }
