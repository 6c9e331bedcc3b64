"""Several outbox workers side by side, and a worker killed mid-delivery (PostgreSQL, real commits)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from config.settings import PROJECT_ROOT
from referral.extensions import db
from referral.notify.models import Channel, MessageStatus, OutboxMessage
from referral.notify.outbox import deliver, enqueue

pytestmark = pytest.mark.postgres


def fill(app, count: int, template: str = "sms_received") -> list[str]:
    with app.app_context():
        keys = [enqueue(db.session, template, {"reference": f"R-{i:04d}-AAAA"}, channel=Channel.sms,
                        address="+996555000111", language="ky").key for i in range(count)]
        db.session.commit()
        return keys


def test_workers_side_by_side_deliver_each_message_exactly_once(committed_app):
    keys = fill(committed_app, 120)
    delivered: list[str] = []
    lock = threading.Lock()

    class Slow:
        def send(self, key, address, text):
            time.sleep(0.002)  # long enough for the workers to overlap
            with lock:
                delivered.append(key)

    def worker(_i):
        with committed_app.app_context():
            return deliver(db.session, {"sms": Slow(), "email": Slow()})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    mine = [k for k in delivered if k in set(keys)]
    assert sorted(mine) == sorted(keys), "every message once, none twice"
    with committed_app.app_context():
        statuses = set(db.session.scalars(select(OutboxMessage.status).where(OutboxMessage.key.in_(keys))))
        assert statuses == {MessageStatus.sent}


class SlowGateway(BaseHTTPRequestHandler):
    """Honours Idempotency-Key; the first call of a key hangs (the worker is killed while it waits)."""

    delivered: dict = {}
    calls: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.headers["Idempotency-Key"]
        first = key not in SlowGateway.delivered
        SlowGateway.calls.append(key)
        SlowGateway.delivered.setdefault(key, body)
        if first:
            time.sleep(20)
        try:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")
        except OSError:
            pass  # the worker was killed

    def log_message(self, *args):
        pass


def test_a_worker_killed_mid_delivery_loses_nothing_and_sends_once(committed_app):
    SlowGateway.delivered, SlowGateway.calls = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowGateway)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with committed_app.app_context():  # nothing else due: earlier tests delivered theirs
        deliver(db.session, {"sms": _Null(), "email": _Null()})
    [key] = fill(committed_app, 1, "new_offer")
    env = {**os.environ, "REFERRAL_ENV": "testing",
           "REFERRAL_DATABASE_URL": committed_app.config["SQLALCHEMY_DATABASE_URI"],
           "REFERRAL_KEYRING": committed_app.config["KEYRING_PATH"],
           "REFERRAL_SMS_GATEWAY_URL": f"http://127.0.0.1:{server.server_port}/send"}
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "outbox", "deliver", "--once"]
    try:
        worker = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        for _ in range(300):
            if key in SlowGateway.delivered:
                break
            time.sleep(0.05)
        alive = worker.poll() is None
        worker.send_signal(signal.SIGKILL)
        _out, err = worker.communicate(timeout=10)
        assert alive and key in SlowGateway.delivered, err.decode()[-500:]
        with committed_app.app_context():
            row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
            assert row.status is MessageStatus.pending  # not lost, not marked sent
        again = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, timeout=60)
        assert again.returncode == 0, again.stderr.decode()[-500:]
        with committed_app.app_context():
            row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
            assert row.status is MessageStatus.sent
        assert SlowGateway.calls.count(key) == 2 and list(SlowGateway.delivered).count(key) == 1
    finally:
        server.shutdown()
        server.server_close()


class _Null:
    def send(self, key, address, text):
        pass


def test_a_worker_that_failed_unexpectedly_leaves_alone_what_another_worker_sent_meanwhile(committed_app):
    """A bug in one worker's send: it rolls back (freeing the row), another worker sends the message in that
    moment, and the first must not count its failed attempt on the sent message, nor dead-letter it, nor
    count it as sent in its own tally."""
    from referral.notify.outbox import deliver_one

    with committed_app.app_context():
        key = enqueue(db.session, "sms_received", {"reference": "R-AAAA-BBBB"}, channel=Channel.sms,
                      address="+996555000111", language="ky").key
        db.session.commit()
    delivered: list[str] = []

    class Broken:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            raise RuntimeError("a bug in this adapter")

    class Working:
        def send(self, key, address, text):  # type: ignore[no-untyped-def]
            delivered.append(key)

    def other_worker() -> None:
        with committed_app.app_context():
            deliver_one(db.session, {"sms": Working(), "email": Working()})
            db.session.remove()

    with committed_app.app_context():
        rollback, ran = db.session.rollback, []

        def rollback_and_let_the_other_worker_in():  # type: ignore[no-untyped-def]
            rollback()
            if not ran:
                ran.append(True)
                worker = threading.Thread(target=other_worker)
                worker.start()
                worker.join(timeout=60)

        db.session.rollback = rollback_and_let_the_other_worker_in
        try:
            attempt = deliver_one(db.session, {"sms": Broken(), "email": Broken()}, max_attempts=2)
        finally:
            db.session.rollback = rollback
        db.session.expire_all()
        row = db.session.scalar(select(OutboxMessage).where(OutboxMessage.key == key))
        assert delivered == [key] and ran
        assert attempt.outcome == "skipped"  # the other worker counts it: `outbox deliver` tallies it once
        assert (row.status, row.attempts, row.last_error) == (MessageStatus.sent, 1, None) and row.sent_at
        db.session.remove()
