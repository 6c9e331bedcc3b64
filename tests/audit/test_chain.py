"""The hash chain: appends, verify, checkpoints, tampering, append-only protection."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from referral.audit.chain import link_hash, row_payload
from referral.audit.checkpoints import sign_head
from referral.audit.models import GENESIS, AuditEvent, AuditHead
from referral.audit.service import AuditWriteError, record, verify
from referral.extensions import db


def append(n, actor=None):
    for i in range(n):
        record(db.session, actor, "test.event", object_type="referral", object_id=f"case-{i}",
               fields=["survivor.name"], reason=f"event {i}")
    db.session.commit()


def head():
    return db.session.get(AuditHead, 1)


def events():
    return db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()


def base_seq():
    return head().seq


def test_events_chain_from_genesis_and_verify(db_session, make_user):
    officer = make_user("officer")
    start = base_seq()
    append(5, officer)
    rows = events()
    assert [r.seq for r in rows][-5:] == list(range(start + 1, start + 6))
    prev = GENESIS
    for row in rows:
        assert bytes(row.prev_hash) == prev
        assert bytes(row.hash) == link_hash(prev, row.seq, row_payload(row))
        prev = bytes(row.hash)
    assert bytes(head().hash) == prev
    last = rows[-1]
    assert (last.actor_id, last.actor_role, last.action, last.outcome) == (officer.id, "officer", "test.event", "allowed")
    result = verify(db.session)
    assert result.ok and result.count == len(rows)


@pytest.mark.parametrize("sizes", [(1, 2, 3), (16, 17), (40,)])
def test_a_transactions_events_append_in_order_whole_and_linked(db_session, make_user, sizes):
    """PostgreSQL appends a transaction's events in one statement (APPEND_BATCH at most): each event keeps
    its own values and place, and the links run unbroken across statements and transactions."""
    from sqlalchemy import event as sa_event

    from referral.audit.service import APPEND_BATCH

    officer = make_user("officer")
    start = base_seq()
    appends: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if "INSERT INTO audit_events" in statement:
            appends.append(statement)

    sa_event.listen(db.engine, "before_cursor_execute", count)
    try:
        for t, n in enumerate(sizes):
            for i in range(n):
                record(db.session, officer if i % 2 else None, f"test.batch{t}", object_type="referral",
                       object_id=f"case-{t}-{i}", reason=f"event {i} of {n}", fields=[f"f{i}"])
            db.session.commit()
    finally:
        sa_event.remove(db.engine, "before_cursor_execute", count)
    if db.engine.dialect.name == "postgresql":
        assert len(appends) == sum(-(-n // APPEND_BATCH) for n in sizes)
    rows = [r for r in events() if r.seq > start]
    expected = [(f"test.batch{t}", f"case-{t}-{i}", f"event {i} of {n}", f'["f{i}"]', officer.id if i % 2 else None)
                for t, n in enumerate(sizes) for i in range(n)]
    assert [(r.action, r.object_id, r.reason, r.fields, r.actor_id) for r in rows] == expected
    assert [r.seq for r in rows] == list(range(start + 1, start + 1 + len(expected)))
    prev = bytes(db.session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == start))) if start else GENESIS
    for row in rows:
        assert bytes(row.prev_hash) == prev
        assert bytes(row.hash) == link_hash(prev, row.seq, row_payload(row))
        prev = bytes(row.hash)
    assert (head().seq, bytes(head().hash)) == (rows[-1].seq, prev)
    assert verify(db.session).ok


def test_a_long_reason_is_shortened_and_an_overlong_value_is_refused_never_cut_unhashed(db_session):
    """A reason naming many things is shortened before it is hashed; a value longer than its column is
    refused by PostgreSQL (nothing written), never stored cut short under the hash of the whole value."""
    from sqlalchemy.exc import DBAPIError as AnyDBError

    from referral.audit.service import REASON_LENGTH

    start = base_seq()
    record(db.session, None, "test.long", object_type="referral", object_id="case-1", reason="x" * 1000)
    db.session.commit()
    stored = events()[-1]
    assert stored.seq == start + 1 and len(stored.reason) == REASON_LENGTH and stored.reason.endswith("…")
    assert verify(db.session).ok
    if db.engine.dialect.name == "postgresql":
        record(db.session, None, "test.long", object_type="referral", object_id="o" * 65)
        with pytest.raises(AnyDBError):
            db.session.commit()
        db.session.rollback()
        assert base_seq() == start + 1
    assert verify(db.session).ok


def test_events_of_a_rolled_back_transaction_vanish_with_it(db_session):
    start = base_seq()
    record(db.session, None, "test.event")
    db.session.rollback()
    append(1)
    assert base_seq() == start + 1


def test_when_the_audit_write_fails_the_action_fails(db_session, make_user):
    """No audited change can commit without its event."""
    from referral.reference.models import Area

    user = make_user("admin")
    db.session.commit()
    db.session.execute(text("UPDATE audit_head SET id = 2 WHERE id = 1"))  # the head disappears
    db.session.add(Area(code="T-AUDIT-FAIL", name="x", kind="district"))
    record(db.session, user, "test.event")
    with pytest.raises(AuditWriteError):
        db.session.commit()
    db.session.rollback()
    assert db.session.scalar(select(Area).where(Area.code == "T-AUDIT-FAIL")) is None


def test_a_forked_sequence_number_fails_closed(db_session):
    append(1)
    last = events()[-1]
    with pytest.raises(IntegrityError):
        db.session.execute(AuditEvent.__table__.insert().values(
            seq=last.seq, ts=last.ts, action="fork", outcome="allowed", fields="[]",
            prev_hash=bytes(last.prev_hash), hash=bytes(32)))
    db.session.rollback()


# -- tampering: an attacker with database access, triggers switched off ------------

def unprotect():
    if db.session.bind.dialect.name == "postgresql":
        db.session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER ALL"))
        db.session.execute(text("ALTER TABLE audit_checkpoints DISABLE TRIGGER ALL"))
    else:
        for name in ("audit_events_no_update", "audit_events_no_delete", "audit_checkpoints_no_update",
                     "audit_checkpoints_no_delete"):
            db.session.execute(text(f"DROP TRIGGER {name}"))


@pytest.fixture()
def chain(db_session):
    start = base_seq()
    append(10)
    unprotect()
    return start


def bad_seq(**kwargs):
    result = verify(db.session, **kwargs)
    assert not result.ok
    return result.first_bad_seq


def test_an_edited_row_is_caught(chain):
    db.session.execute(text("UPDATE audit_events SET reason = 'nothing to see' WHERE seq = :s"), {"s": chain + 4})
    assert bad_seq() == chain + 4


def test_an_edited_actor_is_caught(chain):
    db.session.execute(text("UPDATE audit_events SET actor_id = 999 WHERE seq = :s"), {"s": chain + 7})
    assert bad_seq() == chain + 7


def test_a_deleted_middle_row_is_caught(chain):
    db.session.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": chain + 5})
    assert bad_seq() == chain + 5


def test_two_swapped_rows_are_caught(chain):
    a, b = chain + 3, chain + 6
    db.session.execute(text("UPDATE audit_events SET seq = -1 WHERE seq = :a"), {"a": a})
    db.session.execute(text("UPDATE audit_events SET seq = :a WHERE seq = :b"), {"a": a, "b": b})
    db.session.execute(text("UPDATE audit_events SET seq = :b WHERE seq = -1"), {"b": b})
    assert bad_seq() == a


def test_a_forged_row_with_a_plausible_hash_is_caught(chain):
    last = events()[-1]
    db.session.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": last.seq})
    # Re-inserted with another reason but the old hashes: the link no longer matches.
    db.session.execute(AuditEvent.__table__.insert().values(
        seq=last.seq, ts=last.ts, action=last.action, outcome="allowed", reason="forged", fields=last.fields,
        object_type=last.object_type, object_id=last.object_id, prev_hash=bytes(last.prev_hash),
        hash=bytes(last.hash)))
    assert bad_seq() == last.seq


def test_a_truncated_tail_after_a_checkpoint_is_caught(chain):
    key = Ed25519PrivateKey.generate()
    sign_head(db.session, key)
    checkpoint_seq = base_seq()
    # The attacker cuts the tail and also rewinds the head row to match.
    tail_start = chain + 8
    prev = db.session.scalar(select(AuditEvent).where(AuditEvent.seq == tail_start - 1))
    db.session.execute(text("DELETE FROM audit_events WHERE seq >= :s"), {"s": tail_start})
    db.session.execute(text("UPDATE audit_head SET seq = :s, hash = :h, prev_hash = :p"),
                       {"s": prev.seq, "h": bytes(prev.hash), "p": bytes(prev.prev_hash)})
    assert checkpoint_seq == chain + 10
    assert bad_seq(public_key=key.public_key()) == tail_start


def test_a_tail_cut_with_its_checkpoints_is_caught_by_the_log_kept_outside_the_database(chain, tmp_path):
    """Someone able to drop the triggers deletes the tail, the checkpoints vouching for it and rewinds the
    head: the database alone then looks whole. The checkpoint log kept with the key still vouches."""
    from referral.audit.checkpoints import append_to_log, read_log

    key = Ed25519PrivateKey.generate()
    log = tmp_path / "audit.checkpoints.jsonl"
    append_to_log(log, sign_head(db.session, key))
    assert verify(db.session, public_key=key.public_key(), logged=read_log(log)).ok
    tail_start = chain + 8
    prev = db.session.scalar(select(AuditEvent).where(AuditEvent.seq == tail_start - 1))
    db.session.execute(text("DELETE FROM audit_events WHERE seq >= :s"), {"s": tail_start})
    db.session.execute(text("DELETE FROM audit_checkpoints"))
    db.session.execute(text("UPDATE audit_head SET seq = :s, hash = :h, prev_hash = :p"),
                       {"s": prev.seq, "h": bytes(prev.hash), "p": bytes(prev.prev_hash)})
    assert verify(db.session, public_key=key.public_key()).ok  # the database alone is fooled
    result = verify(db.session, public_key=key.public_key(), logged=read_log(log))
    assert not result.ok and result.first_bad_seq == tail_start and "checkpoint" in result.problem
    # Incremental runs start from the newest checkpoint, the log's too: that event is gone.
    assert not verify(db.session, public_key=key.public_key(), logged=read_log(log), since_checkpoint=True).ok


def test_a_forged_or_garbled_log_entry_is_not_trusted(chain, tmp_path):
    from referral.audit.checkpoints import CheckpointLogError, append_to_log, read_log

    key, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    log = tmp_path / "audit.checkpoints.jsonl"
    cp = sign_head(db.session, forger)
    db.session.execute(text("DELETE FROM audit_checkpoints"))
    append_to_log(log, cp)
    assert bad_seq(public_key=key.public_key(), logged=read_log(log)) == cp.seq  # not signed with our key
    log.write_text(log.read_text() + "not json\n")
    with pytest.raises(CheckpointLogError, match="line 2"):
        read_log(log)
    assert read_log(tmp_path / "absent.jsonl") == []


def test_a_truncated_tail_without_checkpoint_is_caught_by_the_head(chain):
    db.session.execute(text("DELETE FROM audit_events WHERE seq > :s"), {"s": chain + 6})
    assert bad_seq() == chain + 7


def test_a_bad_checkpoint_signature_is_caught(chain):
    key = Ed25519PrivateKey.generate()
    cp = sign_head(db.session, key)
    assert verify(db.session, public_key=key.public_key()).ok
    assert bad_seq(public_key=Ed25519PrivateKey.generate().public_key()) == cp.seq
    db.session.execute(text("UPDATE audit_checkpoints SET signature = :s WHERE id = :i"),
                       {"s": bytes(64), "i": cp.id})
    assert bad_seq(public_key=key.public_key()) == cp.seq


# -- append-only protection -----------------------------------------------------

@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET reason = 'x'",
    "DELETE FROM audit_events",
])
def test_the_database_refuses_to_change_audit_rows(db_session, statement):
    append(1)
    nested = db.session.begin_nested()
    with pytest.raises(DBAPIError):
        db.session.execute(text(statement))
    nested.rollback()


@pytest.mark.postgres
def test_postgres_refuses_truncate_and_replica_mode_does_not_bypass(db_session):
    append(1)
    for statement in ("TRUNCATE audit_events", "SET LOCAL session_replication_role = replica; DELETE FROM audit_events"):
        nested = db.session.begin_nested()
        with pytest.raises(DBAPIError, match="append-only"):
            for part in statement.split("; "):
                db.session.execute(text(part))
        nested.rollback()


def test_a_failed_savepoint_takes_its_allowed_events_and_keeps_refusals(db_session):
    from referral.audit.service import pending, savepoint

    before = len(pending(db.session))
    with pytest.raises(RuntimeError):
        with savepoint(db.session):
            record(db.session, None, "test.inside", object_type="referral")
            record(db.session, None, "test.refused", object_type="referral", outcome="denied")
            raise RuntimeError("undone")
    assert [e.action for e in pending(db.session)[before:]] == ["test.refused"]
    with savepoint(db.session):
        record(db.session, None, "test.kept", object_type="referral")
    db.session.commit()
    written = set(db.session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("test.%"))))
    assert written == {"test.refused", "test.kept"}
