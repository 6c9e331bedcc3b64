"""Enrolment by the account holder: the admin gets a one-time link and never a password or a TOTP secret.

Create (API) → link → the holder opens it, chooses a password, scans the secret, confirms a code → sign in;
and every way it must refuse: a used, withdrawn, expired or unknown link, a wrong code, a weak password,
a secret looked at in another browser, a wrong current password after a reset.
"""
from __future__ import annotations

import datetime as dt
import logging

import pyotp
import pytest
import time_machine
from sqlalchemy import select

from referral.accounts.models import Enrolment, User
from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.security.tokens import digest
from tests.factories import PASSWORD, UnitFactory
from tests.web.helpers import csrf_token, enrol, link_path, next_code, open_link, web_login

NEW_PASSWORD = "a fine long passphrase"
T0 = dt.datetime(2026, 11, 25, 9, 0, 0, tzinfo=dt.UTC)


@pytest.fixture()
def admin(login_as):
    return login_as("admin")


def invite(client, headers, role="supervisor", **extra):
    body = {"email": f"holder.{role}@test.amanat.example", "name": "Holder", "role": role, **extra}
    if role in ("officer", "supervisor") and "unit" not in extra:
        body["unit"] = UnitFactory().code
    resp = client.post("/api/v1/admin/users", json=body, headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def token_of(url):
    return link_path(url).rsplit("/", 1)[1]


def events(user_id=None, action_prefix="user.enrolment"):
    query = select(AuditEvent).where(AuditEvent.action.startswith(action_prefix)).order_by(AuditEvent.seq)
    found = db.session.scalars(query).all()
    return [e for e in found if user_id is None or e.object_id == str(user_id)]


def ask_token(client, email, password, otp=None):
    return client.post("/api/v1/auth/tokens", json={"email": email, "password": password, "otp": otp})


def post_form(client, url, page, **fields):
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "password": "", "password_again": "",
            "current_password": "", "otp": "", **fields}
    return client.post(link_path(url), data=data)


# -- the whole flow ------------------------------------------------------------------------------------------

def test_create_link_enrol_sign_in_and_every_step_audited_without_secrets(client, admin, app, caplog):
    caplog.set_level(logging.DEBUG)
    me, headers = admin
    body = invite(client, headers)
    url = body["enrolment"]["url"]
    raw = token_of(url)
    user = db.session.get(User, body["id"])
    row = db.session.scalar(select(Enrolment).where(Enrolment.user_id == user.id))
    assert row.token_hash == digest(raw) and row.issued_by_id == me.id  # the link is kept as its hash only
    assert row.expires_at - row.created_at == dt.timedelta(hours=72)

    holder = app.test_client()
    page, secret = open_link(holder, url)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert user.email in html and "otpauth://totp/" in html and 'autocomplete="new-password"' in html
    db.session.refresh(row)
    assert secret.encode() not in row.pending_secret  # stored encrypted, under a key the database lacks
    again, same = open_link(holder, url)
    assert same == secret  # the holder reloading sees the same key

    done = post_form(holder, url, again, password=NEW_PASSWORD, password_again=NEW_PASSWORD,
                     otp=pyotp.TOTP(secret).now())
    assert done.status_code == 200 and done.headers["Cache-Control"] == "no-store"
    assert "Set-up complete" in done.get_data(as_text=True) and secret not in done.get_data(as_text=True)
    db.session.refresh(row)
    db.session.refresh(user)
    assert row.used_at is not None and row.pending_secret is None and not user.enrolment_pending
    # The confirming code is used up; the next one signs in, on the web and the API.
    assert ask_token(client, user.email, NEW_PASSWORD, pyotp.TOTP(secret).now()).status_code == 401
    assert web_login(app.test_client(), user.email, NEW_PASSWORD, next_code(secret)).status_code == 302

    trail = [(e.action, e.outcome, e.actor_id) for e in events(user.id)]
    assert trail[0] == ("user.enrolment.issue", "allowed", me.id)
    assert trail[1:] == [("user.enrolment.open", "allowed", user.id)] * 2 + [
        ("user.enrolment.complete", "allowed", user.id)]
    created = events(user.id, "user.create")
    assert [(e.actor_id, e.outcome) for e in created] == [(me.id, "allowed")]
    assert events(user.id)[-1].fields == '["password","totp_secret"]'
    everything = db.session.scalars(select(AuditEvent)).all()
    logged = "\n".join(r.getMessage() + repr(getattr(r, "__dict__", {})) for r in caplog.records)
    for value in (raw, secret, NEW_PASSWORD):
        assert not any(value in repr(vars(e)) for e in everything), "a secret in the audit log"
        assert value not in logged, "a secret in the application log"
    assert "/enrol/<token>" in logged  # the access line names the rule, not the link


