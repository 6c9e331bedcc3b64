"""Text rewritten so that it spells out the canonical (escaped) payload of the original, and tampering that
meets the other checks in one window: caught on both paths, with the same first bad sequence number.

On PostgreSQL the hash check first tries a payload built without JSON escaping and falls back to the
exact one; these rows are the ones such a shortcut could be fooled by.
"""
import datetime as dt

import pytest
from sqlalchemy import select, text

from referral.audit.chain import row_payload
from referral.audit.models import GENESIS, AuditEvent
from referral.audit.service import record, verify
from referral.extensions import db
from tests.audit.test_chain import append, base_seq, unprotect


def _one(reason, **kwargs):
    record(db.session, None, "test.text", object_type="referral", object_id="case-1", reason=reason,
           fields=["survivor.name"], **kwargs)
    db.session.commit()
    return base_seq()


@pytest.mark.parametrize("original, rewritten", [
    ('he said "no"', 'he said \\"no\\"'),            # the escaped quotes, written out literally
    ("line\nbreak", "line\\nbreak"),                   # an escaped newline, written out
    ("tab\there", "tab\\there"),
    ("control \x01 char", "control \\u0001 char"),
    ("back\\slash", "back\\\\slash"),
    ("Кыргызча \u2028", "Кыргызча \\u2028"),           # not escaped by JSON: the rewrite adds a backslash
])
def test_text_that_spells_out_the_escaped_original_is_caught(db_session, original, rewritten):
    append(2)
    seq = _one(original)
    append(2)
    assert verify(db.session).ok
    unprotect()
    db.session.execute(text("UPDATE audit_events SET reason = :r WHERE seq = :s"), {"r": rewritten, "s": seq})
    result = verify(db.session)
    assert not result.ok and result.first_bad_seq == seq and "altered" in result.problem


@pytest.mark.parametrize("changes", [
    # A value that carries the next key and value, and that key's own value dropped.
    {"object_id": 'case-1","object_type":"referral', "object_type": None},
    # A quote inside a value, no backslash anywhere.
    {"reason": 'event "1"'},
    # The JSON of the fields list moved around.
    {"fields": '["survivor.name"],"object_id":"case-1"'},
    {"fields": '["survivor.name" ]'},
    # A raw control character where the original had none.
    {"reason": "event\n1"},
])
def test_values_that_move_text_across_keys_are_caught(db_session, changes):
    append(2)
    seq = _one("event 1")
    append(1)
    unprotect()
    sets = ", ".join(f"{column} = :{column}" for column in changes)
    db.session.execute(text(f"UPDATE audit_events SET {sets} WHERE seq = :s"), {**changes, "s": seq})
    result = verify(db.session)
    assert not result.ok and result.first_bad_seq == seq


@pytest.mark.postgres  # a BC time exists on PostgreSQL only
def test_the_same_time_in_another_era_is_caught(db_session):
    append(2)
    seq = _one("event 1", now=dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC))
    append(1)
    assert verify(db.session).ok
    unprotect()
    db.session.execute(text("UPDATE audit_events SET ts = '2026-01-02 03:04:05.000006+00 BC' WHERE seq = :s"),
                       {"s": seq})
    result = verify(db.session)
    assert not result.ok and result.first_bad_seq == seq


@pytest.mark.postgres
def test_the_unescaped_payload_sql_matches_python_for_plain_events(db_session):
    """The shortcut payload equals chain.payload byte for byte for every event without escapes (NULLs
    in every nullable column included), so honest events never need the slow path."""
    from referral.audit.verify import _FAST_PAYLOAD_SQL

    start = base_seq()
    variants = [dict(object_type=None, object_id=None, reason=None), dict(object_type="referral", object_id="c-1"),
                dict(reason="", fields=[]), dict(reason="Кыргызча өңү 🙂", fields=["b", "a"])]
    for i, kwargs in enumerate(variants):
        kwargs.setdefault("fields", ["survivor.name"])
        record(db.session, None, f"test.plain.{i}", now=dt.datetime(2026, 1, 2, 3, 4, 5, i * 10, tzinfo=dt.UTC),
               **kwargs)
    db.session.commit()
    rows = db.session.execute(select(AuditEvent.__table__).where(AuditEvent.seq > start)
                              .order_by(AuditEvent.seq)).all()
    fast = db.session.execute(text(f"SELECT convert_to({_FAST_PAYLOAD_SQL}, 'UTF8') FROM audit_events "
                                   "WHERE seq > :s ORDER BY seq"), {"s": start}).scalars().all()
    assert [bytes(f) for f in fast] == [row_payload(r) for r in rows]


@pytest.mark.parametrize("step", [3, 16, 1_000_000])  # 16: PostgreSQL cuts a window into 8 chunks of 2
def test_a_broken_link_before_a_gap_is_named_first(db_session, step):
    start = base_seq()
    append(12)
    unprotect()
    db.session.execute(text("UPDATE audit_events SET prev_hash = :h WHERE seq = :s"),
                       {"h": b"\x01" * 32, "s": start + 5})
    db.session.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": start + 9})
    result = verify(db.session, pg_step=step)
    assert not result.ok and result.first_bad_seq == start + 5 and "follow" in result.problem
    assert result.count == start + 4


