"""A forgotten password: the admin issues a one-time password link; the holder chooses a new password and,
if the role has an authenticator, proves it is them with a current code from it. The admin alone cannot
take the account over, never sees the password, and every sign-in of the account ends when it changes."""
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
from tests.factories import PASSWORD
from tests.web.helpers import csrf_token, link_path, next_code, open_link, web_login

NEW_PASSWORD = "another fine passphrase"


@pytest.fixture()
def admin(login_as):
    return login_as("admin")


def issue(client, headers, user_id):
    resp = client.post(f"/api/v1/admin/users/{user_id}/password-reset", headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def submit(holder, url, page, password=NEW_PASSWORD, again=None, otp=""):
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "password": password,
            "password_again": password if again is None else again, "current_password": "", "otp": otp}
    return holder.post(link_path(url), data=data)


def events(user_id, prefix="user."):
    found = db.session.scalars(select(AuditEvent).where(AuditEvent.action.startswith(prefix),
                                                        AuditEvent.object_id == str(user_id))
                               .order_by(AuditEvent.seq)).all()
    return [(e.action, e.outcome, e.reason, e.fields) for e in found]


def me(client, headers):
    return client.get("/api/v1/me", headers=headers).status_code


def test_an_officer_chooses_a_new_password_with_a_code_and_is_signed_out_everywhere(client, admin, app, make_user,
                                                                                   api_as, caplog):
    caplog.set_level(logging.DEBUG)
    _admin, headers = admin
    officer = make_user("officer")
    secret, old_hash = officer.totp_secret_plain, officer.password_hash
    code_at = lambda when: pyotp.TOTP(secret).at(when)  # noqa: E731
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    browser = app.test_client()
    with time_machine.travel(t0, tick=False):
        token_headers = api_as(officer)
        assert web_login(browser, officer.email, PASSWORD, code_at(t0)).status_code == 302
        body = issue(client, headers, officer.id)
        link = body["enrolment"]
        assert link["kind"] == "password" and body["email"] == officer.email
        assert set(link) == {"url", "kind", "expires_at"} and "totp_secret" not in body
        # Nothing changes until the holder acts: the old password and every sign-in still work.
        assert me(client, token_headers) == 200 and browser.get("/").status_code == 200

    t1 = t0 + dt.timedelta(seconds=30)  # the next code: the sign-in above used this one up
    holder = app.test_client()
    with time_machine.travel(t1, tick=False):
        page, shown = open_link(holder, link["url"])
        html = page.get_data(as_text=True)
        assert page.status_code == 200 and shown is None  # no new authenticator key: the old one proves it
        assert 'name="password"' in html and 'name="password_again"' in html and 'name="otp"' in html
        assert 'name="current_password"' not in html and "Choose a new password" in html
        assert page.headers["Cache-Control"] == "no-store"
        wrong = submit(holder, link["url"], page, otp="000000" if code_at(t1) != "000000" else "111111")
        assert wrong.status_code == 422 and "This code does not match" in wrong.get_data(as_text=True)
        mismatch = submit(holder, link["url"], page, again="not the same", otp=code_at(t1))
        assert mismatch.status_code == 422
        assert "The two passwords are not the same." in mismatch.get_data(as_text=True)
        weak = submit(holder, link["url"], page, password="short", otp=code_at(t1))
        assert weak.status_code == 422 and 'aria-invalid="true"' in weak.get_data(as_text=True)
        db.session.refresh(officer)
        assert officer.password_hash == old_hash and officer.failed_logins == 1  # the wrong code counted
        done = submit(holder, link["url"], page, otp=code_at(t1))
        assert done.status_code == 200, done.get_data(as_text=True)
        assert "New password saved" in done.get_data(as_text=True)
        db.session.refresh(officer)
        assert officer.password_hash != old_hash and officer.failed_logins == 0

    t2 = t1 + dt.timedelta(seconds=30)
    with time_machine.travel(t2, tick=False):
        # Every earlier sign-in ended; the old password is refused; the code that proved it is used up;
        # the new password signs in with the next code.
        assert me(client, token_headers) == 401 and browser.get("/").status_code == 302
        assert web_login(app.test_client(), officer.email, PASSWORD, code_at(t2)).status_code == 401
        tokens = lambda otp: client.post("/api/v1/auth/tokens", json={  # noqa: E731
            "email": officer.email, "password": NEW_PASSWORD, "otp": otp})
        assert tokens(code_at(t1)).status_code == 401
        assert tokens(code_at(t2)).status_code == 201
        # The link works once.
        assert holder.get(link_path(link["url"])).status_code == 404
    trail = events(officer.id, "user.enrolment")
    assert trail[0][:2] == ("user.enrolment.issue", "allowed") and trail[0][2].startswith("password link")
    assert ("user.enrolment.complete", "denied", "otp wrong") in [t[:3] for t in trail]
    completed = [t for t in trail if t[0] == "user.enrolment.complete" and t[1] == "allowed"]
    assert completed == [("user.enrolment.complete", "allowed", "password link; 2 sign-ins ended", '["password"]')]
    text = " ".join(str(t) for t in events(officer.id)) + caplog.text
    assert NEW_PASSWORD not in text and link_path(link["url"]).rsplit("/", 1)[1] not in text


