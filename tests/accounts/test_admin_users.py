"""Admin account management through /api/v1/admin/users."""
import datetime as dt

import pyotp
import pytest

from referral.accounts.models import User
from referral.extensions import db
from tests.factories import PASSWORD, OrganisationFactory, UnitFactory


@pytest.fixture()
def admin(login_as):
    return login_as("admin")


def new_user_body(**overrides):
    body = {"email": "New.Officer@Test.Amanat.Example", "name": "New Officer", "role": "officer",
            "password": "a fine long passphrase", "gender": "female", "languages": ["ky", "ru"],
            "phone": "+996 555 123 456"}
    body.update(overrides)
    return body


def test_admin_creates_an_officer_who_can_then_sign_in(client, admin):
    _admin, headers = admin
    unit = UnitFactory()
    resp = client.post("/api/v1/admin/users", json=new_user_body(unit=unit.code), headers=headers)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["email"] == "new.officer@test.amanat.example"
    assert body["phone"] == "+996555123456"
    assert body["unit"] == unit.code and body["languages"] == ["ky", "ru"]
    code = pyotp.TOTP(body["totp_secret"]).now()
    token = client.post("/api/v1/auth/tokens", json={"email": body["email"], "password": "a fine long passphrase",
                                                     "otp": code})
    assert token.status_code == 201
    stored = db.session.get(User, body["id"])
    assert body["totp_secret"].encode() not in stored.totp_secret_sealed
    assert "a fine long passphrase" not in stored.password_hash


@pytest.mark.parametrize("overrides, field", [
    ({"role": "officer"}, "unit"),                       # police without a unit
    ({"role": "chief"}, "role"),
    ({"password": "short"}, "password"),
    ({"password": "password123"}, "password"),
    ({"phone": "12345"}, "phone"),
    ({"email": "not-an-email"}, "email"),
    ({"languages": ["klingon"]}, "languages"),
    ({"role": "focal_point", "unit": None}, "org"),       # focal point without a group
    ({"unit": "NO-SUCH"}, "unit"),
    ({"favourite": "x"}, "favourite"),
])
def test_bad_account_data_gets_field_errors(client, admin, overrides, field):
    _admin, headers = admin
    resp = client.post("/api/v1/admin/users", json=new_user_body(**overrides), headers=headers)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["error"]["fields"]


def test_a_focal_point_must_belong_to_a_womens_group(client, admin):
    _admin, headers = admin
    provider = OrganisationFactory(kind="provider")
    resp = client.post("/api/v1/admin/users", json=new_user_body(role="focal_point", org=provider.code), headers=headers)
    assert resp.status_code == 422
    assert "womens_group" in resp.get_json()["error"]["fields"]["org"][0]
    group = OrganisationFactory()
    ok = client.post("/api/v1/admin/users", json=new_user_body(role="focal_point", org=group.code), headers=headers)
    assert ok.status_code == 201
    assert ok.get_json()["totp_secret"] is None


def test_duplicate_email_is_a_conflict(client, admin, make_user):
    _admin, headers = admin
    existing = make_user("officer")
    resp = client.post("/api/v1/admin/users", json=new_user_body(email=existing.email, unit=existing.unit.code),
                       headers=headers)
    assert resp.status_code == 409


def test_list_is_paginated_and_filterable(client, admin, make_user):
    _admin, headers = admin
    for _ in range(3):
        make_user("officer")
    resp = client.get("/api/v1/admin/users?role=officer&per_page=2", headers=headers)
    body = resp.get_json()
    assert resp.status_code == 200
    assert body["page"] == 1 and body["per_page"] == 2 and body["total"] == 3 and len(body["items"]) == 2
    assert all(item["role"] == "officer" for item in body["items"])
    assert client.get("/api/v1/admin/users?per_page=101", headers=headers).status_code == 422
    assert client.get("/api/v1/admin/users?page=0", headers=headers).status_code == 422
    assert client.get("/api/v1/admin/users?sort=name", headers=headers).status_code == 422


