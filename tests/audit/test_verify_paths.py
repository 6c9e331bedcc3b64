"""The two ways of verifying (SQL inside PostgreSQL, Python elsewhere) agree, in windows and incrementally."""
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from referral.audit.checkpoints import sign_head
from referral.audit.service import record, verify
from referral.extensions import db
from tests.audit.test_chain import append, base_seq, unprotect

AWKWARD = ['quote " and backslash \\ and slash /', "new\nline\ttab\rreturn", "control \x01\x1f and \x7f",
           "Кыргызча өңү, тоҷикӣ ҳқҷғ, oʻzbekcha", "emoji 🙂 and \u2028 separator", "", None]


def test_awkward_text_hashes_the_same_in_sql_and_python(db_session):
    start = base_seq()
    for i, reason in enumerate(AWKWARD):
        record(db.session, None, "test.awkward", object_type=None if reason is None else "referral",
               object_id=None if i % 2 else f"id-{i}", reason=reason, fields=["survivor.name", "incident.narrative"])
    db.session.commit()
    result = verify(db.session)
    assert result.ok, result.problem
    assert result.count == start + len(AWKWARD)
    unprotect()
    db.session.execute(text("UPDATE audit_events SET reason = :r WHERE seq = :s"),
                       {"r": 'quote " and backslash \\ and slash  /', "s": start + 1})
    bad = verify(db.session)
    assert not bad.ok and bad.first_bad_seq == start + 1


@pytest.mark.parametrize("where", ["first window", "second window", "window edge"])
def test_small_windows_find_the_same_first_bad_event(db_session, where):
    start = base_seq()
    append(10)
    assert verify(db.session, pg_step=3).ok
    unprotect()
    target = {"first window": start + 2, "second window": start + 5, "window edge": start + 4}[where]
    db.session.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": target})
    result = verify(db.session, pg_step=3)
    assert not result.ok and result.first_bad_seq == target and "missing" in result.problem
    assert result.count == target - 1


def test_incremental_verification_starts_at_the_newest_signed_checkpoint(db_session):
    key = Ed25519PrivateKey.generate()
    append(5)
    checkpoint = sign_head(db.session, key)
    db.session.commit()
    append(4)
    whole = verify(db.session, public_key=key.public_key())
    since = verify(db.session, public_key=key.public_key(), since_checkpoint=True)
    assert whole.ok and since.ok and since.count == 4 and since.started_at == checkpoint.seq + 1
    unprotect()
    # Before the checkpoint: only the full run sees it (that is what incremental means).
    db.session.execute(text("UPDATE audit_events SET reason = 'x' WHERE seq = :s"), {"s": checkpoint.seq - 1})
    assert verify(db.session, public_key=key.public_key(), since_checkpoint=True).ok
    assert verify(db.session, public_key=key.public_key()).first_bad_seq == checkpoint.seq - 1
    # After it: both do.
    db.session.execute(text("UPDATE audit_events SET reason = 'y' WHERE seq = :s"), {"s": checkpoint.seq + 2})
    assert verify(db.session, public_key=key.public_key(), since_checkpoint=True).first_bad_seq == checkpoint.seq + 2
    # The event the checkpoint vouches for, altered: incremental refuses to start from it.
    db.session.execute(text("UPDATE audit_events SET hash = :h WHERE seq = :s"), {"h": bytes(32), "s": checkpoint.seq})
    assert verify(db.session, public_key=key.public_key(), since_checkpoint=True).first_bad_seq == checkpoint.seq


def test_times_keep_their_microseconds_across_both_paths(db_session):
    for micro in (0, 1, 999999):
        record(db.session, None, "test.time", now=dt.datetime(2026, 1, 2, 3, 4, 5, micro, tzinfo=dt.UTC))
    db.session.commit()
    assert verify(db.session).ok


@pytest.mark.parametrize("step", [3, 1_000_000])
def test_a_gap_of_several_rows_names_its_first_missing_event(db_session, step):
    start = base_seq()
    append(12)
    unprotect()
    db.session.execute(text("DELETE FROM audit_events WHERE seq BETWEEN :a AND :b"), {"a": start + 4, "b": start + 8})
    result = verify(db.session, pg_step=step)
    assert not result.ok and result.first_bad_seq == start + 4


def test_a_window_wide_gap_is_found_even_without_the_head_row(db_session):
    start = base_seq()
    append(12)
    unprotect()
    db.session.execute(text("DELETE FROM audit_events WHERE seq BETWEEN :a AND :b"), {"a": start + 4, "b": start + 9})
    db.session.execute(text("UPDATE audit_head SET id = 2"))
    result = verify(db.session, pg_step=3)
    assert not result.ok and result.first_bad_seq == start + 4


@pytest.mark.postgres  # an 'infinity' time exists on PostgreSQL only
def test_a_rewrite_that_makes_the_payload_null_is_caught(db_session):
    start = base_seq()
    append(5)
    unprotect()
    db.session.execute(text("UPDATE audit_events SET ts = 'infinity', reason = 'rewritten' WHERE seq = :s"),
                       {"s": start + 3})
    result = verify(db.session)
    assert not result.ok and result.first_bad_seq == start + 3


