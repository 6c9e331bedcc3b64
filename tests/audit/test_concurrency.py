"""Concurrent appends from many connections: one unbroken chain, nothing lost, no fork."""
import threading

from sqlalchemy import func, select

from referral.audit.models import AuditEvent
from referral.audit.service import record, verify
from referral.extensions import db
from referral.reference.models import Area

THREADS, PER_THREAD = 8, 15


def test_concurrent_audited_writes_make_one_valid_chain(committed_app):
    errors: list[str] = []
    barrier = threading.Barrier(THREADS)

    def worker(n: int) -> None:
        with committed_app.app_context():
            barrier.wait()
            for i in range(PER_THREAD):
                try:
                    db.session.add(Area(code=f"CC-{n}-{i}", name="concurrent", kind="district"))
                    # One to three events a transaction: PostgreSQL appends them in one statement.
                    for k in range(1 + (n + i) % 3):
                        record(db.session, None, "test.concurrent", object_type="area", object_id=f"CC-{n}-{i}",
                               reason=f"{k}")
                    db.session.commit()
                except Exception as exc:  # pragma: no cover - reported below
                    db.session.rollback()
                    errors.append(f"{type(exc).__name__}: {exc}")
            db.session.remove()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with committed_app.app_context():
        result = verify(db.session)
        assert result.ok, result.problem
        events = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                   .where(AuditEvent.action == "test.concurrent"))
        areas = db.session.scalar(select(func.count()).select_from(Area).where(Area.code.like("CC-%")))
        assert areas == THREADS * PER_THREAD
        assert events == sum(1 + (n + i) % 3 for n in range(THREADS) for i in range(PER_THREAD))
        # A transaction's events are consecutive: no other appender came between them.
        rows = db.session.execute(select(AuditEvent.seq, AuditEvent.object_id, AuditEvent.reason)
                                  .where(AuditEvent.action == "test.concurrent").order_by(AuditEvent.seq)).all()
        for a, b in zip(rows, rows[1:]):
            if b.reason != "0":
                assert (b.seq, b.object_id, int(b.reason)) == (a.seq + 1, a.object_id, int(a.reason) + 1)
        seqs = db.session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        assert seqs == list(range(1, len(seqs) + 1))
        db.session.remove()
