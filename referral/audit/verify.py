"""``audit verify``: recompute the hash chain, check the signed checkpoints, name the first bad event.

On PostgreSQL the chain is recomputed inside the database, one query per window
of a million events: each event's canonical payload is rebuilt in SQL (byte for
byte what ``referral.audit.chain.payload`` makes) and hashed with ``sha256``, in
chunks that PostgreSQL runs in parallel; no row crosses the wire. A first pass
checks the links by comparing two strings each chunk builds as it reads; only a
window it cannot vouch for is scanned again, merge-joining each event to the one
before it, to name the first bad event. Elsewhere
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

# The same payload without to_json: every text value quoted as it is. It equals the canonical payload
# exactly when no value needs a JSON escape, which is every honest event without a quote, backslash or
# control character in its text. See _PG_CHUNK for why it may be trusted only as a first try. ("\\:" keeps
# text() from reading :null as a bind parameter.)
_FAST_PAYLOAD_SQL = """
'{"action":"' || action || '","actor_id":' || coalesce(actor_id::text, 'null')
|| coalesce(',"actor_role":"' || actor_role || '"', ',"actor_role"\\:null')
|| ',"fields":' || fields
|| coalesce(',"object_id":"' || object_id || '"', ',"object_id"\\:null')
|| coalesce(',"object_type":"' || object_type || '"', ',"object_type"\\:null')
|| ',"outcome":"' || outcome
|| coalesce('","reason":"' || reason || '"', '","reason"\\:null')
|| coalesce(',"request_id":"' || request_id || '"', ',"request_id"\\:null')
|| coalesce(',"source_ip":"' || source_ip || '"', ',"source_ip"\\:null')
|| ',"ts":"' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"}'
"""

# One query a window. The window is cut into chunks, each one plain aggregate over the chunk's events
# merge-joined to the events one before them (read again through the primary key, so the link check
# costs one more ordered index scan, not a lookup per event); the chunks are a UNION ALL that PostgreSQL
# runs as a Parallel Append, each chunk in one process. Each event's own hash and its link are checked
# in the same pass. (Window functions such as lag() are parallel-restricted: an ordered lag() pass ran
# in one process only. A join to seq - 1 split across workers needs a shared hash table or an index
# lookup per event, which measured slower.)
#
# The hash check tries the cheap payload first, with every backslash turned into U+0001, and falls back
# to the exact payload only when that does not match (an escape, a NULL, an unreadable time), so an
# event with a quote in its reason costs what every event cost before. A match is sound when the stored
# hash is the service's own, i.e. covers canonical JSON: that text holds no raw control character, so
# the cheap text that matched had no backslash in it, hence no escape at all; without escapes every "
# in canonical JSON is structural, so each "key": occurs in it once; the cheap text writes every key
# at its place, so a value holding "key": would make one too many. The keys therefore line up and every
# value is the same text (to_char is one-to-one on years 1 to 9999; a time before year 1 is refused
# outright, as to_char writes BC years without their era).
# One difference from hashing the exact payload alone: a hash an attacker recomputed over unescaped
# text (a raw quote or newline in a value) matches the cheap payload, so that event is not named
# itself: the next event is, its link being broken, or for a rewritten tail the first checkpoint
# beyond it. (The exact path already took the fields text as stored, escaped or not; Python names
# the event itself.) Checking every value for characters that need escaping would close this but
# cost about a quarter more CPU (measured).
_ALTERED_SQL = f"""CASE
           WHEN e.ts < '0001-01-01T00:00:00Z' THEN true
           WHEN sha256(e.prev_hash || int8send(e.seq)
                       || convert_to(replace({_FAST_PAYLOAD_SQL}, '\\', chr(1)), 'UTF8')) = e.hash THEN false
           -- IS DISTINCT FROM: a NULL anywhere (e.g. ts = 'infinity' formats to NULL) is a difference, never a pass
           ELSE sha256(e.prev_hash || int8send(e.seq) || convert_to({_PAYLOAD_SQL}, 'UTF8')) IS DISTINCT FROM e.hash
       END"""
_PG_CHUNK = f"""
SELECT count(*) AS n, min(e.seq) AS first_seq, max(e.seq) AS last_seq,
       min(e.seq) FILTER (WHERE CASE WHEN e.seq = :lo THEN e.prev_hash IS DISTINCT FROM :prev
                                     ELSE p.seq IS NULL OR e.prev_hash IS DISTINCT FROM p.hash END) AS link_seq,
       min(e.seq) FILTER (WHERE e.seq > :lo AND p.seq IS NULL) AS gap_seq,
       min(e.seq) FILTER (WHERE {_ALTERED_SQL}) AS altered
