"""Fault injection on PostgreSQL (issue 11 item 3): the database connection dropped mid-request, and app
workers killed with SIGKILL under load. Nothing partial, nothing acknowledged lost, the chain intact.
(A worker killed mid-delivery of the outbox: tests/notify/test_outbox_workers.py.)"""
from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from referral.audit.models import AuditEvent
from referral.audit.service import verify
from referral.extensions import db
from referral.referrals import crypto
from referral.referrals.models import Referral
from referral.services_dir.models import Consent
from tests.referrals.helpers import canaries, committed_focal_point, submission

pytestmark = pytest.mark.postgres
PASSWORD = "fault injection passphrase"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def world(committed_app):
    app = committed_app
    return {"app": app, "headers": committed_focal_point(app, "FI", PASSWORD)}


def counts():
    return (db.session.scalar(select(func.count()).select_from(Referral)),
            db.session.scalar(select(func.count()).select_from(AuditEvent)),
            db.session.scalar(select(func.count()).select_from(Consent)))


def drop_my_connection() -> None:
    """Terminate this session's server connection from another one, as a network cut or a database restart would."""
    pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = create_engine(db.engine.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()


@pytest.mark.parametrize("where", ["after the case row", "at the audit append"])
def test_a_connection_dropped_mid_submit_leaves_nothing_partial(world, monkeypatch, where):
    app = world["app"]
    client = app.test_client()
    with app.app_context():
        before = counts()
    if where == "after the case row":
        from referral.referrals import services as referral_services

        original = referral_services.insert_objects

        def cut(session, *args, **kwargs):  # type: ignore[no-untyped-def]
            written = original(session, *args, **kwargs)  # the case row is written (on PostgreSQL with its
            session.flush()  # consents and steps), or else flushed here
            drop_my_connection()
            return written

        monkeypatch.setattr(referral_services, "insert_objects", cut)
    else:
        from referral.audit import service

        original_append = service._append_batch  # PostgreSQL appends a transaction's events in one statement
        fired = []

        def cut_append(session, batch):  # type: ignore[no-untyped-def]
            if not fired:
                fired.append(True)
                drop_my_connection()
            return original_append(session, batch)

        monkeypatch.setattr(service, "_append_batch", cut_append)
    values = canaries()
    resp = client.post("/api/v1/referrals", json=submission("FI-D", values), headers=world["headers"])
    assert resp.status_code == 500 and resp.get_json()["error"]["code"] == "internal_error"
    assert not any(v in resp.get_data(as_text=True) for v in values.values())
    monkeypatch.undo()
    with app.app_context():
        assert counts() == before  # no case, no consent, no event: the transaction died whole
        assert verify(db.session).ok
    # the pool recovers: the next request works on a fresh connection
    again = client.post("/api/v1/referrals", json=submission("FI-D"), headers=world["headers"])
    assert again.status_code == 201, again.get_json()


def test_a_connection_dropped_during_an_audited_read_answers_500_without_content(world, monkeypatch):
    app = world["app"]
    client = app.test_client()
    values = canaries()
    case_id = client.post("/api/v1/referrals", json=submission("FI-D", values),
                          headers=world["headers"]).get_json()["id"]
    with app.app_context():
        before = counts()
    from referral.audit import service

    original_append = service._append_batch

    def cut_append(session, batch):  # type: ignore[no-untyped-def]
        drop_my_connection()
        return original_append(session, batch)

    monkeypatch.setattr(service, "_append_batch", cut_append)
    resp = client.get(f"/api/v1/referrals/{case_id}", headers=world["headers"])
    monkeypatch.undo()
    # The read could not be audited, so it is not answered: no content leaves without its trace.
    assert resp.status_code == 500
    assert not any(v in resp.get_data(as_text=True) for v in values.values())
    with app.app_context():
        assert counts() == before and verify(db.session).ok


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers(master: subprocess.Popen) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def test_workers_killed_with_sigkill_under_load_lose_no_acknowledged_case(world, tmp_path):
    app = world["app"]
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFERRAL_")}
    env.update({"REFERRAL_ENV": "development", "REFERRAL_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
                "REFERRAL_KEYRING": app.config["KEYRING_PATH"], "REFERRAL_RATELIMIT_ENABLED": "false",
                "REFERRAL_AUDIT_SIGNING_KEY": str(tmp_path / "audit.pem")})
    gunicorn = Path(sys.executable).parent / "gunicorn"
    master = subprocess.Popen([str(gunicorn), "-w", "4", "-b", f"127.0.0.1:{port}", "--log-level", "critical",
                               "--graceful-timeout", "1", "--no-control-socket", "wsgi:app"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("gunicorn did not start")
        acknowledged: list[tuple[str, dict[str, str]]] = []
        failures = {"connection": 0, "5xx": 0, "4xx": 0}
        stop = threading.Event()
        lock = threading.Lock()

        def client_loop() -> None:
            while not stop.is_set():
                values = canaries()
                request = urllib.request.Request(url + "/api/v1/referrals", method="POST",
                                                 data=json.dumps(submission("FI-D", values)).encode(),
                                                 headers={**world["headers"], "Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=20) as resp:
                        body = json.loads(resp.read())
                        with lock:
                            acknowledged.append((body["id"], values))
                except urllib.error.HTTPError as err:
                    with lock:
                        failures["5xx" if err.code >= 500 else "4xx"] += 1
                except (OSError, ValueError, http.client.HTTPException):  # e.g. IncompleteRead, BadStatusLine
                    with lock:
                        failures["connection"] += 1  # the worker died under this request: not acknowledged

        threads = [threading.Thread(target=client_loop) for _ in range(8)]
        for t in threads:
            t.start()
        kills = 0
        rng = random.Random(11)
        for _ in range(12):
            time.sleep(1.0)
            pids = _workers(master)
            if pids:
                os.kill(rng.choice(pids), signal.SIGKILL)
                kills += 1
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        master.send_signal(signal.SIGTERM)
        try:
            master.wait(timeout=15)
        except subprocess.TimeoutExpired:
            master.kill()
    # Correctness, not speed: on a busy machine few requests complete between kills, but some must.
    assert kills >= 10 and len(acknowledged) >= 5, (kills, len(acknowledged), failures)
    assert failures["4xx"] == 0, failures  # a valid submission is never refused, whatever dies
    with app.app_context():
        # every acknowledged case is there and opens, with its own values
        for case_id, values in acknowledged:
            row = db.session.get(Referral, case_id)
            assert row is not None, case_id
            key = crypto.case_key(row)
            assert crypto.open_referral_field(row, key, "survivor.name") == values["survivor.name"]
            assert crypto.open_referral_field(row, key, "incident.narrative") == values["incident.narrative"]
        # no half-written case: every stored case has its key, its creation event and its consents
        since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
        for row in db.session.scalars(select(Referral).where(Referral.created_at >= since)):
            assert row.data_key_wrapped is not None and row.narrative_sealed is not None
            assert all(getattr(row, c) is not None for c in ("survivor_name_sealed", "perpetrator_name_sealed"))
            assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action == "referral.create", AuditEvent.object_id == row.id)) == 1
            assert db.session.scalar(select(func.count()).select_from(Consent).where(Consent.referral_id == row.id))
        assert verify(db.session).ok