def test_reformatted_fields_text_is_caught_on_both_paths(db_session):
    start = base_seq()
    append(4)
    unprotect()
    db.session.execute(text("UPDATE audit_events SET fields = :f WHERE seq = :s"),
                       {"f": '[ "survivor.name" ]', "s": start + 2})
    assert verify(db.session).first_bad_seq == start + 2


def test_incremental_verification_recomputes_the_checkpointed_event(db_session):
    key = Ed25519PrivateKey.generate()
    append(3)
    checkpoint = sign_head(db.session, key)
    db.session.commit()
    append(2)
    unprotect()
    db.session.execute(text("UPDATE audit_events SET reason = 'edited' WHERE seq = :s"), {"s": checkpoint.seq})
    result = verify(db.session, public_key=key.public_key(), since_checkpoint=True)
    assert not result.ok and result.first_bad_seq == checkpoint.seq


def _windows(lo, hi, step):
    """The windows and chunk bounds _scan_pg_windows cuts [lo, hi] into."""
    from referral.audit.verify import _PG_CHUNKS

    while lo <= hi:
        top = min(lo + step - 1, hi)
        size = -(-(top - lo + 1) // _PG_CHUNKS)
        yield lo, {k: v for i in range(_PG_CHUNKS)
                   for k, v in ((f"a{i}", lo + i * size), (f"b{i}", min(lo + (i + 1) * size - 1, top)))}
        lo = top + 1


@pytest.mark.postgres
@pytest.mark.parametrize("step", [1, 3, 8, 9, 17, 1_000_000])
def test_the_first_pass_vouches_for_an_intact_chain_and_for_nothing_else(db_session, step):
    """The join-free first pass says "intact" for every window of a good chain (so verifying one needs no
    second scan) and hands the window to the exact scan for every kind of damage."""
    import random

    from sqlalchemy import select

    from referral.audit.chain import link_hash, row_payload
    from referral.audit.models import GENESIS, AuditEvent
    from referral.audit.verify import _window_intact

    append(30)
    top = base_seq()
    hashes = dict(db.session.execute(select(AuditEvent.seq, AuditEvent.hash)).all())

    def passes():
        prev, verdicts = GENESIS, []
        for lo, bounds in _windows(1, top, step):
            last = _window_intact(db.session, lo, prev, bounds)
            verdicts.append(last is not None)
            prev = bytes(hashes[min(lo + step - 1, top)])  # carry on from the true hash, as if it had passed
            if last is not None:
                assert last == prev
        return verdicts

    assert all(passes())
    unprotect()
    rng = random.Random(step)
    damage = {
        "delete": "DELETE FROM audit_events WHERE seq = :s",
        "edit": "UPDATE audit_events SET reason = 'edited' WHERE seq = :s",
        "link": "UPDATE audit_events SET prev_hash = sha256(prev_hash) WHERE seq = :s",
        "hash": "UPDATE audit_events SET hash = sha256(hash) WHERE seq = :s",
        # A hole closed up: every later event moved one place down, their hashes untouched.
        "renumber": "UPDATE audit_events SET seq = seq - 1 WHERE seq > :s",
        # An event that names a forged predecessor, its own hash recomputed to match: it verifies alone,
        # only the links before and after it are broken.
        "rehash": "UPDATE audit_events SET prev_hash = sha256(prev_hash) WHERE seq = :s",
        # The same with a predecessor's hash of 33 bytes, which would shift every later entry of the strings.
        "long link": "UPDATE audit_events SET prev_hash = prev_hash || '\\x00'::bytea WHERE seq = :s",
        # Two neighbours swapped, each keeping its own hashes.
        "swap": "UPDATE audit_events SET seq = CASE WHEN seq = :s THEN :s + 1 ELSE :s END WHERE seq IN (:s, :s + 1)",
    }
    for kind, statement in damage.items():
        for s in {1, 2, 3, top // 2, top // 2 + 1, top - 1, rng.randint(2, top - 2)}:
            savepoint = db.session.begin_nested()
            if kind in ("renumber", "swap"):
                db.session.execute(text("ALTER TABLE audit_events DROP CONSTRAINT pk_audit_events"))
            if kind == "renumber":
                db.session.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": s})
            db.session.execute(text(statement), {"s": s})
            if kind in ("rehash", "long link"):
                row = db.session.execute(select(AuditEvent.__table__).where(AuditEvent.seq == s)).one()
                db.session.execute(text("UPDATE audit_events SET hash = :h WHERE seq = :s"),
                                   {"h": link_hash(bytes(row.prev_hash), s, row_payload(row)), "s": s})
            if kind in ("renumber", "swap"):
                db.session.execute(text("ALTER TABLE audit_events ADD CONSTRAINT pk_audit_events PRIMARY KEY (seq)"))
            verdicts = passes()
            assert not all(verdicts), (kind, s)
            savepoint.rollback()
