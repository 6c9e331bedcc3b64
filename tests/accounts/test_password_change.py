"""Changing one's own password (ASVS V6.2.2, V6.2.3): through the API and the web page."""
import datetime as dt

import pyotp
import pytest
import time_machine
from sqlalchemy import select

from referral.accounts.models import ApiToken, Role, User, UserSession
from referral.audit.models import AuditEvent
from referral.extensions import db
from tests.factories import PASSWORD
from tests.web.helpers import csrf_token, web_login

NEW = "a quiet river at dusk"
T0 = dt.datetime(2026, 11, 25, 9, 0, 0, tzinfo=dt.UTC)


def change(client, headers, current, new):
    return client.post("/api/v1/me/password", json={"current_password": current, "new_password": new},
                       headers=headers)


def ask_token(client, user, password, when):
    body = {"email": user.email, "password": password}
    if user.totp_secret_plain:
        body["otp"] = pyotp.TOTP(user.totp_secret_plain).at(when)
    return client.post("/api/v1/auth/tokens", json=body)


def events(user, action="user.password.change"):
    return db.session.scalars(select(AuditEvent).where(AuditEvent.action == action, AuditEvent.actor_id == user.id)
                              .order_by(AuditEvent.seq)).all()


@pytest.mark.parametrize("role", list(Role))
def test_every_role_changes_its_password_and_every_other_sign_in_ends(client, make_user, api_as, role):
    user = make_user(role)
    headers, other = api_as(user), api_as(user)
    with time_machine.travel(T0, tick=False):
        assert change(client, headers, PASSWORD, NEW).status_code == 204
        assert client.get("/api/v1/me", headers=headers).status_code == 200  # this request's token stays
        assert client.get("/api/v1/me", headers=other).status_code == 401    # every other one ended
        assert ask_token(client, user, PASSWORD, T0).status_code == 401
    with time_machine.travel(T0 + dt.timedelta(minutes=1), tick=False):
        assert ask_token(client, user, NEW, T0 + dt.timedelta(minutes=1)).status_code == 201
    done = events(user)[-1]
    assert (done.outcome, done.fields, done.reason) == ("allowed", '["password"]', "1 other sign-ins ended")
    assert PASSWORD not in done.reason and NEW not in (done.reason or "")


def test_the_current_password_is_proven_and_wrong_tries_lock_the_account(client, make_user, api_as):
    user = make_user("officer")
    headers = api_as(user)
    before = user.password_hash
    with time_machine.travel(T0, tick=False):
        for i in range(4):
            resp = change(client, headers, "not my password", NEW)
            assert resp.status_code == 422
            assert resp.get_json()["error"]["fields"] == {"current_password": ["This is not your current password."]}
        locked = change(client, headers, "still not it", NEW)
        assert locked.get_json()["error"]["fields"]["current_password"] == [
            "Too many wrong passwords: wait a few minutes and try again."]
        # Locked: even the right password changes nothing, and sign-in is refused too.
        assert change(client, headers, PASSWORD, NEW).status_code == 422
        assert ask_token(client, user, PASSWORD, T0).status_code == 401
    db.session.expire_all()
    assert db.session.get(User, user.id).password_hash == before
    refused = [e for e in events(user) if e.outcome == "denied"]
    assert len(refused) == 6 and refused[3].reason == "current_password wrong"
    assert refused[4].reason == "current_password locked" and "not my password" not in refused[0].reason
    with time_machine.travel(T0 + dt.timedelta(minutes=16), tick=False):
        assert change(client, headers, PASSWORD, NEW).status_code == 204  # the lockout passes


@pytest.mark.parametrize(("new", "problem"), [
    ("short", "Use at least 8 characters."), ("x" * 129, "Use at most 128 characters."),
    ("password123", "This password is too common; choose another."), (PASSWORD, None)])
