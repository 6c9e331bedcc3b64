"""``audit verify``: recompute the hash chain, check the signed checkpoints, name the first bad event.

On PostgreSQL the chain is recomputed inside the database: one ordered scan
rebuilds each event's canonical payload in SQL (byte for byte what
``referral.audit.chain.payload`` makes), hashes it with ``sha256`` and compares
links with ``lag()``, so no row crosses the wire unless it is bad. Elsewhere
(SQLite) Python walks the rows. Both report the same first bad sequence number;
the test suite runs every tamper test on both.

``since_checkpoint`` verifies only what follows the newest checkpoint whose
signature holds, starting from the hash it vouches for (incremental runs).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from referral.audit.chain import canonical_fields, link_hash, row_payload
from referral.audit.models import GENESIS, AuditCheckpoint, AuditEvent, AuditHead


@dataclass
class VerifyResult:
    ok: bool
    count: int
    first_bad_seq: int | None = None
    problem: str | None = None
    checkpoints: int = 0
    started_at: int = 1


@dataclass
class _Scan:
    ok: bool
    count: int
    last_seq: int
    last_hash: bytes
    bad_seq: int | None = None
    problem: str | None = None


# The canonical payload of chain.payload(), in SQL: sorted keys, compact separators, UTF-8, to_json
# escaping (which matches json.dumps(ensure_ascii=False) for strings), microsecond UTC time.
_PAYLOAD_SQL = """
'{"action":' || to_json(action)::text
|| ',"actor_id":' || coalesce(actor_id::text, 'null')
|| ',"actor_role":' || coalesce(to_json(actor_role)::text, 'null')
|| ',"fields":' || fields
|| ',"object_id":' || coalesce(to_json(object_id)::text, 'null')
|| ',"object_type":' || coalesce(to_json(object_type)::text, 'null')
|| ',"outcome":' || to_json(outcome)::text
|| ',"reason":' || coalesce(to_json(reason)::text, 'null')
|| ',"request_id":' || coalesce(to_json(request_id)::text, 'null')
|| ',"source_ip":' || coalesce(to_json(source_ip)::text, 'null')
|| ',"ts":"' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"}'
"""

# Two plain aggregates a window, so PostgreSQL may split them across parallel workers: every event's
# own hash, and every event's link to the one before it.
_PG_COUNTS = text("SELECT count(*) AS n, min(seq) AS first_seq, max(seq) AS last_seq "
                  "FROM audit_events WHERE seq >= :lo AND seq <= :hi")
_PG_HASHES = text(f"""
SELECT min(seq + 0) AS altered FROM audit_events  -- "+ 0": a plain scan, not an ordered index walk
WHERE seq >= :lo AND seq <= :hi
  -- IS DISTINCT FROM: a NULL anywhere (e.g. ts = 'infinity' formats to NULL) is a difference, never a pass
  AND sha256(prev_hash || int8send(seq) || convert_to({_PAYLOAD_SQL}, 'UTF8')) IS DISTINCT FROM hash
""")
_PG_LINKS = text("""
SELECT seq, before_seq FROM (
    SELECT seq, prev_hash, lag(seq) OVER w AS before_seq, lag(hash) OVER w AS before_hash
    FROM audit_events WHERE seq >= :lo AND seq <= :hi WINDOW w AS (ORDER BY seq)
) linked
WHERE (seq = :lo AND prev_hash IS DISTINCT FROM :prev)
   OR (seq > :lo AND (before_seq IS NULL OR before_seq <> seq - 1 OR prev_hash IS DISTINCT FROM before_hash))
