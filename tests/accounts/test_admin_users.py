"""Admin account management through /api/v1/admin/users."""
import datetime as dt

import pyotp
import pytest

from referral.accounts.models import User
from referral.extensions import db
from tests.factories import PASSWORD, OrganisationFactory, UnitFactory
from tests.web.helpers import enrol, next_code, open_link


@pytest.fixture()
def admin(login_as):
    return login_as("admin")


def new_user_body(**overrides):
    body = {"email": "New.Officer@Test.Amanat.Example", "name": "New Officer", "role": "officer",
            "gender": "female", "languages": ["ky", "ru"], "phone": "+996 555 123 456"}
    body.update(overrides)
    return body


def ask_token(client, email, password, otp=None):
    return client.post("/api/v1/auth/tokens", json={"email": email, "password": password, "otp": otp})


def test_admin_creates_an_officer_who_sets_up_the_account_and_then_signs_in(client, admin, app):
    _admin, headers = admin
    unit = UnitFactory()
    resp = client.post("/api/v1/admin/users", json=new_user_body(unit=unit.code), headers=headers)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["email"] == "new.officer@test.amanat.example"
    assert body["phone"] == "+996555123456"
    assert body["unit"] == unit.code and body["languages"] == ["ky", "ru"]
    assert body["enrolment_pending"] is True and body["totp_enrolled"] is False and "totp_secret" not in body
    assert body["enrolment"]["kind"] == "account" and body["enrolment"]["url"].startswith("http://localhost/enrol/")
    stored = db.session.get(User, body["id"])
    assert stored.totp_secret_sealed is None

    # Until the holder has set it up, the account cannot sign in, whatever the admin tries.
    refused = ask_token(client, body["email"], "a fine long passphrase", "123456")
    unknown = ask_token(client, "nobody@test.amanat.example", "a fine long passphrase", "123456")
    assert refused.status_code == unknown.status_code == 401 and refused.get_json() == unknown.get_json()

    holder = app.test_client()
    done, secret = enrol(holder, body["enrolment"]["url"], "a fine long passphrase")
    assert done.status_code == 200 and "Set-up complete" in done.get_data(as_text=True)
    token = ask_token(client, body["email"], "a fine long passphrase", next_code(secret))
    assert token.status_code == 201
    db.session.refresh(stored)
    assert not stored.enrolment_pending
    assert secret.encode() not in stored.totp_secret_sealed
    assert "a fine long passphrase" not in stored.password_hash
    after = client.get(f"/api/v1/admin/users/{stored.id}", headers=headers).get_json()
    assert after["enrolment_pending"] is False and after["totp_enrolled"] is True


@pytest.mark.parametrize("overrides, field", [
    ({"role": "officer"}, "unit"),                       # police without a unit
    ({"role": "chief"}, "role"),
    ({"password": "a fine long passphrase"}, "password"),  # the holder chooses it, never the admin
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
    assert not db.session.scalar(db.select(User).where(User.email == "new.officer@test.amanat.example"))


def test_a_focal_point_must_belong_to_a_womens_group(client, admin):
    _admin, headers = admin
    provider = OrganisationFactory(kind="provider")
    resp = client.post("/api/v1/admin/users", json=new_user_body(role="focal_point", org=provider.code), headers=headers)
    assert resp.status_code == 422
    assert resp.get_json()["error"]["fields"]["org"] == ["A focal point belongs to a women's group."]
    group = OrganisationFactory()
    ok = client.post("/api/v1/admin/users", json=new_user_body(role="focal_point", org=group.code), headers=headers)
    assert ok.status_code == 201
    assert ok.get_json()["enrolment"]["kind"] == "account" and "totp_secret" not in ok.get_json()


def test_a_deactivated_accounts_phone_passes_to_the_next_focal_point(client, admin):
    """A women's group's shared phone: when its focal point leaves, the next one is registered with it, and
    SMS from it are hers. An active account's number stays refused."""
    from sqlalchemy import select

    from referral.audit.models import AuditEvent

    _admin, headers = admin
    group = OrganisationFactory()
    phone = "+996555123001"
    first = client.post("/api/v1/admin/users", headers=headers, json=new_user_body(
        email="first@test.amanat.example", role="focal_point", org=group.code, phone=phone))
    assert first.status_code == 201
    taken = client.post("/api/v1/admin/users", headers=headers, json=new_user_body(
        email="second@test.amanat.example", role="focal_point", org=group.code, phone=phone))
    assert taken.status_code == 422 and "phone" in taken.get_json()["error"]["fields"]
    first_id = first.get_json()["id"]
    assert client.post(f"/api/v1/admin/users/{first_id}/deactivate", headers=headers).status_code == 200
    second = client.post("/api/v1/admin/users", headers=headers, json=new_user_body(
        email="second@test.amanat.example", role="focal_point", org=group.code, phone=phone))
    assert second.status_code == 201, second.get_json()
    assert db.session.get(User, second.get_json()["id"]).phone == phone
    assert db.session.get(User, first_id).phone is None
    db.session.commit()
    released = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "user.phone_released"))
    assert released.object_id == str(first_id) and phone not in (released.reason or "")
    assert released.actor_id == _admin.id  # the admin who registered the next holder


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