def test_deactivation_ends_every_token_at_once(client, admin, login_as):
    _admin, headers = admin
    officer, officer_headers = login_as("officer")
    assert client.get("/api/v1/me", headers=officer_headers).status_code == 200
    resp = client.post(f"/api/v1/admin/users/{officer.id}/deactivate", headers=headers)
    assert resp.status_code == 200 and resp.get_json()["active"] is False
    assert client.get("/api/v1/me", headers=officer_headers).status_code == 401


def test_admin_cannot_deactivate_themselves(client, admin):
    me, headers = admin
    assert client.post(f"/api/v1/admin/users/{me.id}/deactivate", headers=headers).status_code == 409


def test_unlock_lets_a_locked_user_back_in(client, admin, make_user):
    _admin, headers = admin
    officer = make_user("officer", locked_until=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10), failed_logins=5)
    assert client.get(f"/api/v1/admin/users/{officer.id}", headers=headers).get_json()["locked"] is True
    resp = client.post(f"/api/v1/admin/users/{officer.id}/unlock", headers=headers)
    assert resp.get_json()["locked"] is False
    token = client.post("/api/v1/auth/tokens", json={
        "email": officer.email, "password": PASSWORD, "otp": pyotp.TOTP(officer.totp_secret_plain).now()})
    assert token.status_code == 201


def test_reset_totp_issues_a_new_secret_and_old_codes_stop(client, admin, make_user):
    _admin, headers = admin
    officer = make_user("officer")
    old_secret = officer.totp_secret_plain
    resp = client.post(f"/api/v1/admin/users/{officer.id}/reset-totp", headers=headers)
    new_secret = resp.get_json()["totp_secret"]
    assert resp.status_code == 200 and new_secret and new_secret != old_secret
    old = client.post("/api/v1/auth/tokens", json={"email": officer.email, "password": PASSWORD,
                                                   "otp": pyotp.TOTP(old_secret).now()})
    new = client.post("/api/v1/auth/tokens", json={"email": officer.email, "password": PASSWORD,
                                                   "otp": pyotp.TOTP(new_secret).now()})
    assert (old.status_code, new.status_code) == (401, 201)


def test_unknown_user_is_404(client, admin):
    _admin, headers = admin
    for path in ("/api/v1/admin/users/999999", "/api/v1/admin/users/999999/unlock"):
        method = client.get if path.endswith("999999") else client.post
        assert method(path, headers=headers).status_code == 404


@pytest.mark.parametrize("role", ["focal_point", "officer", "supervisor", "service_provider", "oversight"])
def test_only_admins_manage_accounts(client, login_as, make_user, role):
    _user, headers = login_as(role)
    target = make_user("officer")
    assert client.get("/api/v1/admin/users", headers=headers).status_code == 403
    assert client.post("/api/v1/admin/users", json=new_user_body(), headers=headers).status_code == 403
    assert client.post(f"/api/v1/admin/users/{target.id}/deactivate", headers=headers).status_code == 403
    db.session.refresh(target)
    assert target.active


def test_anonymous_callers_get_401(client):
    assert client.get("/api/v1/admin/users").status_code == 401
    assert client.get("/api/v1/me").status_code == 401


def test_admin_reads_of_accounts_are_audited(client, admin, make_user):
    from referral.audit.models import AuditEvent

    me, headers = admin
    target = make_user("officer")
    assert client.get("/api/v1/admin/users", headers=headers).status_code == 200
    assert client.get(f"/api/v1/admin/users/{target.id}", headers=headers).status_code == 200
    actions = db.session.scalars(db.select(AuditEvent.action).where(AuditEvent.actor_id == me.id)).all()
    assert "user.list" in actions and "user.read" in actions


def test_out_of_range_ids_are_404_not_500(client, admin):
    _admin, headers = admin
    assert client.get(f"/api/v1/admin/users/{10**20}", headers=headers).status_code == 404
