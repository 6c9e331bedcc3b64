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
    from referral.standards.compliance import CaseFacts

    offered_at = session.scalar(select(sa_func.min(Offer.offered_at)).where(Offer.referral_id == referral.id))
    actions = session.execute(select(CaseAction.type, CaseAction.created_at).where(
        CaseAction.referral_id == referral.id).order_by(CaseAction.created_at, CaseAction.id)).all()
    return CaseFacts(
        submitted_at=referral.created_at, offered_at=offered_at, accepted_at=referral.accepted_at,
        incident_date=referral.incident_date, closed_at=referral.closed_at, flags=tuple(referral.flag_list),
        gbv_type=referral.gbv_type, relationship=referral.perpetrator_relationship, age_group=referral.age_group,
        urgent=referral.is_urgent, actions=tuple((t.value, when) for t, when in actions))


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
            nested = session.begin_nested()  # a racing tick may insert the same breach: keep one
            try:
                session.add(StepBreach(referral_id=referral.id, step_code=result.code,
                                       due_at=result.due_at or now, recorded_at=now))
                session.flush()
                nested.commit()
            except Exception:  # noqa: BLE001 - the unique constraint: already recorded
                nested.rollback()
                continue
            stats["step_breaches"] += 1
            record(session, None, "sla.step_breach", object_type="referral", object_id=referral.id,
                   reason=f"step {result.code} overdue since {result.due_at.isoformat() if result.due_at else '-'}")
    soon = now.date() + dt.timedelta(days=30)
    reminded = select(CertificationReminder.certification_id)
    for cert in session.scalars(select(Certification).where(
            Certification.expires_on > now.date(), Certification.expires_on <= soon,
            Certification.id.not_in(reminded))):
        session.add(CertificationReminder(certification_id=cert.id, sent_at=now))
        stats["certificate_reminders"] += 1
        record(session, None, "training.reminder", object_type="user", object_id=cert.user_id,
               reason=f"{cert.course.code} expires {cert.expires_on.isoformat()}")
    session.flush()
    return stats