@pytest.mark.parametrize("step", [3, 16, 1_000_000])
def test_a_gap_before_an_altered_event_is_named_first(db_session, step):
    start = base_seq()
    append(12)
    unprotect()
    db.session.execute(text("DELETE FROM audit_events WHERE seq BETWEEN :a AND :b"), {"a": start + 3, "b": start + 4})
    db.session.execute(text("UPDATE audit_events SET reason = 'x' WHERE seq = :s"), {"s": start + 8})
    result = verify(db.session, pg_step=step)
    assert not result.ok and result.first_bad_seq == start + 3 and "missing" in result.problem


@pytest.mark.parametrize("where", ["first of a window", "inside a window", "last of a window"])
def test_a_broken_link_is_found_at_and_across_window_edges(db_session, where):
    start = base_seq()
    append(9)
    unprotect()
    first = start + 1 + (-start) % 3  # windows of 3 start at 1, 4, 7, ...
    target = {"first of a window": first, "inside a window": first + 1, "last of a window": first + 2}[where]
    db.session.execute(text("UPDATE audit_events SET prev_hash = :h WHERE seq = :s"),
                       {"h": b"\x01" * 32, "s": target})
    for step in (3, 16, 24, 1_000_000):  # windows of 3; chunks of 2 and 3 inside windows of 16 and 24
        result = verify(db.session, pg_step=step)
        assert not result.ok and result.first_bad_seq == target and "follow" in result.problem


def test_a_hash_recomputed_over_unescaped_text_is_still_caught(db_session):
    """An attacker who rewrites an event and recomputes its hash over unescaped JSON (a raw quote) breaks
    the next event's link. Python names the rewritten event; PostgreSQL's cheap payload matches such a
    hash, so there the next event is named (see referral.audit.verify). Either way the run fails there."""
    from referral.audit.chain import link_hash

    def q(value):
        return "null" if value is None else f'"{value}"'

    append(2)
    seq = _one("event 1")
    append(2)
    unprotect()
    row = db.session.execute(select(AuditEvent.__table__).where(AuditEvent.seq == seq)).one()
    reason = 'a "rewritten" reason'
    body = ('{"action":%s,"actor_id":%s,"actor_role":%s,"fields":%s,"object_id":%s,"object_type":%s,"outcome":%s,'
            '"reason":%s,"request_id":%s,"source_ip":%s,"ts":"%s"}') % (
        q(row.action), "null" if row.actor_id is None else row.actor_id, q(row.actor_role), row.fields,
        q(row.object_id), q(row.object_type), q(row.outcome), q(reason), q(row.request_id), q(row.source_ip),
        row.ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    forged = link_hash(bytes(row.prev_hash), seq, body.encode())
    db.session.execute(text("UPDATE audit_events SET reason = :r, hash = :h WHERE seq = :s"),
                       {"r": reason, "h": forged, "s": seq})
    result = verify(db.session)
    assert not result.ok and result.first_bad_seq in (seq, seq + 1)


@pytest.mark.postgres
def test_random_damage_is_named_alike_by_sql_and_by_the_python_walk(db_session):
    """The SQL scan against the Python walk on the same PostgreSQL rows, for random damage (deleted runs,
    edits, broken links, swaps, several at once) and window sizes that cut it in different places."""
    import random

    from referral.audit.verify import _scan_pg, _scan_python

    append(40)
    top = base_seq()
    unprotect()
    rng = random.Random(10)
    kinds = ("delete", "delete run", "edit", "link", "hash", "swap")
    for scenario in range(40):
        savepoint = db.session.begin_nested()
        for _ in range(rng.randint(1, 3)):
            s = rng.randint(top - 39, top)
            kind = rng.choice(kinds)
            if kind == "delete":
                db.session.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": s})
            elif kind == "delete run":
                db.session.execute(text("DELETE FROM audit_events WHERE seq BETWEEN :s AND :t"),
                                   {"s": s, "t": s + rng.randint(1, 7)})
            elif kind == "edit":
                db.session.execute(text("UPDATE audit_events SET reason = 'edited' WHERE seq = :s"), {"s": s})
            elif kind == "link":
                db.session.execute(text("UPDATE audit_events SET prev_hash = :h WHERE seq = :s"),
                                   {"h": rng.randbytes(32), "s": s})
            elif kind == "hash":
                db.session.execute(text("UPDATE audit_events SET hash = :h WHERE seq = :s"),
                                   {"h": rng.randbytes(32), "s": s})
            else:
                t = rng.randint(top - 39, top)
                if t != s:
                    db.session.execute(text("UPDATE audit_events SET seq = -seq WHERE seq IN (:s, :t)"),
                                       {"s": s, "t": t})
                    db.session.execute(text("UPDATE audit_events SET seq = CASE WHEN seq = -:s THEN :t ELSE :s END "
                                            "WHERE seq IN (-:s, -:t)"), {"s": s, "t": t})
        walked = _scan_python(db.session, 1, GENESIS, top, 7, None)
        for step in (3, 16, 1_000_000):
            scanned = _scan_pg(db.session, 1, GENESIS, top, step, None)
            assert (scanned.ok, scanned.bad_seq, scanned.count) == (walked.ok, walked.bad_seq, walked.count), \
                (scenario, step, scanned, walked)
            for word in ("missing", "follow", "altered"):
                assert (word in (scanned.problem or "")) == (word in (walked.problem or "")), (scenario, step)
        savepoint.rollback()
