"""Liveness answers whenever the process does; readiness names the check that fails, and nothing else."""
from __future__ import annotations

from flask_migrate import upgrade
from sqlalchemy import text

from referral import create_app
from referral.extensions import db
from tests.conftest import IsolatedClient, app_settings

CHECKS = {"database", "migrations", "keyring"}


def fresh_app(tmp_path, url=None):  # type: ignore[no-untyped-def]
    application = create_app(app_settings(url or "sqlite:///" + str(tmp_path / "fresh.sqlite3"), tmp_path))
    application.test_client_class = IsolatedClient
    return application


def test_ready_when_database_schema_and_keyring_are(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ready", "failing": [],
                               "checks": {"database": "ok", "migrations": "ok", "keyring": "ok"}}
    assert resp.headers["X-Request-ID"]


def test_liveness_does_not_depend_on_the_database(client, unreachable_app):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    resp = unreachable_app.test_client().get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_not_ready_when_the_database_does_not_answer(unreachable_app):
    resp = unreachable_app.test_client().get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body == {"status": "unavailable", "failing": ["database"],
                    "checks": {"database": "unavailable", "migrations": "skipped", "keyring": "ok"}}
    raw = resp.get_data(as_text=True)
    assert "nobody" not in raw and "127.0.0.1" not in raw and "Error" not in raw


def test_migrations_must_be_at_this_codes_head_or_ahead_of_it(tmp_path):
    application = fresh_app(tmp_path)
    client = application.test_client()

    def migrations() -> tuple[int, str]:
        resp = client.get("/readyz")
        return resp.status_code, resp.get_json()["checks"]["migrations"]

    assert migrations() == (503, "not_migrated")  # an empty database
    with application.app_context():
        upgrade(revision="0005")
    assert migrations() == (503, "behind")
    with application.app_context():
        upgrade()
    assert migrations() == (200, "ok")
    with application.app_context():  # a newer release migrated first: old servers stay in rotation
        db.session.execute(text("UPDATE alembic_version SET version_num = 'f00d_from_a_newer_release'"))
        db.session.commit()
    assert migrations() == (200, "ahead")
    with application.app_context():
        db.engine.dispose()


def test_not_ready_when_the_keyring_cannot_be_read(app, database_url, tmp_path):
    application = fresh_app(tmp_path, database_url)
    client = application.test_client()
    assert client.get("/readyz").status_code == 200
    keyring = tmp_path / "keyring.json"
    assert keyring.exists()
    keyring.write_text('{"format": "damaged"')
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["failing"] == ["keyring"] and body["checks"]["keyring"] == "unavailable"
    assert str(tmp_path) not in resp.get_data(as_text=True)
    with application.app_context():
        db.engine.dispose()


def test_production_never_creates_a_keyring_to_look_ready(app, database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("REFERRAL_SECRET_KEY", "s" * 40)
    monkeypatch.setenv("REFERRAL_SMS_SECRET", "g" * 40)
    monkeypatch.setenv("REFERRAL_DATABASE_URL", database_url)
    monkeypatch.setenv("REFERRAL_KEYRING", str(tmp_path / "absent.json"))
    application = create_app({"ENV_NAME": "production", "SQLALCHEMY_DATABASE_URI": database_url})
    resp = application.test_client().get("/readyz", base_url="https://localhost")
    assert resp.status_code == 503 and resp.get_json()["failing"] == ["keyring"]
    assert not (tmp_path / "absent.json").exists()
    with application.app_context():
        db.engine.dispose()
