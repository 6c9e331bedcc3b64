"""What the workflow tells people, through the outbox, in the same transaction as the change.

Every message names a reference at most ("new case R-…, please log in"); the
templates refuse anything else.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from referral.accounts.models import Role, User
from referral.notify.outbox import notify_role, notify_user


def offered(session: Session, referral: Any, officers: Iterable[User]) -> None:
    for officer in officers:
        notify_user(session, officer, "new_offer", reference=referral.reference)


def escalated(session: Session, referral: Any) -> None:
    if referral.unit_id is not None:
        notify_role(session, "escalation", role=Role.supervisor, unit_id=referral.unit_id,
                    reference=referral.reference)


def breached(session: Session, referral: Any) -> None:
    if referral.unit_id is not None:
        notify_role(session, "breach", role=Role.supervisor, unit_id=referral.unit_id, reference=referral.reference)


def certificate_expiring(session: Session, user: User, expires_on: dt.date) -> None:
    notify_user(session, user, "certificate_expiring", date=expires_on.isoformat())


def protection_order_expiring(session: Session, referral: Any, expires_on: dt.date) -> None:
    """The case's officer is told; a case without one (escalated, between officers), its unit's supervisor."""
    officer = session.get(User, referral.assigned_officer_id) if referral.assigned_officer_id else None
    if officer is not None and officer.active:
        notify_user(session, officer, "protection_order_expiring", reference=referral.reference,
                    date=expires_on.isoformat())
    elif referral.unit_id is not None:
        notify_role(session, "protection_order_expiring", role=Role.supervisor, unit_id=referral.unit_id,
                    reference=referral.reference, date=expires_on.isoformat())


def service_referral(session: Session, referral: Any, provider_id: int) -> None:
    notify_role(session, "service_referral", role=Role.service_provider, organisation_id=provider_id,
                reference=referral.reference)


def withdrawn(session: Session, referral: Any, officer_ids: Iterable[int]) -> None:
    for officer_id in set(officer_ids):
        officer = session.get(User, officer_id)
        if officer is not None:
            notify_user(session, officer, "withdrawn", reference=referral.reference)


def survivor(session: Session, referral: Any, template: str) -> bool:
    """A message to the survivor herself, only with active ``sms_contact`` consent and SMS as her safe
    contact method. The outbox names the case; the worker opens her sealed phone number at delivery."""
    from referral.notify.models import Channel
    from referral.notify.outbox import enqueue
    from referral.services_dir.consent import is_active

    if (referral.safe_contact_method != "sms" or referral.survivor_phone_sealed is None
            or referral.erased_at is not None or not is_active(session, referral.id, "sms_contact")):
        return False
    enqueue(session, template, {}, channel=Channel.sms, survivor_case_id=referral.id,
            language=referral.survivor_language or "ru")
    return True


def break_glass_opened(session: Session, opener: User) -> None:
    """Every other oversight user is told, so that someone reviews it."""
    notify_role(session, "break_glass", role=Role.oversight, exclude={opener.id})
