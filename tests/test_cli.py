"""CLI contracts of SPEC §11: users create, training record, demo seed."""
import datetime as dt
import json

import pyotp
import pytest
from sqlalchemy import select

from config.settings import PROJECT_ROOT
from referral.accounts.models import Role, User
from referral.extensions import db
from referral.standards.models import Certification

DEMO = str(PROJECT_ROOT / "config" / "reference" / "demo.yaml")


@pytest.fixture()
def reference(runner):
    assert runner.invoke(args=["reference", "load", DEMO]).exit_code == 0


def create(runner, *args, password="a long enough pass"):
    return runner.invoke(args=["users", "create", *args, "--password-stdin"], input=password + "\n")


def test_users_create_prints_the_contract_json(runner, reference):
    result = create(runner, "Aida@Test.Amanat.Example", "--role", "officer", "--name", "Aida", "--unit", "U-ALM",
                    "--gender", "female", "--languages", "ky,ru", "--phone", "+996555999001")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {"id", "email", "role", "totp_secret"}
    assert out["email"] == "aida@test.amanat.example" and out["role"] == "officer"
    user = db.session.get(User, out["id"])
    assert user.unit.code == "U-ALM" and user.language_list == ["ky", "ru"] and user.phone == "+996555999001"
    assert len(pyotp.TOTP(out["totp_secret"]).now()) == 6


def test_users_create_for_a_focal_point_has_no_totp(runner, reference):
    result = create(runner, "fp@test.amanat.example", "--role", "focal_point", "--name", "FP", "--org", "WG-ALM")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["totp_secret"] is None


@pytest.mark.parametrize("args, password, message", [
    (["--role", "officer", "--name", "X"], "a long enough pass", "unit"),
    (["--role", "wizard", "--name", "X"], "a long enough pass", "role"),
    (["--role", "oversight", "--name", "X"], "12345678", "too common"),
    (["--role", "officer", "--name", "X", "--unit", "U-NONE"], "a long enough pass", "No unit"),
])
def test_users_create_refuses_bad_input_clearly(runner, reference, args, password, message):
    result = create(runner, "bad@test.amanat.example", *args, password=password)
    assert result.exit_code == 1
    assert message in result.output
    assert db.session.scalar(select(User).where(User.email == "bad@test.amanat.example")) is None


def test_training_record_sets_expiry_from_course_validity(runner, reference):
    create(runner, "cert@test.amanat.example", "--role", "officer", "--name", "C", "--unit", "U-ALM")
    result = runner.invoke(args=["training", "record", "cert@test.amanat.example", "GBV-CORE",
                                 "--completed", "2024-02-29"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["expires_on"] == "2026-02-28"
    cert = db.session.scalar(select(Certification))
    assert cert.is_current(dt.date(2026, 2, 27)) and not cert.is_current(dt.date(2026, 2, 28))
    again = runner.invoke(args=["training", "record", "cert@test.amanat.example", "GBV-CORE",
                                "--completed", "2024-02-29"])
    assert again.exit_code == 1 and "already recorded" in again.output


@pytest.mark.parametrize("args, message", [
    (["nobody@test.amanat.example", "GBV-CORE", "--completed", "2025-01-01"], "No account"),
    (["cert2@test.amanat.example", "NO-COURSE", "--completed", "2025-01-01"], "No course"),
    (["cert2@test.amanat.example", "GBV-CORE", "--completed", "2999-01-01"], "future"),
    (["cert2@test.amanat.example", "GBV-CORE", "--completed", "yesterday"], "%Y-%m-%d"),
])
def test_training_record_refuses_bad_input(runner, reference, args, message):
    create(runner, "cert2@test.amanat.example", "--role", "officer", "--name", "C", "--unit", "U-ALM")
    result = runner.invoke(args=["training", "record", *args])
    assert result.exit_code != 0
    assert message in result.output


def test_training_record_is_for_police_only(runner, reference):
    create(runner, "fp2@test.amanat.example", "--role", "focal_point", "--name", "F", "--org", "WG-ALM")
    result = runner.invoke(args=["training", "record", "fp2@test.amanat.example", "GBV-CORE",
                                 "--completed", "2025-01-01"])
    assert result.exit_code == 1 and "police" in result.output.lower()


def test_demo_seed_is_idempotent_and_demo_users_can_sign_in(runner, client):
    first = runner.invoke(args=["demo", "seed"])
    assert first.exit_code == 0, first.output
    assert "amanat-demo-2026" in first.output and "(new)" in first.output
    second = runner.invoke(args=["demo", "seed"])
    assert second.exit_code == 0 and "(new)" not in second.output
    officer = db.session.scalar(select(User).where(User.email == "aigul.officer@demo.amanat.example"))
    assert officer.role is Role.officer and len(officer.unit.code) > 0
    otp = runner.invoke(args=["demo", "otp", officer.email])
    assert otp.exit_code == 0
    token = client.post("/api/v1/auth/tokens", json={"email": officer.email, "password": "amanat-demo-2026",
                                                     "otp": otp.output.strip()})
    assert token.status_code == 201
    expired = db.session.scalar(select(User).where(User.email == "nurlan.officer@demo.amanat.example"))
    certs = db.session.scalars(select(Certification).where(Certification.user_id == expired.id)).all()
    assert certs and not any(c.is_current(dt.date.today()) for c in certs)


def test_demo_otp_refuses_non_demo_accounts(runner, make_user):
    user = make_user("officer")
    result = runner.invoke(args=["demo", "otp", user.email])
    assert result.exit_code == 1 and result.output.strip().endswith("not a demo account.")


def test_demo_commands_are_refused_in_production(app, runner, monkeypatch):
    monkeypatch.setitem(app.config, "ENV_NAME", "production")
    for args in (["demo", "seed"], ["demo", "otp", "admin@demo.amanat.example"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 1
        assert "refused" in result.output