def test_the_admin_sees_no_secret_in_any_answer(client, admin, app):
    _me, headers = admin
    body = invite(client, headers)
    done, secret = enrol(app.test_client(), body["enrolment"]["url"], NEW_PASSWORD)
    assert done.status_code == 200
    uid = body["id"]
    answers = [client.get(f"/api/v1/admin/users/{uid}", headers=headers),
               client.get("/api/v1/admin/users?per_page=100", headers=headers),
               client.post(f"/api/v1/admin/users/{uid}/reset-totp", headers=headers)]
    for resp in answers:
        text = resp.get_data(as_text=True)
        assert resp.status_code == 200 and secret not in text and "totp_secret\"" not in text
        assert NEW_PASSWORD not in text and "otpauth" not in text


def test_a_focal_point_sets_a_password_only(client, admin, app, place):
    _me, headers = admin
    body = invite(client, headers, role="focal_point", org=place["group"].code)
    holder = app.test_client()
    page, secret = open_link(holder, body["enrolment"]["url"])
    assert secret is None and 'name="otp"' not in page.get_data(as_text=True)
    done = post_form(holder, body["enrolment"]["url"], page, password=NEW_PASSWORD, password_again=NEW_PASSWORD)
    assert done.status_code == 200
    assert ask_token(client, body["email"], NEW_PASSWORD).status_code == 201
    assert db.session.get(User, body["id"]).totp_secret_sealed is None


# -- refusals ------------------------------------------------------------------------------------------------

def refusal(client, url, **kw):
    resp = client.get(link_path(url), **kw)
    assert resp.status_code == 404 and resp.headers["Cache-Control"] == "no-store"
    return resp.get_data(as_text=True)


def test_a_link_works_once_and_every_unusable_link_gets_the_same_refusal(client, admin, app, make_user):
    _me, headers = admin
    body = invite(client, headers)
    url = body["enrolment"]["url"]
    holder = app.test_client()
    done, secret = enrol(holder, url, NEW_PASSWORD)
    assert done.status_code == 200
    used_get = refusal(holder, url)
    replay = holder.post(link_path(url), data={"csrf_token": csrf_token(holder.get("/login").get_data(as_text=True)),
                                               "password": "another passphrase", "password_again": "another passphrase",
                                               "otp": next_code(secret)})
    assert replay.status_code == 404
    unknown_url = "http://localhost/enrol/" + "x" * 43
    unknown = refusal(app.test_client(), unknown_url)
    assert "This set-up link cannot be used" in used_get and 'id="quick-exit"' in used_get  # maybe her phone
    # The same page, but for the language links back to the address it was asked for.
    assert used_get.replace(token_of(url), "") == unknown.replace(token_of(unknown_url), "")
    assert ask_token(client, body["email"], "another passphrase", next_code(secret)).status_code == 401
    denied = [(e.action, e.reason) for e in events() if e.outcome == "denied"]
    assert ("user.enrolment.open", "link already used") in denied
    assert ("user.enrolment.complete", "link already used") in denied
    assert ("user.enrolment.open", "unknown link") in denied


def test_a_link_expires_after_72_hours(client, admin, app):
    _me, headers = admin
    with time_machine.travel(T0, tick=False) as clock:
        body = invite(client, headers)
        url = body["enrolment"]["url"]
        assert body["enrolment"]["expires_at"] == (T0 + dt.timedelta(hours=72)).isoformat()
        holder = app.test_client()
        clock.move_to(T0 + dt.timedelta(hours=71, minutes=59))
        page, secret = open_link(holder, url)
        assert page.status_code == 200
        clock.move_to(T0 + dt.timedelta(hours=72))
        late = post_form(holder, url, page, password=NEW_PASSWORD, password_again=NEW_PASSWORD,
                         otp=pyotp.TOTP(secret).at(T0 + dt.timedelta(hours=72)))
        assert late.status_code == 404 and "cannot be used" in late.get_data(as_text=True)
        refusal(holder, url)
    user = db.session.get(User, body["id"])
    assert user.enrolment_pending and user.totp_secret_sealed is None
    assert [e.reason for e in events(user.id) if e.outcome == "denied"] == ["link expired", "link expired"]


