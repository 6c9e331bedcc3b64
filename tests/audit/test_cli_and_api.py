"""`keys status|rotate|retire`, `audit verify|checkpoint` and GET /api/v1/audit/verify."""
import json

import pytest
from sqlalchemy import select, text

from referral.accounts.auth import totp_secret
from referral.extensions import db
from referral.referrals.models import Referral
from tests.referrals.helpers import canaries, submission


@pytest.fixture()
def cases(client, place, people):
    _focal, headers = people["focal"]
    made = []
    for _ in range(3):
        values = canaries()
        resp = client.post("/api/v1/referrals", json=submission(place["district"].code, values), headers=headers)
        made.append((resp.get_json()["id"], values))
    return made


def test_keys_status_counts_case_keys_per_version(runner, cases, isolated_keyring):
    out = json.loads(runner.invoke(args=["keys", "status"]).output)
    assert out["active_version"] == 1
    assert out["keks"][0]["case_keys"] >= 3 and out["keks"][0]["state"] == "active"
    assert "key" not in json.dumps(out["keks"]).replace("case_keys", "")


def test_rotation_rewraps_every_case_key_and_everything_still_reads(runner, client, cases, people,
                                                                     isolated_keyring, make_user):
    officer = make_user("officer")
    secret_before = totp_secret(officer)
    db.session.commit()
    result = runner.invoke(args=["keys", "rotate", "--batch", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["kek_version"] == 2 and summary["cases_rewrapped"] >= 3
    assert "rewrapped 2/" in result.output  # progress shown per batch
    versions = {v for (v,) in db.session.execute(select(Referral.kek_version).where(Referral.kek_version.is_not(None)))}
    assert versions == {2}
    _sup, sup_h = people["supervisor"]
    for case_id, values in cases:
        body = client.get(f"/api/v1/referrals/{case_id}", headers=sup_h).get_json()
        assert body["survivor"]["name"] == values["survivor.name"]
    db.session.expire_all()
    assert totp_secret(officer) == secret_before
    status = json.loads(runner.invoke(args=["keys", "status"]).output)
    assert [(k["version"], k["state"]) for k in status["keks"]] == [(1, "decrypt_only"), (2, "active")]
    # Nothing is wrapped under version 1 any more, so it can be retired, and reads still work.
    retired = runner.invoke(args=["keys", "retire", "1"])
    assert retired.exit_code == 0, retired.output
    body = client.get(f"/api/v1/referrals/{cases[0][0]}", headers=sup_h).get_json()
    assert body["survivor"]["name"] == cases[0][1]["survivor.name"]


def test_retiring_a_kek_still_in_use_is_refused(runner, cases, isolated_keyring):
    runner.invoke(args=["keys", "rotate"])
    db.session.execute(text("UPDATE referrals SET kek_version = 1 WHERE id = :i"), {"i": cases[0][0]})
    result = runner.invoke(args=["keys", "retire", "1"])
    assert result.exit_code == 1 and "still wrapped" in result.output


def test_audit_verify_and_checkpoint_commands(runner, app, cases, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "AUDIT_SIGNING_KEY_PATH", str(tmp_path / "signing.pem"))
    monkeypatch.setitem(app.config, "AUDIT_CHECKPOINT_LOG", None)  # the default: beside the key
    cp = runner.invoke(args=["audit", "checkpoint"])
    assert cp.exit_code == 0, cp.output
    assert (tmp_path / "signing.pem").stat().st_mode & 0o077 == 0
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0 and ok.stdout.startswith("ok: ") and "1 checkpoints" in ok.output
    seq = json.loads(cp.output)["seq"]
    log = tmp_path / "signing.pem.checkpoints.jsonl"  # beside the key, outside the database
    assert [json.loads(line)["seq"] for line in log.read_text().splitlines()] == [seq]
    assert log.stat().st_mode & 0o077 == 0
    if db.session.bind.dialect.name == "postgresql":
        db.session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER ALL"))
    else:
        db.session.execute(text("DROP TRIGGER audit_events_no_update"))
    db.session.execute(text("UPDATE audit_events SET outcome = 'denied' WHERE seq = :s"), {"s": seq - 1})
    bad = runner.invoke(args=["audit", "verify"])
    assert bad.exit_code == 1
    assert f"FAILED at sequence {seq - 1}" in bad.output


def test_verify_api_is_for_oversight_and_is_audited(client, app, login_as, cases, tmp_path, monkeypatch):
    _auditor, headers = login_as("oversight")
    resp = client.get("/api/v1/audit/verify", headers=headers)
    assert resp.status_code == 200
    assert resp.get_json()["ok"] is True and resp.get_json()["count"] > 0
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_text("{not json\n")
    monkeypatch.setitem(app.config, "AUDIT_CHECKPOINT_LOG", str(garbled))
    failed = client.get("/api/v1/audit/verify", headers=headers).get_json()
    assert failed["ok"] is False and "checkpoint log" in failed["problem"] and str(tmp_path) not in failed["problem"]
    for role in ("officer", "supervisor", "admin", "focal_point", "service_provider"):
        _user, other = login_as(role)
        assert client.get("/api/v1/audit/verify", headers=other).status_code == 403


def test_audit_verify_since_checkpoint(runner, app, cases, tmp_path, monkeypatch):
    monkeypatch.setitem(app.config, "AUDIT_SIGNING_KEY_PATH", str(tmp_path / "missing.pem"))
    monkeypatch.setitem(app.config, "AUDIT_CHECKPOINT_LOG", str(tmp_path / "checkpoints.jsonl"))  # this test's own
    refused = runner.invoke(args=["audit", "verify", "--since-checkpoint"])
    assert refused.exit_code == 2 and "signing key" in refused.output
    monkeypatch.setitem(app.config, "AUDIT_SIGNING_KEY_PATH", str(tmp_path / "signing.pem"))
    seq = json.loads(runner.invoke(args=["audit", "checkpoint"]).output)["seq"]
    from referral.audit.service import record

    record(db.session, None, "test.after", object_type="referral")
    db.session.commit()
    ok = runner.invoke(args=["audit", "verify", "--since-checkpoint"])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("ok: 1 events from sequence ") and f"from sequence {seq + 1}" in ok.stdout
