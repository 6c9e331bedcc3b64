"""The referral (case) and its notes. Sensitive fields exist only sealed (SPEC §2, §7)."""
from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from referral.accounts.models import User
from referral.db import Base, created_at
from referral.reference.models import Area, Unit, enum_column


class Status(enum.StrEnum):
    submitted = "submitted"
    offered = "offered"
    accepted = "accepted"
    in_progress = "in_progress"
    closed = "closed"
    declined = "declined"
    escalated = "escalated"
    withdrawn = "withdrawn"
    services_only = "services_only"


def new_id() -> str:
    return str(uuid.uuid4())


def parse_case_id(raw: str) -> str | None:
    """A well-formed case id, or None (then the case simply does not exist for the caller)."""
    try:
        return str(uuid.UUID(raw)) if len(raw) == 36 else None
    except ValueError:
        return None


def split_flags(flags: str) -> list[str]:
    """The ``flags`` column ("child,intimate_partner") as a list, in its fixed order."""
    return [f for f in flags.split(",") if f]


def urgent(flags: list[str] | tuple[str, ...]) -> bool:
    """Urgent cases get the standards' short deadlines: clinical windows or immediate danger."""
    return bool({"clinical_urgent", "clinical_soon", "immediate_danger"} & set(flags))


# Sealed columns of the referral row: submission path → column.
SEALED_FIELDS: dict[str, str] = {
    "survivor.name": "survivor_name_sealed",
    "survivor.phone": "survivor_phone_sealed",
    "survivor.address": "survivor_address_sealed",
    "survivor.safe_contact.notes": "safe_contact_sealed",
    "incident.narrative": "narrative_sealed",
    "perpetrator.name": "perpetrator_name_sealed",
    "perpetrator.details": "perpetrator_details_sealed",
}


# The predicate of the queue index; the queue's query writes it as literal SQL so the planner can match it.
QUEUED = "status <> 'withdrawn'"


class Referral(Base):
    __tablename__ = "referrals"
    __table_args__ = (
        # An officer's queue and a unit's board, newest first, without sorting every case they ever had.
        # Partial: a withdrawn case leaves its officer's queue, and the queue's count stays index-only.
        Index("ix_referrals_officer_queue", "assigned_officer_id", "created_at",
              postgresql_where=text(QUEUED), sqlite_where=text(QUEUED)),
        Index("ix_referrals_unit_created", "unit_id", "created_at"),
    )

    # Random ids: nothing about a case (count, order) can be read from its URL.
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[Status] = mapped_column(enum_column(Status, "referral_status"), default=Status.submitted)
    area_id: Mapped[int] = mapped_column(ForeignKey("areas.id", ondelete="RESTRICT"), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    submitter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    created_at: Mapped[created_at]

    # De-identified fields, in clear for routing, standards and statistics.
    age_group: Mapped[str] = mapped_column(String(8))
    sex: Mapped[str | None] = mapped_column(String(16))
    disability: Mapped[bool | None] = mapped_column(Boolean)
    survivor_language: Mapped[str | None] = mapped_column(String(3))
    safe_contact_method: Mapped[str] = mapped_column(String(16))
    answers: Mapped[str] = mapped_column(Text)  # canonical JSON of the classification answers
    incident_date: Mapped[dt.date | None]
    location_type: Mapped[str | None] = mapped_column(String(32))
    immediate_danger: Mapped[bool] = mapped_column(Boolean, default=False)
    perpetrator_relationship: Mapped[str | None] = mapped_column(String(32))
    consent: Mapped[str] = mapped_column(Text)  # canonical JSON of the consent answers at submission
    officer_gender: Mapped[str] = mapped_column(String(8), default="any")
    suspect_is_police: Mapped[bool] = mapped_column(Boolean, default=False)

    # Classification and workflow (SPEC §3).
    gbv_type: Mapped[str] = mapped_column(String(32), default="non_gbv")
    flags: Mapped[str] = mapped_column(String(128), default="")  # comma-separated, fixed order
    assigned_officer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    accepted_at: Mapped[dt.datetime | None]
    # When police first took the case: reassignment or recusal never resets the standards' clocks.
    first_accepted_at: Mapped[dt.datetime | None]
    escalated_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(48))
    # A closure waiting for the supervisor (units that require approval): the case stays in progress.
    closure_requested_at: Mapped[dt.datetime | None]
    closure_requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    # The handling standard in force at submission: later versions never re-judge this case.
    standard_id: Mapped[int | None] = mapped_column(ForeignKey("standards.id", ondelete="RESTRICT"), index=True)
    # services_only cases: the area's coordinating provider instead of a police unit.
    coordinator_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id", ondelete="RESTRICT"),
                                                       index=True)

    # Envelope encryption: the case's data key, only ever stored wrapped by a KEK.
    data_key_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    kek_version: Mapped[int | None] = mapped_column(Integer, index=True)
    erased_at: Mapped[dt.datetime | None]
    # The survivor asked for erasure (relayed by the focal point): erased at once, never by the clock.
    erasure_requested_at: Mapped[dt.datetime | None]

    survivor_name_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    survivor_phone_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    survivor_address_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    safe_contact_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    narrative_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    perpetrator_name_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    perpetrator_details_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)

    # Blind indexes (truncated HMACs) to spot possible duplicates without decrypting.
    survivor_phone_bidx: Mapped[str | None] = mapped_column(String(16), index=True)
    perpetrator_bidx: Mapped[str | None] = mapped_column(String(16), index=True)

    area: Mapped[Area] = relationship()
    unit: Mapped[Unit | None] = relationship()
    submitter: Mapped[User] = relationship(foreign_keys=[submitter_id])
    assigned_officer: Mapped[User | None] = relationship(foreign_keys=[assigned_officer_id])
    notes: Mapped[list[CaseNote]] = relationship(back_populates="referral", order_by="CaseNote.created_at")

    @property
    def flag_list(self) -> list[str]:
        return split_flags(self.flags)

    @property
    def is_urgent(self) -> bool:
        return urgent(self.flag_list)

    @property
    def crypto_context(self) -> dict[str, str]:
        return {"purpose": "case-data-key", "case": self.id}


class CaseNote(Base):
    """Free text added to a case (by the focal point or later an officer); sealed under the case key."""

    __tablename__ = "case_notes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[created_at]
    body_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)

    referral: Mapped[Referral] = relationship(back_populates="notes")
    author: Mapped[User] = relationship()


class SubmissionKey(Base):
    """A submission's idempotency key (a web form's hidden key, an API client's ``Idempotency-Key``): the same
    submission sent twice (a double tap, a retry after a slow network) files one case. Only hashes are
    kept: of the key, and a keyed digest of the submission (it is case content), to tell a repeat from a
    different referral sent with the same key."""

    __tablename__ = "submission_keys"
    __table_args__ = (UniqueConstraint("submitter_id", "key_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submitter_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_hash: Mapped[str] = mapped_column(String(64))
    body_digest: Mapped[str] = mapped_column(String(64))
    referral_id: Mapped[str] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[created_at]