def test_a_wrong_or_missing_code_changes_nothing(client, admin, app):
    _me, headers = admin
    body = invite(client, headers)
    url = body["enrolment"]["url"]
    holder = app.test_client()
    page, secret = open_link(holder, url)
    right = pyotp.TOTP(secret).now()
    for wrong in ("", "12345", "abcdef", str((int(right) + 1) % 10**6).zfill(6)):
        resp = post_form(holder, url, page, password=NEW_PASSWORD, password_again=NEW_PASSWORD, otp=wrong)
        html = resp.get_data(as_text=True)
        assert resp.status_code == 422 and 'id="e-otp"' in html and "does not match" in html
        assert secret in html  # the same key, to try again
    user = db.session.get(User, body["id"])
    assert user.enrolment_pending and user.totp_secret_sealed is None
    assert ask_token(client, body["email"], NEW_PASSWORD, right).status_code == 401
    reasons = [e.reason for e in events(user.id) if e.outcome == "denied"]
    assert reasons == ["otp wrong"] * 4


@pytest.mark.parametrize("password, again, words", [
    ("kel-tas", "kel-tas", "at least 8 characters"),
    ("e" * 129, "e" * 129, "at most 128 characters"),
    ("password123", "password123", "too common"),
    ("Sunshine1", "Sunshine1", "too common"),
    ("holder.supervisor@test.amanat.example", "holder.supervisor@test.amanat.example", "e-mail address"),
    (NEW_PASSWORD, NEW_PASSWORD + "!", "not the same"),
    ("", "", "at least 8 characters"),
])
def test_a_weak_or_mistyped_password_is_refused_and_nothing_changes(client, admin, app, password, again, words):
    _me, headers = admin
    body = invite(client, headers)
    url = body["enrolment"]["url"]
    holder = app.test_client()
    page, secret = open_link(holder, url)
    resp = post_form(holder, url, page, password=password, password_again=again, otp=pyotp.TOTP(secret).now())
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and words in html and 'aria-invalid="true"' in html
    assert not password or f'value="{password}"' not in html  # a password is never sent back
    user = db.session.get(User, body["id"])
    assert user.enrolment_pending and user.totp_secret_sealed is None
    # The link still works: the holder corrects the password.
    done, _secret = enrol(holder, url, NEW_PASSWORD)
    assert done.status_code == 200


def test_the_refusal_is_in_the_readers_language(client, admin, app):
    _me, headers = admin
    url = invite(client, headers)["enrolment"]["url"]
    holder = app.test_client()
    page = holder.get(link_path(url) + "?lang=ky")
    html = page.get_data(as_text=True)
    assert '<html lang="ky">' in html and "Set up your account" not in html
    resp = post_form(holder, url, page, password="short", password_again="short", otp="000000")
    assert resp.status_code == 422 and "Use at least" not in resp.get_data(as_text=True)


def test_a_key_looked_at_in_another_browser_is_replaced_and_cannot_be_confirmed(client, admin, app):
    """An admin who opens the link before handing it over sees a key the holder is never given."""
    _me, headers = admin
    url = invite(client, headers)["enrolment"]["url"]
    peeker, holder = app.test_client(), app.test_client()
    _page, peeked = open_link(peeker, url)
    page, secret = open_link(holder, url)
    assert secret != peeked
    # The peeker cannot finish with the key they saw, nor with the holder's (they do not have it to hand,
    # and the key is bound to the holder's browser anyway).
    peek_page, peeked_now = open_link(peeker, url)
    assert peeked_now not in (peeked, secret)  # looking again in another browser replaces the key again
    stale = post_form(holder, url, page, password=NEW_PASSWORD, password_again=NEW_PASSWORD,
                      otp=pyotp.TOTP(secret).now())
    html = stale.get_data(as_text=True)
    assert stale.status_code == 422 and "opened again somewhere else" in html
    fresh = open_link(holder, url)[1]
    assert fresh not in (secret, peeked_now)
    refused = post_form(peeker, url, peek_page, password="the peeker's passphrase",
                        password_again="the peeker's passphrase", otp=pyotp.TOTP(peeked_now).now())
    assert refused.status_code == 422  # the holder's browser has the key now
    done, final = enrol(holder, url, NEW_PASSWORD)
    assert done.status_code == 200
    reasons = [e.reason for e in events() if e.action == "user.enrolment.open"]
    assert reasons.count("account link; new authenticator key shown") >= 4


