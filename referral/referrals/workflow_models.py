"""Offers, case actions, protection orders and alerts (SPEC §2–§3)."""
from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Date, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from referral.accounts.models import User
from referral.db import Base, created_at, intpk
from referral.reference.models import enum_column
from referral.referrals.models import Referral, new_id


class OfferStatus(enum.StrEnum):
    open = "open"
    accepted = "accepted"
    declined = "declined"
    expired = "expired"        # the deadline passed (a breach)
    cancelled = "cancelled"    # another officer won, or the case was withdrawn or reassigned


class Offer(Base):
    """A case offered to one officer until a deadline; pool units get one offer per officer."""

    __tablename__ = "offers"
    # An officer's open offers (the queue) without reading every offer they ever had.
    __table_args__ = (Index("ix_offers_officer_status", "officer_id", "status"),)

    id: Mapped[intpk]
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    officer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    status: Mapped[OfferStatus] = mapped_column(enum_column(OfferStatus, "offer_status"), default=OfferStatus.open)
    offered_at: Mapped[dt.datetime]
    deadline: Mapped[dt.datetime] = mapped_column(index=True)
    responded_at: Mapped[dt.datetime | None]
    reason: Mapped[str | None] = mapped_column(String(32))  # a decline/recusal reason code
    # An accepted offer's officer stopped holding the case (recused, reassigned away, the police lost it):
    # with ``responded_at``, whom the case's steps count against when (standards.compliance.counted_against).
    released_at: Mapped[dt.datetime | None]

    referral: Mapped[Referral] = relationship()
    officer: Mapped[User] = relationship()


class ActionType(enum.StrEnum):
    contact_attempt = "contact_attempt"
    contact_made = "contact_made"
    risk_assessment = "risk_assessment"
    safety_plan = "safety_plan"
    statement_taken = "statement_taken"
    protection_order_issued = "protection_order_issued"
    protection_order_extended = "protection_order_extended"
    forensic_exam_referral = "forensic_exam_referral"
    service_referral = "service_referral"
    rights_informed = "rights_informed"
    follow_up = "follow_up"
    note = "note"
    closure = "closure"


class CaseAction(Base):
    """A timeline entry by an officer; its note is sealed under the case key."""

    __tablename__ = "case_actions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    type: Mapped[ActionType] = mapped_column(enum_column(ActionType, "action_type"))
    created_at: Mapped[created_at]
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)

    actor: Mapped[User] = relationship()


class ProtectionOrder(Base):
    __tablename__ = "protection_orders"

    id: Mapped[intpk]
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    issued_on: Mapped[dt.date] = mapped_column(Date)
    expires_on: Mapped[dt.date] = mapped_column(Date, index=True)
    extensions: Mapped[int] = mapped_column(Integer, default=0)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[created_at]
    # The expiry the officer was last reminded of: an extension moves expires_on, and earns a new reminder.
    reminded_expiry: Mapped[dt.date | None] = mapped_column(Date)


class AlertKind(enum.StrEnum):
    coverage_gap = "coverage_gap"          # no eligible officer for a case
    acceptance_missed = "acceptance_missed"
    police_suspect = "police_suspect"      # the suspect is a police officer


class Alert(Base):
    """Something oversight or a supervisor must look at. Never holds case content."""

    __tablename__ = "alerts"

    id: Mapped[intpk]
    kind: Mapped[AlertKind] = mapped_column(enum_column(AlertKind, "alert_kind"), index=True)
    referral_id: Mapped[str | None] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[created_at]
    resolved_at: Mapped[dt.datetime | None]

    referral: Mapped[Referral | None] = relationship()  # and: a new case is inserted before it in the same flush