FROM audit_events e
LEFT JOIN (SELECT seq, seq + 1 AS next_seq, hash FROM audit_events WHERE seq >= :a{{i}} - 1 AND seq < :b{{i}}) p
       ON p.next_seq = e.seq
WHERE e.seq >= :a{{i}} AND e.seq <= :b{{i}}
"""
_PG_CHUNKS = 8
_PG_WINDOW = text(
    "SELECT coalesce(sum(n), 0)::bigint AS n, min(first_seq) AS first_seq, max(last_seq) AS last_seq, "
    "min(link_seq) AS link_seq, min(gap_seq) AS gap_seq, min(altered) AS altered FROM (\n"
    + "\nUNION ALL\n".join(f"({_PG_CHUNK.replace('{i}', str(i))})" for i in range(_PG_CHUNKS))
    + "\n) chunks")
# The first pass over a window: the same chunks, each one aggregate over its events alone, with no join.
# The links are checked by comparing two strings that each chunk builds as it reads its events: ``back``
# holds (seq, prev_hash) of each event and ``fwd`` (seq + 1, hash), 40 bytes an event. With the rows in
# seq order and none missing, back without its first entry equals fwd without its last exactly when
# every event names the hash of the one before it; the entries carry the sequence numbers, so the
# strings are also equal only when the rows came in consecutive order. The chunks' edges are compared
# by the caller: each chunk's first back entry must be the previous chunk's last fwd entry (or the
# window's starting hash). Building the strings costs about a third of the merge join's CPU (which read
# the events a second time), and a chunk of a million events holds two strings of 40 MB at most.
# Every entry must be 40 bytes for the strings to line up: a stored hash of another length never passes
# the hash check (``altered``), and a prev_hash of another length is counted (``odd``), so entries can
# neither be skipped (string_agg skips NULLs; a NULL also fails the hash check) nor shifted.
# A window that passes every check is intact; one that does not is scanned again by _PG_WINDOW, which
# names its first bad event. So this pass only ever says "intact" or "look closer": rows delivered in
# another order, or anything else unexpected, cost a second scan, never a wrong answer.
_PG_FAST_CHUNK = f"""
SELECT {{i}} AS chunk, n, altered, odd,
       substring(back FROM 41) = substring(fwd FOR length(fwd) - 40) AS linked,
       substring(back FOR 40) AS head, substring(fwd FROM length(fwd) - 39) AS tail
FROM (SELECT count(*) AS n, count(*) FILTER (WHERE octet_length(e.prev_hash) <> 32) AS odd,
             string_agg(int8send(e.seq) || e.prev_hash, ''::bytea) AS back,
             string_agg(int8send(e.seq + 1) || e.hash, ''::bytea) AS fwd,
             min(e.seq) FILTER (WHERE {_ALTERED_SQL}) AS altered
      FROM audit_events e WHERE e.seq >= :a{{i}} AND e.seq <= :b{{i}}) c
