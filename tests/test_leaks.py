"""Canary strings in every sensitive field never appear in clear anywhere at rest or in output.

After a full scenario (submit, read, add information, bad requests, an integrity
failure), each canary is searched — plain, base64 at every alignment, UTF-16 —
in the database file (SQLite, with any journal or WAL) or a `pg_dump`, in the
application log, in the audit table and in every response that was an error.
"""
from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import text

from referral.accounts.services import NewUser, create_user
from referral.extensions import db
from referral.reference.models import Area, AreaKind, Organisation, OrganisationKind, Unit
from referral.referrals.models import Referral
from tests.referrals.helpers import canaries, submission

PASSWORD = "leak test passphrase"


def encodings(secret: str) -> list[bytes]:
    raw = secret.encode("utf-8")
    forms = [raw, secret.encode("utf-16-le"), secret.encode("utf-16-be")]
    for shift in range(3):  # base64 of the secret at each alignment inside a longer text
        chunk = base64.b64encode(b"\x00" * shift + raw)[4 if shift else 0:-4]
        if len(chunk) >= 8:
            forms.append(chunk)
    return forms


def assert_absent(blob: bytes, secrets_: dict[str, str], where: str) -> None:
    for path, secret in secrets_.items():
        for form in encodings(secret):
            assert form not in blob, f"{path} found in {where} as {form[:20]!r}"


def sign_in(client, email, secret=None):
    body = {"email": email, "password": PASSWORD}
    if secret:
        body["otp"] = pyotp.TOTP(secret).now()
    resp = client.post("/api/v1/auth/tokens", json=body)
    assert resp.status_code == 201, resp.get_json()
    return {"Authorization": f"Bearer {resp.get_json()['token']}"}


def test_no_canary_leaks_anywhere(committed_app, caplog):
    caplog.set_level(logging.DEBUG)
    app = committed_app
    values = canaries()
    errors: list[bytes] = []
    with app.app_context():
        district = Area(code="LK-D", name="Leak district", kind=AreaKind.district)
        db.session.add_all([district, Unit(code="LK-U", name="Leak unit", areas=[district]),
                            Organisation(code="LK-WG", name="Leak group", kind=OrganisationKind.womens_group,
                                         areas=[district])])
        db.session.flush()
        create_user(None, NewUser(email="fp@leak.example", name="FP", role="focal_point", password=PASSWORD,
                                  org="LK-WG"))
        _sup, sup_secret = create_user(None, NewUser(email="sup@leak.example", name="Sup", role="supervisor",
                                                     password=PASSWORD, unit="LK-U"))
        db.session.commit()

    client = app.test_client()
    focal = sign_in(client, "fp@leak.example")
    supervisor = sign_in(client, "sup@leak.example", sup_secret)
    resp = client.post("/api/v1/referrals", json=submission("LK-D", values), headers=focal)
    assert resp.status_code == 201
    case_id = resp.get_json()["id"]
    other = client.post("/api/v1/referrals", json=submission("LK-D"), headers=focal).get_json()["id"]
    note = "CanaryNoteLeak she is staying with her aunt"
    values["note"] = note
    assert client.post(f"/api/v1/referrals/{case_id}/information", json={"text": note}, headers=focal).status_code == 201
    read = client.get(f"/api/v1/referrals/{case_id}", headers=supervisor)
    assert read.status_code == 200 and values["survivor.name"] in read.get_data(as_text=True)

    # Failures that carry canaries in the request must not echo them.
    bad = submission("LK-D", values)
    bad["survivor"]["sex"] = values["survivor.name"]
    bad["survivor"]["phone"] = values["survivor.address"]
    bad[values["perpetrator.name"]] = values["incident.narrative"]
    errors.append(client.post("/api/v1/referrals", json=bad, headers=focal).get_data())
    errors.append(client.post("/api/v1/referrals", data=values["incident.narrative"] + "{",
                              content_type="application/json", headers=focal).get_data())
    errors.append(client.get(f"/api/v1/referrals/{case_id}", headers=focal | {"X-Request-ID": "x"}).get_data())
    # An integrity failure: a ciphertext copied onto another case.
    with app.app_context():
        db.session.execute(text("UPDATE referrals SET narrative_sealed = "
                                "(SELECT narrative_sealed FROM referrals WHERE id = :a) WHERE id = :b"),
                           {"a": case_id, "b": other})
        db.session.commit()
    app.config["PROPAGATE_EXCEPTIONS"] = False
    failure = client.get(f"/api/v1/referrals/{other}", headers=supervisor)
    assert failure.status_code == 500
    errors.append(failure.get_data())

    for i, body in enumerate(errors):
        assert_absent(body, values, f"error response {i}")
    assert_absent(caplog.text.encode("utf-8"), values, "the application log")

    with app.app_context():
        audit_dump = "\n".join(repr(tuple(row)) for row in db.session.execute(text("SELECT * FROM audit_events")))
        assert audit_dump.count("referral.read") >= 2
        assert_absent(audit_dump.encode("utf-8"), values, "the audit table")
        assert db.session.get(Referral, case_id).survivor_name_sealed is not None
        url = db.engine.url
        db.session.remove()
        db.engine.dispose()

    if url.get_backend_name() == "sqlite":
        base = Path(url.database)
        files = [p for p in (base, Path(f"{base}-wal"), Path(f"{base}-journal")) if p.exists()]
        assert files and files[0].stat().st_size > 0
        for path in files:
            assert_absent(path.read_bytes(), values, path.name)
    else:
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            pytest.fail("pg_dump is needed to check the PostgreSQL dump")
        dump = subprocess.run(
            [pg_dump, "--no-owner", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
             "-U", url.username or "postgres", url.database],
            check=True, capture_output=True, env={**os.environ, "PGPASSWORD": url.password or ""}).stdout
        assert b"audit_events" in dump and len(dump) > 10_000
        assert_absent(dump, values, "pg_dump")
