"""The transactional outbox: enqueue in the caller's transaction; a worker delivers with retries.

``enqueue`` only adds a row (the request that caused it commits both together).
``deliver`` takes one due message at a time under ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL — several workers side by side never take the same one — sends it
and commits. A worker killed mid-delivery never commits: its lock goes with its
connection and the message is due again, re-sent with the same idempotency key.
On SQLite, whose one lock covers the whole database, a worker claims a message
for a while (a lease), sends it holding no lock, then records the outcome.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from referral.accounts.models import Role, User
from referral.db import UTCDateTime, utcnow
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


# How long a message claimed on SQLite is left to its worker before another may take it (a worker killed
# mid-send). The adapters' 10-second timeouts bound each network operation, not a whole send (SMTP takes
# several), so a very slow send can outlive it: another worker may then send the message again with the
# same idempotency key, and a late success is still recorded.
SQLITE_LEASE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt did: ``outcome`` is sent, retry or dead; skipped when another worker had
    dealt with the message meanwhile (its outcome stands and is theirs to count)."""

    message: OutboxMessage | None
    outcome: str


def deliver_one(session: Session, adapters: dict[str, Adapter], *, now: dt.datetime | None = None,
                max_attempts: int = MAX_ATTEMPTS) -> Attempt | None:
    """Deliver the next due message, if any, and commit; None when nothing is due.

    PostgreSQL keeps the message's row locked (``FOR UPDATE SKIP LOCKED``) while it is sent: other workers
    skip it, and a worker killed mid-send frees it at once. SQLite has one lock for the whole database, and
    holding it through a slow gateway stopped every request that writes (``_deliver_leased``)."""
    now = now or utcnow()
    if session.get_bind().dialect.name == "sqlite":
        return _deliver_leased(session, adapters, now, max_attempts)
    message = session.scalar(_next_due().with_for_update(skip_locked=True), {"now": now})
    if message is None:
        session.rollback()
        return None
    message_id = message.id
    message.attempts += 1
    try:
        address, text = _prepared(session, message)
        adapters[message.channel.value].send(message.key, address, text)
    except Undeliverable as exc:
        message.status, message.last_error = MessageStatus.dead, str(exc)
    except DeliveryFailed as exc:
        _retry_later(message, str(exc), now, max_attempts)
    except Exception as exc:  # noqa: BLE001 - one bad message must never stop the queue behind it
        return _unexpected(session, message_id, exc, now, max_attempts)
    else:
        message.status, message.sent_at, message.last_error = MessageStatus.sent, now, None
    return _commit(session, message)


def _commit(session: Session, message: OutboxMessage) -> Attempt:
    # The outcome is read before the commit: afterwards the object is expired, and reading it would begin
    # a new transaction (on SQLite, the database's write lock) for the caller to hold.
    attempt = Attempt(message, _outcome(message))
    session.commit()
    return attempt


def _deliver_leased(session: Session, adapters: dict[str, Adapter], now: dt.datetime,
                    max_attempts: int) -> Attempt | None:
    """SQLite: claim the message and commit, send with no transaction open, then record the outcome if the
    claim is still ours. A worker killed mid-send leaves the message due again when the lease ends (sent
    again with the same key, as on PostgreSQL)."""
    message = session.scalar(_next_due(), {"now": now})
    if message is None:
        session.rollback()
        return None
    message_id = message.id
    message.attempts += 1
    try:
        address, text = _prepared(session, message)
    except Undeliverable as exc:
        message.status, message.last_error = MessageStatus.dead, str(exc)
        return _commit(session, message)
    except Exception as exc:  # noqa: BLE001
        return _unexpected(session, message_id, exc, now, max_attempts)
    claim, key, channel = message.attempts, message.key, message.channel.value
    message.next_attempt_at = now + SQLITE_LEASE
    session.commit()  # the claim, with the audit event of opening her number when it was opened
    error: str | None = None
    try:
        adapters[channel].send(key, address, text)
    except DeliveryFailed as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001
        error = f"unexpected {type(exc).__name__}"  # the type only: no content
    finished = max(now, utcnow())  # a send can take a while: its time and any backoff run from its end
    message = session.scalar(select(OutboxMessage).where(
        OutboxMessage.id == message_id, OutboxMessage.status == MessageStatus.pending)
        .execution_options(populate_existing=True))
    if message is None or (message.attempts != claim and error is not None):
        # The lease ran out and another worker took the message: it sent it or gave up on it, or its own
        # try stands against our failure. Theirs to record and count.
        session.rollback()
        return Attempt(message, "skipped")
    if error is None:  # sent, even if another worker took it meanwhile and has not (yet) managed to
        message.status, message.sent_at, message.last_error = MessageStatus.sent, finished, None
    else:
        _retry_later(message, error, finished, max_attempts)
    return _commit(session, message)


@functools.cache
def _next_due() -> Any:
    return (select(OutboxMessage).where(OutboxMessage.status == MessageStatus.pending,
                                        OutboxMessage.next_attempt_at <= bindparam("now", type_=UTCDateTime()))
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(1))


def _prepared(session: Session, message: OutboxMessage) -> tuple[str, str]:
    """The address and the text of ``message``; Undeliverable if it may not or cannot go."""
    address = _address(session, message)
    if not address:
        raise Undeliverable("no address")
    return address, render(message.template, message.language, json.loads(message.params))


def _unexpected(session: Session, message_id: int, exc: Exception, now: dt.datetime, max_attempts: int) -> Attempt:
    """A failure nobody foresaw (a bug in an adapter or a template): the message is tried again later."""
    session.rollback()  # releases the row: another worker may take it meanwhile
    message = session.scalar(select(OutboxMessage).where(OutboxMessage.id == message_id)
                             .with_for_update().execution_options(populate_existing=True))
    if message is None or message.status is not MessageStatus.pending or message.next_attempt_at > now:
        session.rollback()  # another worker sent it, gave up on it or set its next try: theirs stands
        return Attempt(message, "skipped")
    message.attempts += 1
    _retry_later(message, f"unexpected {type(exc).__name__}", now, max_attempts)  # the type only: no content
    return _commit(session, message)


def _outcome(message: OutboxMessage) -> str:
    return "sent" if message.status is MessageStatus.sent else "dead" if message.status is MessageStatus.dead \
        else "retry"


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
        attempt = deliver_one(session, adapters, now=now)
        if attempt is None:
            break
        done += 1
        if attempt.outcome in counts:  # not one another worker dealt with meanwhile: they count it
            counts[attempt.outcome] += 1
    return counts
