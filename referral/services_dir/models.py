"""Consent records and service referrals (SPEC §4, §6)."""
from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from referral.db import Base, created_at, intpk
from referral.reference.models import Organisation, enum_column
from referral.referrals.models import Referral, new_id


class GivenBy(enum.StrEnum):
    survivor = "survivor"
    caregiver = "caregiver"
    child_assent = "child_assent"
    supervisor_override = "supervisor_override"   # best interest of a child, with a recorded reason


class Consent(Base):
    """One statement about one scope; the latest record of a scope is the one in force."""

    __tablename__ = "consents"

    id: Mapped[intpk]
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(String(48))   # police | services:<type> | sms_contact | statistics
    granted: Mapped[bool] = mapped_column(Boolean)
    given_by: Mapped[GivenBy] = mapped_column(enum_column(GivenBy, "consent_given_by"))
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    recorded_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
    withdrawn_at: Mapped[dt.datetime | None]
    reason_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # an override's reason: case text

    # Also what tells a flush to insert the case before its consents when both are new in one flush.
    referral: Mapped[Referral] = relationship()


class ServiceReferralStatus(enum.StrEnum):
    suggested = "suggested"   # proposed by the system (clinical urgency), not yet sent
    pending = "pending"
    accepted = "accepted"
    declined = "declined"
    completed = "completed"


class ServiceOutcome(enum.StrEnum):
    """GBVIMS referral outcomes."""

    referred = "referred"
    provided = "provided"
    already_received = "already_received"
    declined_by_survivor = "declined_by_survivor"
    service_unavailable = "service_unavailable"
    not_applicable = "not_applicable"


class ServiceReferral(Base):
    __tablename__ = "service_referrals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("organisations.id", ondelete="RESTRICT"), index=True)
    service_type: Mapped[str] = mapped_column(String(32))
    share: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of field paths
    status: Mapped[ServiceReferralStatus] = mapped_column(
        enum_column(ServiceReferralStatus, "service_referral_status"), default=ServiceReferralStatus.pending)
    outcome: Mapped[ServiceOutcome | None] = mapped_column(enum_column(ServiceOutcome, "service_outcome"))
    note_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[created_at]
    responded_at: Mapped[dt.datetime | None]

    provider: Mapped[Organisation] = relationship()
    referral: Mapped[Referral] = relationship()  # and: a new case is inserted before it in the same flush
