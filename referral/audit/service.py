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
import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import g, has_request_context, request
from sqlalchemy import LargeBinary, String, bindparam, event, func, select, text
from sqlalchemy.orm import Session

from referral.audit.chain import canonical_fields, link_hash, payload, row_payload
from referral.audit.models import GENESIS, AuditCheckpoint, AuditEvent, AuditHead
from referral.db import UTCDateTime, run_compiled, utcnow

log = logging.getLogger(__name__)

PENDING = "amanat_audit_pending"
REASON_LENGTH = AuditEvent.__table__.c.reason.type.length  # 300
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
    if reason is not None and len(reason) > REASON_LENGTH:
        # A reason that names many things (every missing course, say) is shortened, not refused: the event
        # must be written for the action to stand, and it is hashed as stored.
        reason = reason[:REASON_LENGTH - 1] + "…"
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


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """``begin_nested`` whose events go with it: an action undone by its savepoint leaves no "allowed"
    event behind (refusals stay, as after a failed request)."""
    staged = len(session.info.get(PENDING, []))
    try:
        with session.begin_nested():
            yield
    except Exception:
        events = session.info.get(PENDING, [])
        events[staged:] = [e for e in events[staged:] if e.outcome != ALLOWED]
        raise


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

_COLUMNS = ("ts", "actor_id", "actor_role", "action", "object_type", "object_id", "outcome", "reason",
            "source_ip", "request_id", "fields")
APPEND_BATCH = 16  # events appended by one statement on PostgreSQL


@functools.cache
def _pg_append(n: int) -> Any:
    """One statement appending ``n`` events (bind parameters ``body0``, ``ts0``, … ``fields{n-1}``).

    The head's UPDATE comes first and takes the row lock, which orders appenders; it moves the head past
    all ``n`` events (their hashes nested) and keeps the hash it had as ``prev_hash``. Each event's link
    is then computed from the one before it, starting there, so the inserted hashes and the head's agree
    by construction of the same function on the same values. A head that is missing inserts nothing."""
    final = "hash"
    for k in range(n):
        final = f"amanat_chain({final}, seq + {k + 1}, :body{k})"
    links = [f"e0 AS (SELECT head.seq - {n - 1} AS seq, head.prev_hash AS prev, "
             f"amanat_chain(head.prev_hash, head.seq - {n - 1}, :body0) AS hash FROM head)"]
    links += [f"e{k} AS (SELECT e{k - 1}.seq + 1 AS seq, e{k - 1}.hash AS prev, "
              f"amanat_chain(e{k - 1}.hash, e{k - 1}.seq + 1, :body{k}) AS hash FROM e{k - 1})" for k in range(1, n)]
    # Typed: in a UNION a NULL parameter would otherwise be taken for text. Strings as unbounded VARCHAR: an
    # explicit cast to VARCHAR(n) cuts a longer value silently, and the row would not match the hash computed
    # over the whole value; the INSERT's own conversion refuses it instead, as a plain INSERT does.
    from sqlalchemy.dialects import postgresql

    sql_types = {c: "VARCHAR" if isinstance(AuditEvent.__table__.c[c].type, String)
                 else AuditEvent.__table__.c[c].type.compile(dialect=postgresql.dialect()) for c in _COLUMNS}
    rows = " UNION ALL ".join(
        f"SELECT e{k}.seq, " + ", ".join(f"CAST(:{c}{k} AS {sql_types[c]})" for c in _COLUMNS)
        + f", e{k}.prev, e{k}.hash FROM e{k}" for k in range(n))
    sql = (f"WITH head AS (UPDATE audit_head SET seq = seq + {n}, prev_hash = hash, hash = {final} "
           f"WHERE id = 1 RETURNING seq, prev_hash), {', '.join(links)} "
           f"INSERT INTO audit_events (seq, {', '.join(_COLUMNS)}, prev_hash, hash) {rows}")
    types = [bindparam(f"ts{k}", type_=UTCDateTime()) for k in range(n)]
    types += [bindparam(f"body{k}", type_=LargeBinary()) for k in range(n)]
    return text(sql).bindparams(*types)


def _body(staged: Staged) -> bytes:
    return payload(ts=staged.ts, actor_id=staged.actor_id, actor_role=staged.actor_role, action=staged.action,
                   object_type=staged.object_type, object_id=staged.object_id, outcome=staged.outcome,
                   reason=staged.reason, source_ip=staged.source_ip, request_id=staged.request_id,
                   fields=staged.fields)


@functools.cache
def _param_names(n: int) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each of ``n`` events' parameter names: its body's (``body0``) and its columns' (``ts0``, …)."""
    return tuple((f"body{k}", tuple(f"{c}{k}" for c in _COLUMNS)) for k in range(n))


def _append_batch(session: Session, batch: list[Staged]) -> None:
    """PostgreSQL: ``batch`` (at most APPEND_BATCH events) in one statement, compiled once."""
    params: dict[str, Any] = {}
    for (body, names), staged in zip(_param_names(len(batch)), batch):
        params[body] = _body(staged)
        params.update(zip(names, (getattr(staged, c) for c in _COLUMNS)))
    if run_compiled(session.connection(), _pg_append(len(batch)), params).rowcount != len(batch):
        raise AuditWriteError("the audit chain head is missing; refusing to commit unaudited")


def _append(session: Session, staged: Staged) -> None:
    """SQLite: advance the head (the transaction began IMMEDIATE, so it holds the write lock), then insert."""
    body = _body(staged)
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
    staged = list(staged)
    if session.get_bind().dialect.name == "postgresql":
        # One statement for the transaction's events (up to APPEND_BATCH at a time): the head row's lock
        # orders appenders, held only until this transaction commits a moment later.
        for start in range(0, len(staged), APPEND_BATCH):
            _append_batch(session, staged[start:start + APPEND_BATCH])
        return
    for item in staged:
        _append(session, item)


@event.listens_for(Session, "after_commit")
def _clear_appended(session: Session) -> None:
    session.info[PENDING] = []


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending_on_rollback(session: Session, previous_transaction: Any) -> None:
    # A transaction that did not commit did not happen; neither did its events.
    if session.info.get(PENDING) and not previous_transaction.nested:
        session.info[PENDING] = []


# -- verification lives in referral.audit.verify (re-exported here for callers) ---------

def chain_length(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


from referral.audit.verify import VerifyResult, verify  # noqa: E402,F401  (the public name callers use)