"""
_FAST_CHUNK_MAX = 1_000_000  # events: two strings of 40 MB in one process
_PG_FAST_WINDOW = text("\nUNION ALL\n".join(f"({_PG_FAST_CHUNK.replace('{i}', str(i))})"
                                              for i in range(_PG_CHUNKS)))
# For these queries only (SET LOCAL in a savepoint, see _scan_pg): the link by merge join; no partial
# (parallel) scans inside a chunk, so the parallelism is the Parallel Append of whole chunks; room to
# sort a chunk's (seq, hash) in memory (already in order: the sort only checks it); and no JIT, as
# compiling these expressions (once per chunk) in every worker of every window cost more than it saved
# (measured), and a plan of this cost would otherwise be inlined and optimised, which takes seconds.
_PG_SETTINGS = ("SET LOCAL enable_hashjoin = off", "SET LOCAL enable_nestloop = off", "SET LOCAL jit = off",
                "SET LOCAL min_parallel_index_scan_size = '1TB'", "SET LOCAL min_parallel_table_scan_size = '1TB'",
                "SET LOCAL work_mem = '64MB'")
_PG_BEFORE = text("SELECT max(seq) FROM audit_events WHERE seq >= :lo AND seq < :s")
_PRIORITY = {"missing": 0, "link": 1, "altered": 2}
_MESSAGES = {"missing": "event {} is missing", "link": "event {} does not follow the one before it",
             "altered": "event {} was altered"}


def _scan_pg(session: Session, lo: int, prev: bytes, limit: int | None, step: int,
             progress: Callable[[int], None] | None) -> _Scan:
    # Settings for these queries only: SET LOCAL inside a savepoint that is rolled back at the end (nothing
    # here writes), so the caller's transaction keeps its own.
    savepoint = session.begin_nested()
    try:
        for statement in _PG_SETTINGS:
            session.execute(text(statement))
        return _scan_pg_windows(session, lo, prev, limit, step, progress)
    finally:
        savepoint.rollback()


def _window_intact(session: Session, lo: int, prev: bytes, bounds: dict[str, int]) -> bytes | None:
    """The hash of the window's last event if the first pass finds the whole window intact, else None."""
    rows = sorted(session.execute(_PG_FAST_WINDOW, bounds).all(), key=lambda r: r.chunk)
    entry = lo.to_bytes(8, "big", signed=True) + prev  # what the window's first back entry must be
    for row in rows:
        expected = max(0, bounds[f"b{row.chunk}"] - bounds[f"a{row.chunk}"] + 1)
        if row.n != expected:
            return None
        if not expected:
            continue
        if row.altered is not None or row.odd or row.linked is not True or bytes(row.head) != entry:
            return None
        entry = bytes(row.tail)
    return entry[8:] if len(rows) == _PG_CHUNKS else None


def _scan_pg_windows(session: Session, lo: int, prev: bytes, limit: int | None, step: int,
                     progress: Callable[[int], None] | None) -> _Scan:
    count, last_seq, last_hash = 0, lo - 1, prev
    top = limit if limit is not None else session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc())
                                                         .limit(1)) or 0
    while lo <= top:
        hi = min(lo + step - 1, top)
        size = -(-(hi - lo + 1) // _PG_CHUNKS)  # chunks [a_i, b_i] cover [lo, hi]; the last ones may be empty
        bounds = {}
        for i in range(_PG_CHUNKS):
            bounds[f"a{i}"], bounds[f"b{i}"] = lo + i * size, min(lo + (i + 1) * size - 1, hi)
        intact_to = _window_intact(session, lo, prev, bounds) if size <= _FAST_CHUNK_MAX else None
        if intact_to is not None:
            count, last_seq, prev, lo = count + hi - lo + 1, hi, intact_to, hi + 1
            last_hash = prev
            if progress:
                progress(count)
            continue
        sums = session.execute(_PG_WINDOW, {"lo": lo, "prev": prev, **bounds}).one()
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
        if sums.link_seq is not None:
            if sums.link_seq == sums.gap_seq:
                # The event before it is missing: name the first of the missing run.
                before = session.scalar(_PG_BEFORE, {"lo": lo, "s": sums.link_seq})
                found.append(((before if before is not None else lo - 1) + 1, "missing"))
            else:
                found.append((sums.link_seq, "link"))
        if sums.altered is not None:
            found.append((sums.altered, "altered"))
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
           batch: int = 5000, since_checkpoint: bool = False, pg_step: int = 1_000_000,
           logged: Any = ()) -> VerifyResult:
    """Recompute the chain; name the first bad sequence number.

    Catches edited, deleted, swapped, forged and (with checkpoints, or the head
    row) truncated events. ``public_key`` checks the checkpoint signatures;
    ``logged``: the checkpoints of the log kept outside the database, held to
    the same checks as those in it (a tail cut with its checkpoints still shows).
    """
    from referral.audit.checkpoints import checkpoint_message

    # Checkpoints first, then the head: every checkpoint read was signed at or
    # before this head, so one beyond it is evidence of a cut tail. Events
    # appended while we read are checked next time, not taken for breakage.
    cp_table = AuditCheckpoint.__table__
    stored = session.execute(select(cp_table).order_by(cp_table.c.seq)).all()
    # The same checkpoint in both places counts once; a log entry the database lost, or one that differs
    # from the database's for the same event, is checked like any other.
    merged = {(cp.seq, bytes(cp.hash), cp.ts, bytes(cp.signature)): cp for cp in [*stored, *logged]}
    checkpoints = sorted(merged.values(), key=lambda cp: (cp.seq, cp.ts))
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
            problem = (f"event {newest.seq} differs from its checkpoint" if row is not None else
                       f"a checkpoint vouches for event {newest.seq}, which the chain does not hold")
            return VerifyResult(False, 0, newest.seq, problem, started_at=start)
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
