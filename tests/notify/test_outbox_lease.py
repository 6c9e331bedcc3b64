"""The outbox on SQLite (the embedded default): a message is claimed for a while and sent holding no lock.

SQLite has one write lock for the whole database and every transaction here takes it at once
(``BEGIN IMMEDIATE``): a worker that held it while a slow gateway answered stopped every request that writes.
Real commits on a database file of this module's own (``committed_app``).
"""
from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from sqlalchemy import select

from referral.extensions import db
from referral.notify.adapters import DeliveryFailed
from referral.notify.models import Channel, MessageStatus, OutboxMessage
from referral.notify.outbox import SQLITE_LEASE, deliver, deliver_one, enqueue

T0 = dt.datetime(2031, 3, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture()
def app(committed_app):  # type: ignore[no-untyped-def]
    if committed_app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("SQLite only: PostgreSQL keeps the row locked while sending (test_outbox_workers.py)")
    with committed_app.app_context():  # nothing else due: each test starts from an empty queue
        db.session.execute(OutboxMessage.__table__.delete())
        db.session.commit()
    return committed_app


def queue_one(app) -> str:  # type: ignore[no-untyped-def]
    with app.app_context():
        key = enqueue(db.session, "sms_received", {"reference": "R-AAAA-BBBB"}, channel=Channel.sms,
                      address="+996555000111", language="ky", now=T0).key
        db.session.commit()
        return key


def row(app, key: str) -> OutboxMessage:  # type: ignore[no-untyped-def]
    with app.app_context():
        message = db.session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
        db.session.expunge(message)
        return message


def test_the_service_can_write_while_a_gateway_is_slow(app):  # type: ignore[no-untyped-def]
    key = queue_one(app)
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    written = []

    class SlowGateway:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            # Another request writing meanwhile, as the web app would: it must not wait for the gateway.
            other = sqlite3.connect(path, timeout=0.3, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("UPDATE outbox_messages SET language = language WHERE key = ?", (key,))
                other.execute("COMMIT")
                written.append(key)
            finally:
                other.close()

    with app.app_context():
        assert deliver(db.session, {"sms": SlowGateway(), "email": SlowGateway()}, now=T0) == \
            {"sent": 1, "retry": 0, "dead": 0}
    assert written == [key]
    message = row(app, key)
    assert (message.status, message.attempts, message.sent_at) == (MessageStatus.sent, 1, T0)


def test_a_worker_killed_mid_send_leaves_the_message_due_again_when_its_lease_ends(app):  # type: ignore[no-untyped-def]
    key = queue_one(app)

    class Killed(BaseException):
        """Stands for SIGKILL: nothing of the worker runs after it."""

    class Dies:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            raise Killed

    with app.app_context(), pytest.raises(Killed):
        deliver_one(db.session, {"sms": Dies(), "email": Dies()}, now=T0)
    message = row(app, key)
    assert (message.status, message.attempts, message.next_attempt_at) == (MessageStatus.pending, 1, T0 + SQLITE_LEASE)
    sent = []

    class Works:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            sent.append(key)

    with app.app_context():
        assert deliver_one(db.session, {"sms": Works(), "email": Works()}, now=T0 + SQLITE_LEASE / 2) is None
        assert sent == []  # still claimed
        attempt = deliver_one(db.session, {"sms": Works(), "email": Works()}, now=T0 + SQLITE_LEASE)
        assert attempt is not None and attempt.outcome == "sent"
    assert sent == [key]  # sent again with the same key: the gateway drops a copy it already has
    message = row(app, key)
    assert (message.status, message.attempts) == (MessageStatus.sent, 2)


@pytest.mark.parametrize("theirs", ["sent", "retry"])
def test_a_send_that_outlived_its_lease_leaves_the_other_workers_outcome_alone(app, theirs):  # type: ignore[no-untyped-def]
    key = queue_one(app)
    later = T0 + SQLITE_LEASE + dt.timedelta(seconds=1)
    others: list[dict[str, int]] = []

    class Other:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            if theirs == "retry":
                raise DeliveryFailed("their gateway answered 503")

    class Stuck:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            # While this send hangs past the lease, another worker takes the message and tries it.
            with app.app_context():
                others.append(deliver(db.session, {"sms": Other(), "email": Other()}, now=later))
            raise DeliveryFailed("timed out")

    with app.app_context():
        counts = deliver(db.session, {"sms": Stuck(), "email": Stuck()}, now=T0)
    assert others == [{"sent": 0, "retry": 0, "dead": 0, theirs: 1}]
    assert counts == {"sent": 0, "retry": 0, "dead": 0}  # theirs to count, not counted twice
    message = row(app, key)
    if theirs == "sent":
        assert (message.status, message.attempts, message.sent_at, message.last_error) == \
            (MessageStatus.sent, 2, later, None)
    else:  # their failure and their next try stand, not this worker's stale ones
        assert (message.status, message.attempts, message.last_error, message.next_attempt_at) == \
            (MessageStatus.pending, 2, "their gateway answered 503", later + dt.timedelta(seconds=120))


@pytest.mark.parametrize("failure, error", [(DeliveryFailed("gateway answered 503"), "gateway answered 503"),
                                            (RuntimeError("CanarySurvivorName"), "unexpected RuntimeError")])
def test_a_failed_send_is_tried_again_after_the_backoff_not_the_lease(app, failure, error):  # type: ignore[no-untyped-def]
    key = queue_one(app)

    class Fails:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            raise failure

    with app.app_context():
        assert deliver(db.session, {"sms": Fails(), "email": Fails()}, now=T0) == {"sent": 0, "retry": 1, "dead": 0}
    message = row(app, key)
    assert (message.status, message.attempts, message.last_error) == (MessageStatus.pending, 1, error)
    assert message.next_attempt_at == T0 + dt.timedelta(seconds=30)


def test_a_late_success_is_recorded_even_after_another_worker_took_the_message(app):  # type: ignore[no-untyped-def]
    """The other worker's try failed while this one's slow send got through: the message was sent, and must
    not go out a third time."""
    key = queue_one(app)
    later = T0 + SQLITE_LEASE + dt.timedelta(seconds=1)
    others: list[dict[str, int]] = []

    class Fails:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            raise DeliveryFailed("their gateway answered 503")

    class SlowButSent:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            with app.app_context():
                others.append(deliver(db.session, {"sms": Fails(), "email": Fails()}, now=later))

    with app.app_context():
        counts = deliver(db.session, {"sms": SlowButSent(), "email": SlowButSent()}, now=T0)
    assert others == [{"sent": 0, "retry": 1, "dead": 0}] and counts == {"sent": 1, "retry": 0, "dead": 0}
    message = row(app, key)
    assert (message.status, message.last_error) == (MessageStatus.sent, None) and message.sent_at >= T0


def test_no_transaction_is_left_open_after_a_delivery(app):  # type: ignore[no-untyped-def]
    queue_one(app)
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")

    class Works:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            pass

    with app.app_context():
        attempt = deliver_one(db.session, {"sms": Works(), "email": Works()}, now=T0)
        assert attempt is not None and attempt.outcome == "sent"
        other = sqlite3.connect(path, timeout=0.3, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" if the worker still held the write lock
            other.execute("COMMIT")
        finally:
            other.close()