def test_reset_totp_removes_the_secret_and_the_holder_sets_up_a_new_one(client, admin, make_user, app):
    _admin, headers = admin
    officer = make_user("officer")
    old_secret = officer.totp_secret_plain
    officer_headers = {"Authorization": "Bearer " + ask_token(
        client, officer.email, PASSWORD, pyotp.TOTP(old_secret).now()).get_json()["token"]}
    resp = client.post(f"/api/v1/admin/users/{officer.id}/reset-totp", headers=headers)
    body = resp.get_json()
    assert resp.status_code == 200 and body["totp_enrolled"] is False and "totp_secret" not in body
    assert body["enrolment"]["kind"] == "authenticator"
    assert client.get("/api/v1/me", headers=officer_headers).status_code == 401  # signed out everywhere
    old = ask_token(client, officer.email, PASSWORD, next_code(old_secret))
    assert old.status_code == 401  # the old secret stopped at once, before the holder set up a new one

    done, new_secret = enrol(app.test_client(), body["enrolment"]["url"], current_password=PASSWORD)
    assert done.status_code == 200 and new_secret != old_secret
    new = ask_token(client, officer.email, PASSWORD, next_code(new_secret))
    assert new.status_code == 201


def test_a_new_link_for_an_account_not_yet_set_up(client, admin, app):
    _admin, headers = admin
    unit = UnitFactory()
    first = client.post("/api/v1/admin/users", json=new_user_body(unit=unit.code), headers=headers).get_json()
    again = client.post(f"/api/v1/admin/users/{first['id']}/enrolment", headers=headers)
    assert again.status_code == 201 and again.get_json()["enrolment"]["url"] != first["enrolment"]["url"]
    holder = app.test_client()
    assert open_link(holder, first["enrolment"]["url"])[0].status_code == 404  # the earlier link stopped
    done, _secret = enrol(holder, again.get_json()["enrolment"]["url"], "a fine long passphrase")
    assert done.status_code == 200
    # Set up now: a further set-up link is refused (an authenticator reset is the way).
    assert client.post(f"/api/v1/admin/users/{first['id']}/enrolment", headers=headers).status_code == 409


def test_links_are_refused_for_set_up_or_deactivated_accounts_and_resets_for_pending_ones(client, admin, make_user):
    me, headers = admin
    unit = UnitFactory()
    pending = client.post("/api/v1/admin/users", json=new_user_body(unit=unit.code), headers=headers).get_json()
    assert client.post(f"/api/v1/admin/users/{pending['id']}/reset-totp", headers=headers).status_code == 409
    focal = make_user("focal_point")
    assert client.post(f"/api/v1/admin/users/{focal.id}/reset-totp", headers=headers).status_code == 409
    assert client.post(f"/api/v1/admin/users/{focal.id}/enrolment", headers=headers).status_code == 409
    assert client.post(f"/api/v1/admin/users/{pending['id']}/deactivate", headers=headers).status_code == 200
    assert client.post(f"/api/v1/admin/users/{pending['id']}/enrolment", headers=headers).status_code == 409


def test_unknown_user_is_404(client, admin):
    _admin, headers = admin
    for path in ("/api/v1/admin/users/999999", "/api/v1/admin/users/999999/unlock",
                 "/api/v1/admin/users/999999/reset-totp", "/api/v1/admin/users/999999/enrolment"):
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