ORDER BY seq LIMIT 1
""")
_PRIORITY = {"missing": 0, "link": 1, "altered": 2}
_MESSAGES = {"missing": "event {} is missing", "link": "event {} does not follow the one before it",
             "altered": "event {} was altered"}


def _scan_pg(session: Session, lo: int, prev: bytes, limit: int | None, step: int,
             progress: Callable[[int], None] | None) -> _Scan:
    count, last_seq, last_hash = 0, lo - 1, prev
    top = limit if limit is not None else session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())
                                                         .limit(1)) or 0
    while lo <= top:
        hi = min(lo + step - 1, top)
        sums = session.execute(_PG_COUNTS, {"lo": lo, "hi": hi}).one()
        if not sums.n:
            # An empty window: the end of the chain, or a gap as wide as a window. Never assume the head
            # row will tell (it is not append-only protected): look for anything beyond.
            beyond = session.scalar(select(AuditEvent.seq).where(AuditEvent.seq > hi).order_by(AuditEvent.seq)
                                    .limit(1))
            if beyond is not None:
                return _Scan(False, count, last_seq, last_hash, lo, _MESSAGES["missing"].format(lo))
            break
        found: list[tuple[int, str]] = []
        if sums.first_seq != lo:
            found.append((lo, "missing"))
        link = session.execute(_PG_LINKS, {"lo": lo, "hi": hi, "prev": prev}).first()
        if link is not None:
            if link.seq > lo and (link.before_seq is None or link.before_seq != link.seq - 1):
                found.append(((link.before_seq or lo - 1) + 1, "missing"))  # the first of the missing run
            else:
                found.append((link.seq, "link"))
        altered = session.scalar(_PG_HASHES, {"lo": lo, "hi": hi})
        if altered is not None:
            found.append((altered, "altered"))
        if sums.last_seq != hi:
            found.append((sums.last_seq + 1, "missing"))
        if found:
            bad, kind = min(found, key=lambda f: (f[0], _PRIORITY[f[1]]))
            good = session.scalar(text("SELECT count(*) FROM audit_events WHERE seq >= :lo AND seq < :bad"),
                                  {"lo": lo, "bad": bad}) or 0
            return _Scan(False, count + good, last_seq, last_hash, bad, _MESSAGES[kind].format(bad))
        last_hash = bytes(session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == hi)))
        count, last_seq, prev, lo = count + sums.n, hi, last_hash, hi + 1
        if progress:
            progress(count)
    return _Scan(True, count, last_seq, last_hash)


def _scan_python(session: Session, lo: int, prev: bytes, limit: int | None, batch: int,
                 progress: Callable[[int], None] | None) -> _Scan:
    expected_seq, count, last_seq = lo, 0, lo - 1
    table = AuditEvent.__table__
    while True:
        # Plain rows, not ORM objects: a long chain must not fill the identity map.
        query = select(table).where(table.c.seq >= expected_seq)
        if limit is not None:
            query = query.where(table.c.seq <= limit)
        rows = session.execute(query.order_by(table.c.seq).limit(batch)).all()
        if not rows:
            break
        for row in rows:
            if row.seq != expected_seq:
                return _Scan(False, count, last_seq, prev, expected_seq, f"event {expected_seq} is missing")
            if bytes(row.prev_hash) != prev:
                return _Scan(False, count, last_seq, prev, row.seq, f"event {row.seq} does not follow event {row.seq - 1}")
            try:
                canonical = canonical_fields(json.loads(row.fields)) == row.fields  # as SQL hashes the raw text
                computed = link_hash(prev, row.seq, row_payload(row)) if canonical else None
            except (ValueError, TypeError, AttributeError, OverflowError):
                computed = None  # a row that cannot even be encoded was not written by us
            if computed is None or computed != bytes(row.hash):
                return _Scan(False, count, last_seq, prev, row.seq, f"event {row.seq} was altered")
            prev, expected_seq, last_seq = computed, row.seq + 1, row.seq
            count += 1
        if progress:
            progress(count)
    return _Scan(True, count, last_seq, prev)


def verify(session: Session, *, public_key: Any = None, progress: Callable[[int], None] | None = None,
           batch: int = 5000, since_checkpoint: bool = False, pg_step: int = 1_000_000) -> VerifyResult:
    """Recompute the chain; name the first bad sequence number.

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
    for cp in checkpoints:
        if public_key is not None:
            try:
                public_key.verify(bytes(cp.signature), checkpoint_message(cp.seq, bytes(cp.hash), cp.ts))
            except Exception:  # cryptography raises InvalidSignature
                return VerifyResult(False, 0, cp.seq, f"checkpoint at {cp.seq} has a bad signature")
    start, prev = 1, GENESIS
    if since_checkpoint and checkpoints and public_key is not None:
        newest = checkpoints[-1]
        start, prev = newest.seq + 1, bytes(newest.hash)
        row = session.execute(select(AuditEvent.__table__).where(AuditEvent.seq == newest.seq)).first()
        try:
            intact = row is not None and bytes(row.hash) == prev and \
                link_hash(bytes(row.prev_hash), row.seq, row_payload(row)) == prev
        except (ValueError, TypeError, AttributeError, OverflowError):
            intact = False
        if not intact:
            return VerifyResult(False, 0, newest.seq, f"event {newest.seq} differs from its checkpoint", started_at=start)
    if session.get_bind().dialect.name == "postgresql":
        scan = _scan_pg(session, start, prev, limit, pg_step, progress)
    else:
        scan = _scan_python(session, start, prev, limit, batch, progress)
    if not scan.ok:
        return VerifyResult(False, scan.count, scan.bad_seq, scan.problem, started_at=start)
    if head is not None and (head.seq != scan.last_seq or (scan.last_seq and bytes(head.hash) != scan.last_hash)):
        return VerifyResult(False, scan.count, scan.last_seq + 1,
                            f"the chain ends at {scan.last_seq} but its head says {head.seq}", started_at=start)
    # Every event up to last_seq now hashes to its stored hash, so the stored hashes are the chain's.
    wanted = [cp.seq for cp in checkpoints if cp.seq >= start - 1]
    hashes_at = {seq: bytes(h) for seq, h in session.execute(
        select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.seq.in_(wanted)))} if wanted else {}
    for cp in checkpoints:
        if cp.seq < start - 1:
            continue
        if cp.seq > scan.last_seq:
            return VerifyResult(False, scan.count, scan.last_seq + 1,
                                f"a checkpoint vouches for event {cp.seq} but the chain ends at {scan.last_seq}",
                                started_at=start)
        if hashes_at.get(cp.seq) != bytes(cp.hash):
            return VerifyResult(False, scan.count, cp.seq, f"event {cp.seq} differs from its checkpoint",
                                started_at=start)
    return VerifyResult(True, scan.count, checkpoints=len(checkpoints), started_at=start)
