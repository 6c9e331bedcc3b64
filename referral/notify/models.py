"""Outbox messages and the replay guard of the SMS webhook. Neither ever holds case content."""
from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from referral.db import Base, UTCDateTime, created_at, intpk
from referral.reference.models import enum_column


class Channel(enum.StrEnum):
    sms = "sms"
    email = "email"


class MessageStatus(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    dead = "dead"     # gave up after the last attempt: needs an operator


class OutboxMessage(Base):
    """A notification written in the same transaction as the change that causes it.

    ``params`` holds only references, dates and counts (checked when enqueued).
    A message to a survivor names the case, not the phone: the worker opens the
    sealed phone number at delivery, so the outbox never stores it.
    """

    __tablename__ = "outbox_messages"

    id: Mapped[intpk]
    key: Mapped[str] = mapped_column(String(64), unique=True)  # idempotency key, sent to the gateway
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "outbox_channel"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    address: Mapped[str | None] = mapped_column(String(254))  # staff phone or e-mail, or an SMS sender
    survivor_case_id: Mapped[str | None] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    template: Mapped[str] = mapped_column(String(48))
    language: Mapped[str] = mapped_column(String(3))
    params: Mapped[str] = mapped_column(Text, default="{}")
    status: Mapped[MessageStatus] = mapped_column(enum_column(MessageStatus, "outbox_status"),
                                                  default=MessageStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[created_at]
    sent_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(200))


class SmsReceipt(Base):
    """One row per accepted webhook call (a hash of its signature): a replay is refused with 409."""

    __tablename__ = "sms_receipts"

    id: Mapped[intpk]
    signature_hash: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[created_at]