def test_wrong_codes_lock_the_account_and_change_nothing(client, admin, app, make_user):
    """The link alone is not enough: guessing codes with it locks the account as guessing at sign-in does."""
    _admin, headers = admin
    officer = make_user("officer")
    secret, old_hash = officer.totp_secret_plain, officer.password_hash
    link = issue(client, headers, officer.id)["enrolment"]
    holder = app.test_client()
    page, _shown = open_link(holder, link["url"])
    right = pyotp.TOTP(secret).now()
    guesses = [f"{n:06d}" for n in range(20) if f"{n:06d}" != right][:5]
    for guess in guesses:
        resp = submit(holder, link["url"], page, otp=guess)
        assert resp.status_code == 422
    assert "Too many wrong codes" in resp.get_data(as_text=True)
    locked = submit(holder, link["url"], page, otp=right)
    assert locked.status_code == 422 and "Too many wrong codes" in locked.get_data(as_text=True)
    db.session.refresh(officer)
    assert officer.locked_until is not None and officer.password_hash == old_hash
    denied = [t[2] for t in events(officer.id, "user.enrolment") if t[1] == "denied"]
    assert denied == ["otp wrong"] * 4 + ["otp locked"] * 2
    # An admin unlocks; the holder finishes with the same link.
    assert client.post(f"/api/v1/admin/users/{officer.id}/unlock", headers=headers).status_code == 200
    assert submit(holder, link["url"], page, otp=next_code(secret)).status_code == 200


def test_a_focal_point_chooses_a_new_password_with_the_link_alone(client, admin, app, make_user, api_as):
    """Focal points have no authenticator: the link is the proof (as it is for a new account), and the
    audit log says who issued it; her other sign-ins end."""
    _admin, headers = admin
    focal = make_user("focal_point")
    token_headers = api_as(focal)
    link = issue(client, headers, focal.id)["enrolment"]
    holder = app.test_client()
    page, _shown = open_link(holder, link["url"])
    html = page.get_data(as_text=True)
    assert 'name="otp"' not in html and 'name="current_password"' not in html and 'id="quick-exit"' in html
    done = submit(holder, link["url"], page)
    assert done.status_code == 200 and "New password saved" in done.get_data(as_text=True)
    assert me(client, token_headers) == 401
    assert web_login(app.test_client(), focal.email, NEW_PASSWORD, None).status_code == 302
    assert web_login(app.test_client(), focal.email, PASSWORD, None).status_code == 401


@pytest.mark.parametrize("state, status", [("pending", 409), ("authenticator_reset", 409), ("deactivated", 409),
                                           ("missing", 404)])
def test_a_password_link_is_refused_where_it_could_not_be_used(client, admin, make_user, state, status):
    _admin, headers = admin
    officer = make_user("officer")
    user_id = officer.id
    if state == "pending":
        officer.enrolment_pending = True
    elif state == "authenticator_reset":
        officer.totp_secret_sealed = None  # reset, and its link not used: the code that would prove it is gone
    elif state == "deactivated":
        officer.active = False
    else:
        user_id = officer.id + 1000
    db.session.commit()
    resp = client.post(f"/api/v1/admin/users/{user_id}/password-reset", headers=headers)
    assert resp.status_code == status, resp.get_json()
    assert db.session.scalar(select(Enrolment).where(Enrolment.user_id == officer.id)) is None


@pytest.mark.parametrize("role", ["focal_point", "officer", "supervisor", "service_provider", "oversight"])
def test_only_admins_issue_password_links(client, login_as, make_user, role):
    target = make_user("officer")
    _user, headers = login_as(role)
    assert client.post(f"/api/v1/admin/users/{target.id}/password-reset", headers=headers).status_code == 403
    assert db.session.scalar(select(Enrolment).where(Enrolment.user_id == target.id)) is None


def test_the_admin_page_issues_a_password_link(client, make_user, app):
    from tests.web.test_admin_pages import LINK, sign_in, token

    admin, officer = make_user("admin"), make_user("officer")
    sign_in(client, admin)
    users = client.get("/admin/users").get_data(as_text=True)
    assert f'action="/admin/users/{officer.id}/password-reset"' in users
    page = client.post(f"/admin/users/{officer.id}/password-reset", data={"csrf_token": token(client, "/admin/users")})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Password reset link" in html and LINK.search(html)
    assert page.headers["Cache-Control"] == "no-store"
    assert db.session.scalar(select(User.password_hash).where(User.id == officer.id)) == officer.password_hash
