"""The restore drill (issue 11 item 4) and erasure against backups (item 5), on the suite's database
(SQLite's online backup, or pg_dump/pg_restore on PostgreSQL), with real commits."""
from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import func, select

from referral import create_app
from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.referrals import retention
from referral.referrals.models import Referral, Status
from referral.security.keyring import LocalKeyring
from tests.conftest import IsolatedClient, app_settings, fresh_database
from tests.referrals.helpers import canaries, committed_focal_point, submission

PASSWORD = "backup drill passphrase"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def world(committed_app, tmp_path_factory):
    app = committed_app
    headers = committed_focal_point(app, "BK", PASSWORD)
    client = app.test_client()
    values = [canaries() for _ in range(3)]
    ids = []
    for v in values:
        resp = client.post("/api/v1/referrals", json=submission("BK-D", v), headers=headers)
        assert resp.status_code == 201, resp.get_json()
        ids.append(resp.get_json()["id"])
    ended = ids[0]
    with app.app_context():
        row = db.session.get(Referral, ended)
        row.status, row.closed_at = Status.closed, NOW
        db.session.commit()
        assert retention.apply(db.session, now=NOW)["rewrapped"] == 1  # under its month key now
    backups = tmp_path_factory.mktemp("backups")
    with app.app_context():  # CLI commands run on the app whose context is current (the suite's may be pushed)
        made = app.test_cli_runner().invoke(args=["backup", "create", "--out", str(backups)])
    assert made.exit_code == 0, made.output
    backup = Path(json.loads(made.output)["file"])
    # After the backup: the month is over, so the case is erased and its month key destroyed.
    with app.app_context():
        days = app.config["RETENTION_DAYS"]
        month_end = NOW + dt.timedelta(days=days)
        first_after = dt.datetime(month_end.year + (month_end.month == 12), month_end.month % 12 + 1, 1,
                                  tzinfo=dt.UTC)
        done = retention.apply(db.session, now=first_after)
        assert done["erased_retention"] == 1 and len(done["keys_destroyed"]) == 1
    return {"app": app, "backup": backup, "ids": ids, "ended": ended, "values": values, "tmp": backups}


@pytest.fixture()
def restored(world, tmp_path):
    """A fresh database with the backup restored into it, and an app on it with the live keyring."""
    with fresh_database("restored", tmp_path) as url:
        settings = {**app_settings(url, tmp_path), "KEYRING_PATH": world["app"].config["KEYRING_PATH"]}
        app = create_app(settings)
        app.test_client_class = IsolatedClient
        with app.app_context():
            result = app.test_cli_runner().invoke(args=["backup", "restore", str(world["backup"])])
            assert result.exit_code == 0, result.output
        yield app, url, tmp_path
        with app.app_context():
            db.engine.dispose()


def test_the_backup_file_is_private_and_holds_no_keyring(world):
    backup = world["backup"]
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600 and backup.stat().st_size > 0
    keyring = json.loads(Path(world["app"].config["KEYRING_PATH"]).read_text())
    raw = backup.read_bytes()
    assert keyring["blind_index_key"].encode() not in raw
    assert all(k["key"].encode() not in raw for k in keyring["keks"])
    # and no case content in clear
    assert not any(v.encode() in raw for values in world["values"] for v in values.values())


def test_restore_drill_chain_verifies_and_every_case_opens_but_the_erased_one(world, restored):
    app, _url, _tmp = restored
    runner = app.test_cli_runner()
    with app.app_context():
        verified = runner.invoke(args=["audit", "verify"])
        assert verified.exit_code == 0, verified.output
        check = runner.invoke(args=["keys", "check"])
        assert check.exit_code == 0, check.output
        out = json.loads(check.output)
        # two live cases open; the third was erased after the backup: its month key is gone for good
        assert out["cases"] == 2 and out["erased_by_retention_key"] == 1 and out["failures"] == []
        assert out["fields_opened"] >= 2 * 7
        row = db.session.get(Referral, world["ended"])
        assert row.erased_at is None and row.data_key_wrapped is not None  # the backup still holds the copy...
    from referral.security.keyring import KeyringError

    ring = LocalKeyring(app.config["KEYRING_PATH"], create=False)
    with pytest.raises(KeyringError):  # ...which no key opens any more
        ring.unwrap(bytes(row.data_key_wrapped), row.crypto_context)


def test_a_wrong_or_lost_keyring_is_a_clear_error_and_writes_nothing(world, restored):
    app, url, tmp = restored
    with app.app_context():
        events_before = db.session.scalar(select(func.count()).select_from(AuditEvent))
        db.session.remove()
    other = tmp / "other-keyring.json"
    LocalKeyring(other)  # a valid keyring, but not this database's
    for path, message in ((other, "do not open with the keyring"), (tmp / "missing.json", "not found")):
        wrong = create_app({**app_settings(url, tmp), "KEYRING_PATH": str(path)})
        with wrong.app_context():
            result = wrong.test_cli_runner().invoke(args=["keys", "check"])
            assert result.exit_code == 1 and message in result.output, result.output
            assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == events_before
            db.session.remove()
            db.engine.dispose()
    assert not (tmp / "missing.json").exists()  # a check never creates a keyring


def test_restore_refuses_a_database_that_is_not_empty(world, restored):
    app, _url, _tmp = restored
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["backup", "restore", str(world["backup"])])
        assert result.exit_code == 1 and "not empty" in result.output

