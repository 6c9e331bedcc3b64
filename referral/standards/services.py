"""Recording training: a certification is valid from completion for the course's validity."""
from __future__ import annotations

import calendar
import datetime as dt

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