def test_the_new_password_follows_the_rules(client, make_user, api_as, new, problem):
    user = make_user("focal_point")
    headers = api_as(user)
    resp = change(client, headers, PASSWORD, new)
    assert resp.status_code == 422
    wanted = problem or "Choose a password different from the current one."
    assert resp.get_json()["error"]["fields"] == {"new_password": [wanted]}
    assert new not in resp.get_data(as_text=True) or new == PASSWORD and PASSWORD not in resp.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, user.id).failed_logins == 0  # the right current password is no failure
    assert client.get("/api/v1/me", headers=headers).status_code == 200


def test_bad_bodies_and_strangers_are_refused(client, make_user, api_as):
    user = make_user("supervisor")
    headers = api_as(user)
    for body in ({}, {"current_password": PASSWORD}, {"current_password": PASSWORD, "new_password": 5},
                 {"current_password": PASSWORD, "new_password": NEW, "role": "admin"},
                 {"current_password": "", "new_password": NEW}):
        assert client.post("/api/v1/me/password", json=body, headers=headers).status_code == 422, body
    assert client.post("/api/v1/me/password", json={"current_password": PASSWORD, "new_password": NEW}).status_code \
        == 401


def test_the_web_page_changes_it_keeps_this_session_and_ends_the_others(client, app, make_user, api_as):
    user = make_user("officer")
    token_headers = api_as(user)
    code = pyotp.TOTP(user.totp_secret_plain)
    elsewhere = app.test_client()
    with time_machine.travel(T0, tick=False):
        assert web_login(elsewhere, user.email, PASSWORD, code.at(T0)).status_code == 302
    with time_machine.travel(T0 + dt.timedelta(seconds=31), tick=False):
        assert web_login(client, user.email, PASSWORD, code.at(T0 + dt.timedelta(seconds=31))).status_code == 302
        home = client.get("/").get_data(as_text=True)
        assert 'href="/account/password"' in home
        page = client.get("/account/password")
        assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
        token = csrf_token(page.get_data(as_text=True))
        assert client.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW,
                                                       "new_password_again": NEW}).status_code == 400  # no CSRF
        differ = client.post("/account/password", data={"csrf_token": token, "current_password": PASSWORD,
                                                        "new_password": NEW, "new_password_again": NEW + "!"})
        assert differ.status_code == 422 and "The two passwords are not the same." in differ.get_data(as_text=True)
        wrong = client.post("/account/password?lang=ru", data={
            "csrf_token": token, "current_password": "nope", "new_password": NEW, "new_password_again": NEW})
        body = wrong.get_data(as_text=True)
        assert wrong.status_code == 422 and 'aria-invalid="true"' in body and "nope" not in body and NEW not in body
        done = client.post("/account/password", data={"csrf_token": token, "current_password": PASSWORD,
                                                      "new_password": NEW, "new_password_again": NEW})
        assert done.status_code == 302 and done.headers["Location"].endswith("/")
        # The reader chose Russian above (the choice is kept): the notice speaks it.
        assert "Все другие входы в вашу учётную запись завершены." in client.get("/").get_data(as_text=True)
        assert client.get("/").status_code == 200                           # this session goes on
        assert elsewhere.get("/").status_code == 302                        # the other browser is signed out
        assert client.get("/api/v1/me", headers=token_headers).status_code == 401
    sessions = db.session.scalars(select(UserSession).where(UserSession.user_id == user.id)).all()
    assert sorted(s.revoked_at is None for s in sessions) == [False, True]
    assert all(t.revoked_at is not None for t in db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)))


def test_the_page_speaks_the_readers_language(client, make_user):
    user = make_user("focal_point")
    assert web_login(client, user.email, PASSWORD, None).status_code == 302
    for lang, words in (("ru", "Сменить пароль"), ("ky", "Сырсөздү өзгөртүү"), ("tg", "Иваз кардани рамз"),
                        ("uz", "Parolni oʻzgartirish")):
        assert words in client.get(f"/account/password?lang={lang}").get_data(as_text=True), lang
    assert client.get("/account/password?lang=en").status_code == 200