def test_after_a_reset_the_holder_proves_the_password_and_wrong_tries_lock_the_account(client, admin, app,
                                                                                       make_user):
    _me, headers = admin
    officer = make_user("officer")
    link = client.post(f"/api/v1/admin/users/{officer.id}/reset-totp", headers=headers).get_json()["enrolment"]
    holder = app.test_client()
    page, secret = open_link(holder, link["url"])
    html = page.get_data(as_text=True)
    assert 'name="current_password"' in html and 'name="password_again"' not in html
    for n in range(5):
        resp = post_form(holder, link["url"], page, current_password=f"wrong guess {n}", otp=pyotp.TOTP(secret).now())
        assert resp.status_code == 422
    assert "Too many wrong passwords" in resp.get_data(as_text=True)
    db.session.refresh(officer)
    assert officer.locked_until is not None and officer.totp_secret_sealed is None
    locked = post_form(holder, link["url"], page, current_password=PASSWORD, otp=pyotp.TOTP(secret).now())
    assert locked.status_code == 422 and "Too many wrong passwords" in locked.get_data(as_text=True)
    denied = [e.reason for e in events(officer.id) if e.outcome == "denied"]
    assert denied == ["current_password wrong"] * 4 + ["current_password locked"] * 2
    # An admin unlocks; the holder finishes, and the failures are cleared.
    assert client.post(f"/api/v1/admin/users/{officer.id}/unlock", headers=headers).status_code == 200
    done, _secret = enrol(holder, link["url"], current_password=PASSWORD)
    assert done.status_code == 200
    db.session.refresh(officer)
    assert officer.failed_logins == 0 and officer.totp_secret_sealed is not None


def test_until_set_up_sign_in_fails_exactly_like_an_unknown_account(client, admin, app):
    _me, headers = admin
    body = invite(client, headers)
    web_pending = web_login(app.test_client(), body["email"], NEW_PASSWORD, "123456")
    web_unknown = web_login(app.test_client(), "nobody@test.amanat.example", NEW_PASSWORD, "123456")
    assert web_pending.status_code == web_unknown.status_code == 401
    strip = lambda resp, email: resp.get_data(as_text=True).replace(email, "").replace(  # noqa: E731
        csrf_token(resp.get_data(as_text=True)), "")
    assert strip(web_pending, body["email"]) == strip(web_unknown, "nobody@test.amanat.example")
    api_pending = ask_token(client, body["email"], NEW_PASSWORD, "123456")
    assert api_pending.status_code == 401 and api_pending.get_json()["error"]["code"] == "invalid_credentials"
    reasons = [e.reason for e in events(body["id"], "auth.login")]
    assert reasons == ["account not set up yet"] * 2
    user = db.session.get(User, body["id"])
    assert user.failed_logins == 0  # the holder is not locked out by someone trying early


def test_deactivation_and_a_newer_link_withdraw_a_link(client, admin, app):
    _me, headers = admin
    body = invite(client, headers)
    first = body["enrolment"]["url"]
    second = client.post(f"/api/v1/admin/users/{body['id']}/enrolment", headers=headers).get_json()["enrolment"]
    refusal(app.test_client(), first)
    assert client.post(f"/api/v1/admin/users/{body['id']}/deactivate", headers=headers).status_code == 200
    refusal(app.test_client(), second["url"])
    reasons = [e.reason for e in events(body["id"]) if e.outcome == "denied"]
    assert reasons == ["link withdrawn", "link withdrawn"]
    issued = [e for e in events(body["id"]) if e.action == "user.enrolment.issue"]
    assert len(issued) == 2 and all("account link, valid until" in e.reason for e in issued)


def test_only_the_operator_sets_passwords(admin, make_user):
    """The service behind the CLI refuses an admin actor: admins invite."""
    from referral.accounts.services import NewUser, create_user
    from referral.errors import Forbidden

    me, _headers = admin
    with pytest.raises(Forbidden):
        create_user(me, NewUser(email="x@test.amanat.example", name="X", role="oversight", password=NEW_PASSWORD))
