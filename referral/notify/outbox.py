"""The transactional outbox: enqueue in the caller's transaction; a worker delivers with retries.

``enqueue`` only adds a row (the request that caused it commits both together).
``deliver`` takes one due message at a time under ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL — several workers side by side never take the same one — sends it
and commits. A worker killed mid-delivery never commits: its lock goes with its
connection and the message is due again, re-sent with the same idempotency key.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from referral.accounts.models import Role, User
from referral.db import utcnow
from referral.notify.adapters import Adapter, DeliveryFailed
from referral.notify.models import Channel, MessageStatus, OutboxMessage
from referral.notify.templates import LANGUAGES, check_params, render

MAX_ATTEMPTS = 8


class Undeliverable(Exception):
    """Never to be sent (no address, consent withdrawn): dead at once, not retried."""
BACKOFF_SECONDS = (30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600)


def _language(user: User | None) -> str:
    for code in (user.language_list if user else []):
        if code in LANGUAGES:
            return code
    return "ru"  # the language every focal point and officer in the three countries reads


def enqueue(session: Session, template: str, params: dict[str, Any], *, channel: Channel, address: str | None = None,
            user: User | None = None, survivor_case_id: str | None = None, language: str | None = None,
            now: dt.datetime | None = None) -> OutboxMessage:
    """Add a message to the caller's transaction; its parameters are checked before anything is stored."""
    clean = check_params(template, params)
    message = OutboxMessage(key=uuid.uuid4().hex, channel=channel, user_id=user.id if user else None,
                            address=address, survivor_case_id=survivor_case_id, template=template,
                            language=language or _language(user), params=json.dumps(clean, sort_keys=True),
                            next_attempt_at=now or utcnow())
    session.add(message)
    return message


def notify_user(session: Session, user: User, template: str, **params: Any) -> OutboxMessage | None:
    """A staff member by SMS when they have a phone, else by e-mail; inactive accounts get nothing."""
    if not user.active:
        return None
    if user.phone:
        return enqueue(session, template, params, channel=Channel.sms, address=user.phone, user=user)
    return enqueue(session, template, params, channel=Channel.email, address=user.email, user=user)


def notify_role(session: Session, template: str, *, role: Role, unit_id: int | None = None,
                organisation_id: int | None = None, exclude: set[int] | frozenset[int] = frozenset(),
                **params: Any) -> int:
    query = select(User).where(User.role == role, User.active.is_(True))
    if unit_id is not None:
        query = query.where(User.unit_id == unit_id)
    if organisation_id is not None:
        query = query.where(User.organisation_id == organisation_id)
    sent = 0
    for user in session.scalars(query.order_by(User.id)):
        if user.id not in exclude and notify_user(session, user, template, **params):
            sent += 1
    return sent


def _address(session: Session, message: OutboxMessage) -> str | None:
    """A survivor's phone is opened from the sealed case at delivery, and the opening is audited. A staff
    account is checked again too: one deactivated since the message was queued is told nothing more."""
    if message.survivor_case_id is None:
        if message.user_id is not None:
            holder = session.get(User, message.user_id)
            if holder is None or not holder.active:
                raise Undeliverable("account deactivated")
        return message.address
    from referral.audit.service import record
    from referral.referrals import crypto
    from referral.referrals.models import Referral

    from referral.referrals.models import Status
    from referral.services_dir.consent import is_active

    referral = session.get(Referral, message.survivor_case_id)
    # Consent and her choice of contact are checked again now: a withdrawal acts on queued messages too.
    if (referral is None or referral.safe_contact_method != "sms" or referral.status is Status.withdrawn
            or not is_active(session, referral.id, "sms_contact")):
        raise Undeliverable("no longer allowed to contact her")
    data_key = crypto.case_key(referral)
    if data_key is None:
        raise Undeliverable("no address (erased case)")
    record(session, None, "outbox.deliver", object_type="referral", object_id=referral.id,
           reason=f"message {message.key}", fields=["survivor.phone"])
    return crypto.open_referral_field(referral, data_key, "survivor.phone")


def deliver_one(session: Session, adapters: dict[str, Adapter], *, now: dt.datetime | None = None,
                max_attempts: int = MAX_ATTEMPTS) -> OutboxMessage | None:
    """Deliver the next due message, if any, and commit. Returns it (sent, retried later or dead)."""
    now = now or utcnow()
    message = session.scalar(select(OutboxMessage).where(
        OutboxMessage.status == MessageStatus.pending, OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(1)
        .with_for_update(skip_locked=True))
    if message is None:
        session.rollback()
        return None
    message_id = message.id
    message.attempts += 1
    try:
        address = _address(session, message)
        if not address:
            raise Undeliverable("no address")
        text = render(message.template, message.language, json.loads(message.params))
        adapters[message.channel.value].send(message.key, address, text)
    except Undeliverable as exc:
        message.status, message.last_error = MessageStatus.dead, str(exc)
    except DeliveryFailed as exc:
        _retry_later(message, str(exc), now, max_attempts)
    except Exception as exc:  # noqa: BLE001 - one bad message must never stop the queue behind it
        session.rollback()  # releases the row: another worker may take it meanwhile
        message = session.scalar(select(OutboxMessage).where(OutboxMessage.id == message_id)
                                 .with_for_update().execution_options(populate_existing=True))
        if message is None or message.status is not MessageStatus.pending or message.next_attempt_at > now:
            session.rollback()  # another worker sent it, gave up on it or set its next try: theirs stands
            return message
        message.attempts += 1
        _retry_later(message, f"unexpected {type(exc).__name__}", now, max_attempts)  # the type only: no content
    else:
        message.status, message.sent_at, message.last_error = MessageStatus.sent, now, None
    session.commit()
    return message


def _retry_later(message: OutboxMessage, error: str, now: dt.datetime, max_attempts: int) -> None:
    message.last_error = error[:200]
    if message.attempts >= max_attempts:
        message.status = MessageStatus.dead
    else:
        delay = BACKOFF_SECONDS[min(message.attempts - 1, len(BACKOFF_SECONDS) - 1)]
        message.next_attempt_at = now + dt.timedelta(seconds=delay)


def deliver(session: Session, adapters: dict[str, Adapter], *, limit: int | None = None,
            now: dt.datetime | None = None) -> dict[str, int]:
    """Deliver every message due now (or ``limit`` of them); counts by outcome."""
    counts = {"sent": 0, "retry": 0, "dead": 0}
    done = 0
    while limit is None or done < limit:
        message = deliver_one(session, adapters, now=now)
        if message is None:
            break
        done += 1
        counts["sent" if message.status is MessageStatus.sent else
               "dead" if message.status is MessageStatus.dead else "retry"] += 1
    return counts
