"""Courses and certifications (SPEC §2, §5)."""
from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from referral.db import Base, code, created_at, intpk, name
from referral.reference.models import enum_column


class CourseRequirement(enum.StrEnum):
    all = "all"        # needed to accept any case (core GBV response)
    child = "child"    # needed to accept a case with a child survivor
    none = "none"      # recorded but not a gate


class Course(Base):
    __tablename__ = "courses"

    id: Mapped[intpk]
    code: Mapped[code]
    name: Mapped[name]
    validity_months: Mapped[int] = mapped_column(Integer)
    required_for: Mapped[CourseRequirement] = mapped_column(
        enum_column(CourseRequirement, "course_requirement"), default=CourseRequirement.none
    )


class Certification(Base):
    __tablename__ = "certifications"
    __table_args__ = (UniqueConstraint("user_id", "course_id", "completed_on", name="certification"),)

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="RESTRICT"))
    completed_on: Mapped[dt.date] = mapped_column(Date)
    expires_on: Mapped[dt.date] = mapped_column(Date)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[created_at]

    course: Mapped[Course] = relationship()

    def is_current(self, today: dt.date) -> bool:
        return self.completed_on <= today < self.expires_on


class Standard(Base):
    """One published version of a handling standard; its steps live in ``body`` (JSON), never edited."""

    __tablename__ = "standards"
    __table_args__ = (UniqueConstraint("code", "version", name="standard_version"),)

    id: Mapped[intpk]
    code: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[name]
    countries: Mapped[str] = mapped_column(String(64), default="")  # comma-separated; "" = the fallback
    effective_from: Mapped[dt.date] = mapped_column(Date)
    body: Mapped[str] = mapped_column(Text)  # canonical JSON of the YAML document
    loaded_at: Mapped[created_at]


class StepBreach(Base):
    """A step found overdue by ``sla tick``; unique per case and step, so ticks never repeat it."""

    __tablename__ = "step_breaches"
    __table_args__ = (UniqueConstraint("referral_id", "step_code", name="step_breach"),)

    id: Mapped[intpk]
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    step_code: Mapped[str] = mapped_column(String(48))
    due_at: Mapped[dt.datetime]
    recorded_at: Mapped[dt.datetime]


class CertificationReminder(Base):
    """The 30-days-before-expiry reminder of one certification was raised (once)."""

    __tablename__ = "certification_reminders"

    certification_id: Mapped[int] = mapped_column(ForeignKey("certifications.id", ondelete="CASCADE"),
                                                  primary_key=True)
    sent_at: Mapped[dt.datetime]


class StepStatus(Base):
    """The judgement of one step of one case, kept current in the transaction that changes the case.

    ``status`` holds until ``breaches_at`` (the due time of an open deadline) passes, then the step is
    breached: time alone never makes a row stale, so the unit summary is a ``GROUP BY`` with ``now`` as a
    parameter (referral/standards/step_statuses.py). The case's unit, officer and submission time are
    copied here so the summary reads one index and nothing else.
    """

    __tablename__ = "step_statuses"
    __table_args__ = (
        Index("ix_step_statuses_unit_submitted", "unit_id", "submitted_at",
              postgresql_include=["step_code", "officer_id", "status", "breaches_at", "breach_month"]),
    )

    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), primary_key=True)
    step_code: Mapped[str] = mapped_column(String(48), primary_key=True)
    standard_id: Mapped[int] = mapped_column(ForeignKey("standards.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[dt.datetime | None]
    breaches_at: Mapped[dt.datetime | None]
    # The month a breach counts in (of due_at, else of submission; UTC) if the step is or may become breached.
    breach_month: Mapped[str | None] = mapped_column(String(7))
    unit_id: Mapped[int | None] = mapped_column(Integer)
    officer_id: Mapped[int | None] = mapped_column(Integer)  # whom it counts against (compliance.counted_against)
    submitted_at: Mapped[dt.datetime]


class CaseTiming(Base):
    """An accepted case's time to first acceptance and from it to the first contact made, in microseconds
    (exact on every database), kept current with the case like ``StepStatus``; the summary's medians."""

    __tablename__ = "case_timings"
    __table_args__ = (
        Index("ix_case_timings_unit_submitted", "unit_id", "submitted_at",
              postgresql_include=["to_accept_us", "to_contact_us"]),
    )

    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), primary_key=True)
    unit_id: Mapped[int | None] = mapped_column(Integer)
    submitted_at: Mapped[dt.datetime]
    to_accept_us: Mapped[int] = mapped_column(BigInteger)
    to_contact_us: Mapped[int | None] = mapped_column(BigInteger)
