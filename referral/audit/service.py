"""Writing and checking the audit chain.

``record`` stages an event on the session; the event is appended to the chain
by a ``before_commit`` hook in the same transaction as the action, so both
commit or neither does, and the chain head is locked only from the append to
the commit — never across a whole request. An append is one UPDATE of the head
row (which queues concurrent appenders on PostgreSQL's row lock; SQLite
transactions begin IMMEDIATE) and one INSERT whose sequence number is the key.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy import LargeBinary, bindparam, event, func, select, text
from sqlalchemy.orm import Session

from referral.audit.chain import canonical_fields, link_hash, payload, row_payload
from referral.audit.models import GENESIS, AuditCheckpoint, AuditEvent, AuditHead
from referral.db import UTCDateTime, utcnow

log = logging.getLogger(__name__)

PENDING = "amanat_audit_pending"
ALLOWED, DENIED, ERROR = "allowed", "denied", "error"


class AuditWriteError(RuntimeError):
    """The event could not be appended; the transaction it belongs to must not commit."""


@dataclass
class Staged:
    ts: dt.datetime
    actor_id: int | None
    actor_role: str | None
    action: str
    object_type: str | None
    object_id: str | None
    outcome: str
    reason: str | None
    source_ip: str | None
    request_id: str | None
    fields: str


def record(session: Session, actor: Any, action: str, *, object_type: str | None = None,
           object_id: Any = None, outcome: str = ALLOWED, reason: str | None = None,
           fields: Iterable[str] = (), now: dt.datetime | None = None) -> None:
    """Stage an audit event; it is written when (and only if) this transaction commits.

    ``reason`` and ``fields`` name things (a rule, a field path); callers never
    pass case content.
    """
    if outcome not in (ALLOWED, DENIED, ERROR):
        raise ValueError(f"unknown audit outcome {outcome!r}")
    ip = req_id = None
    if has_request_context():
        ip = request.remote_addr
        req_id = g.get("request_id")
    role = getattr(getattr(actor, "role", None), "value", None)
    session.info.setdefault(PENDING, []).append(Staged(
        ts=now or utcnow(), actor_id=getattr(actor, "id", None), actor_role=role, action=action,
        object_type=object_type, object_id=None if object_id is None else str(object_id), outcome=outcome,
        reason=reason, source_ip=ip, request_id=req_id, fields=canonical_fields(tuple(fields)),
    ))


def pending(session: Session) -> list[Staged]:
    return list(session.info.get(PENDING, []))


def keep_only_refusals_after_failure(session: Session) -> bool:
    """On a failed request: roll back the action but keep its denied/error events.

    Returns True when events remain staged (the caller then commits them alone).
    """
    keep = [e for e in session.info.get(PENDING, []) if e.outcome != ALLOWED]
    session.rollback()
    session.info[PENDING] = keep
    return bool(keep)


_ADVANCE_HEAD = text(
    "UPDATE audit_head SET seq = seq + 1, prev_hash = hash, hash = amanat_chain(hash, seq + 1, :body) "
    "WHERE id = 1 RETURNING seq, prev_hash, hash")

_PG_APPEND = text(
    "WITH head AS (UPDATE audit_head SET seq = seq + 1, prev_hash = hash, "
    "hash = amanat_chain(hash, seq + 1, :body) WHERE id = 1 RETURNING seq, prev_hash, hash) "
    "INSERT INTO audit_events (seq, ts, actor_id, actor_role, action, object_type, object_id, outcome, reason, "
    "source_ip, request_id, fields, prev_hash, hash) "
    "SELECT head.seq, :ts, :actor_id, :actor_role, :action, :object_type, :object_id, :outcome, :reason, "
    ":source_ip, :request_id, :fields, head.prev_hash, head.hash FROM head"
).bindparams(bindparam("ts", type_=UTCDateTime()), bindparam("body", type_=LargeBinary()))


def _append(session: Session, staged: Staged) -> None:
    body = payload(ts=staged.ts, actor_id=staged.actor_id, actor_role=staged.actor_role, action=staged.action,
                   object_type=staged.object_type, object_id=staged.object_id, outcome=staged.outcome,
                   reason=staged.reason, source_ip=staged.source_ip, request_id=staged.request_id,
                   fields=staged.fields)
    params = {"body": body, "ts": staged.ts, "actor_id": staged.actor_id, "actor_role": staged.actor_role,
              "action": staged.action, "object_type": staged.object_type, "object_id": staged.object_id,
              "outcome": staged.outcome, "reason": staged.reason, "source_ip": staged.source_ip,
              "request_id": staged.request_id, "fields": staged.fields}
    if session.get_bind().dialect.name == "postgresql":
        # One statement: the head row's lock orders appenders, and the row
        # lock is held only until this transaction commits a moment later.
        if session.execute(_PG_APPEND, params).rowcount != 1:
            raise AuditWriteError("the audit chain head is missing; refusing to commit unaudited")
        return
    head = session.execute(_ADVANCE_HEAD, {"body": body}).first()
    if head is None:
        raise AuditWriteError("the audit chain head is missing; refusing to commit unaudited")
    session.execute(AuditEvent.__table__.insert().values(
        seq=head.seq, ts=staged.ts, actor_id=staged.actor_id, actor_role=staged.actor_role, action=staged.action,
        object_type=staged.object_type, object_id=staged.object_id, outcome=staged.outcome, reason=staged.reason,
        source_ip=staged.source_ip, request_id=staged.request_id, fields=staged.fields,
        prev_hash=bytes(head.prev_hash), hash=bytes(head.hash),
    ))


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    staged = session.info.get(PENDING)
    if not staged:
        return
    session.flush()  # the action's own rows first
    for item in list(staged):
        _append(session, item)


@event.listens_for(Session, "after_commit")
def _clear_appended(session: Session) -> None:
    session.info[PENDING] = []


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending_on_rollback(session: Session, previous_transaction: Any) -> None:
    # A transaction that did not commit did not happen; neither did its events.
    if session.info.get(PENDING) and not previous_transaction.nested:
        session.info[PENDING] = []


# -- verification --------------------------------------------------------------

@dataclass
class VerifyResult:
    ok: bool
    count: int
    first_bad_seq: int | None = None
    problem: str | None = None
    checkpoints: int = 0


def verify(session: Session, *, public_key: Any = None,
           progress: Callable[[int], None] | None = None, batch: int = 5000) -> VerifyResult:
    """Recompute the whole chain; name the first bad sequence number.

    Catches edited, deleted, swapped, forged and (with checkpoints, or the head
    row) truncated events. ``public_key`` checks the checkpoint signatures.
    """
    from referral.audit.checkpoints import checkpoint_message

    # Checkpoints first, then the head: every checkpoint read was signed at or
    # before this head, so one beyond it is evidence of a cut tail. Events
    # appended while we read are checked next time, not taken for breakage.
    cp_table = AuditCheckpoint.__table__
    checkpoints = session.execute(select(cp_table).order_by(cp_table.c.seq)).all()
    head = session.execute(select(AuditHead.__table__).where(AuditHead.__table__.c.id == 1)).first()
    limit = head.seq if head is not None else None
    expected_seq, prev, count = 1, GENESIS, 0
    hashes_at: dict[int, bytes] = {}
    wanted = {c.seq for c in checkpoints}
    last_seq = 0
    while True:
        # Plain rows, not ORM objects: a long chain must not fill the identity map.
        table = AuditEvent.__table__
        query = select(table).where(table.c.seq >= expected_seq)
        if limit is not None:
            query = query.where(table.c.seq <= limit)
        rows = session.execute(query.order_by(table.c.seq).limit(batch)).all()
        if not rows:
            break
        for row in rows:
            if row.seq != expected_seq:
                return VerifyResult(False, count, expected_seq, f"event {expected_seq} is missing")
            if bytes(row.prev_hash) != prev:
                return VerifyResult(False, count, row.seq, f"event {row.seq} does not follow event {row.seq - 1}")
            computed = link_hash(prev, row.seq, row_payload(row))
            if computed != bytes(row.hash):
                return VerifyResult(False, count, row.seq, f"event {row.seq} was altered")
            if row.seq in wanted:
                hashes_at[row.seq] = computed
            prev, expected_seq, last_seq = computed, row.seq + 1, row.seq
            count += 1
        if progress:
            progress(count)
    if head is not None and (head.seq != last_seq or (last_seq and bytes(head.hash) != prev)):
        return VerifyResult(False, count, last_seq + 1, f"the chain ends at {last_seq} but its head says {head.seq}")
    for cp in checkpoints:
        if public_key is not None:
            try:
                public_key.verify(bytes(cp.signature), checkpoint_message(cp.seq, bytes(cp.hash), cp.ts))
            except Exception:  # cryptography raises InvalidSignature
                return VerifyResult(False, count, cp.seq, f"checkpoint at {cp.seq} has a bad signature")
        if cp.seq > last_seq:
            return VerifyResult(False, count, last_seq + 1,
                                f"a checkpoint vouches for event {cp.seq} but the chain ends at {last_seq}")
        if hashes_at.get(cp.seq) != bytes(cp.hash):
            return VerifyResult(False, count, cp.seq, f"event {cp.seq} differs from its checkpoint")
    return VerifyResult(True, count, checkpoints=len(checkpoints))


def chain_length(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0
