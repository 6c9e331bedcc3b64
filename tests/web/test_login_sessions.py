"""Web login with CSRF, server-side sessions and their timeouts (SPEC §7, §10)."""
import datetime as dt

import pyotp
import pytest
import time_machine

from referral.accounts.models import UserSession
from referral.extensions import db
from tests.factories import PASSWORD
from tests.web.helpers import csrf_token, web_login

T0 = dt.datetime(2026, 11, 25, 8, 0, 0, tzinfo=dt.UTC)


def now_code(user):
    return pyotp.TOTP(user.totp_secret_plain).at(dt.datetime.now(dt.UTC))


def test_login_page_has_the_contract_fields_and_quick_exit(client):
    resp = client.get("/login")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    for name in ("email", "password", "otp", "csrf_token"):
        assert f'name="{name}"' in html
    assert 'id="quick-exit"' in html
    assert "<title>Sign in · Amanat</title>" in html


def test_login_without_csrf_token_is_refused(client, make_user):
    focal = make_user("focal_point")
    resp = client.post("/login", data={"email": focal.email, "password": PASSWORD})
    assert resp.status_code == 400
    assert "session" not in resp.headers.get("Set-Cookie", "") or "sid" not in resp.get_data(as_text=True)
    assert client.get("/", follow_redirects=False).status_code == 302


@pytest.mark.parametrize("role, heading", [
    ("focal_point", "Your referrals"), ("officer", "Your cases"), ("supervisor", "Unit board"),
    ("service_provider", "Incoming service referrals"), ("oversight", "Oversight"), ("admin", "Administration"),
])
def test_each_role_lands_on_its_own_page(client, make_user, role, heading):
    user = make_user(role)
    resp = web_login(client, user.email, PASSWORD, now_code(user) if user.totp_secret_plain else None)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    home = client.get("/")
    html = home.get_data(as_text=True)
    assert home.status_code == 200
    assert heading in html
    assert home.headers["Cache-Control"] == "no-store"
    assert ('id="quick-exit"' in html) == (role == "focal_point")


def test_wrong_credentials_show_one_generic_message(client, make_user):
    officer = make_user("officer")
    resp = web_login(client, officer.email, PASSWORD, "000000")
    assert resp.status_code == 401
    assert "Invalid e-mail, password or code." in resp.get_data(as_text=True)
    unknown = web_login(client, "ghost@test.amanat.example", PASSWORD, "000000")
    assert unknown.status_code == 401
    assert "Invalid e-mail, password or code." in unknown.get_data(as_text=True)


def test_anonymous_visitor_is_sent_to_login(client):
    resp = client.get("/")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/login")


def test_next_parameter_cannot_send_people_off_site(client, make_user):
    focal = make_user("focal_point")
    page = client.get("/login?next=//evil.example/x")
    resp = client.post("/login?next=//evil.example/x", data={
        "email": focal.email, "password": PASSWORD, "csrf_token": csrf_token(page.get_data(as_text=True))})
    assert resp.headers["Location"] == "/"


def test_logout_revokes_the_session_on_the_server(client, make_user):
    focal = make_user("focal_point")
    web_login(client, focal.email, PASSWORD)
    stolen_cookie = client.get_cookie("amanat_session").value
    home = client.get("/")
    client.post("/logout", data={"csrf_token": csrf_token(home.get_data(as_text=True))})
    assert client.get("/").status_code == 302
    # Replaying the old cookie does not bring the session back.
    client.set_cookie("amanat_session", stolen_cookie)
    assert client.get("/").status_code == 302
    row = db.session.scalar(db.select(UserSession).where(UserSession.user_id == focal.id))
    assert row.revoked_at is not None


def test_signing_in_again_ends_the_earlier_session_on_the_server(client, make_user):
    """A second sign-in on a shared phone (or the same person's) must not leave the first one alive for
    anyone holding a copy of its cookie."""
    first, second = make_user("focal_point"), make_user("focal_point")
    web_login(client, first.email, PASSWORD)
    old_cookie = client.get_cookie("amanat_session").value
    web_login(client, second.email, PASSWORD)
    client.set_cookie("amanat_session", old_cookie)
    assert client.get("/").status_code == 302  # the first sign-in is over
    rows = db.session.scalars(db.select(UserSession).where(UserSession.user_id == first.id)).all()
    assert [r.revoked_at is not None for r in rows] == [True]


def test_session_ends_after_fifteen_idle_minutes(client, make_user):
    officer = make_user("officer")
    with time_machine.travel(T0, tick=False) as traveller:
        web_login(client, officer.email, PASSWORD, now_code(officer))
        traveller.shift(dt.timedelta(minutes=14))
        assert client.get("/").status_code == 200
        traveller.shift(dt.timedelta(minutes=14))
        assert client.get("/").status_code == 200  # activity keeps it alive
        traveller.shift(dt.timedelta(minutes=15, seconds=1))
        assert client.get("/").status_code == 302


def test_session_ends_after_twelve_hours_however_active(client, make_user):
    officer = make_user("officer")
    with time_machine.travel(T0, tick=False) as traveller:
        web_login(client, officer.email, PASSWORD, now_code(officer))
        for _ in range(12 * 6 - 1):
            traveller.shift(dt.timedelta(minutes=10))
            assert client.get("/").status_code == 200
        traveller.shift(dt.timedelta(minutes=10))
        assert client.get("/").status_code == 302


def test_session_cookie_authenticates_api_but_writes_need_csrf(client, make_user):
    admin = make_user("admin")
    target = make_user("officer")
    web_login(client, admin.email, PASSWORD, now_code(admin))
    home = client.get("/")
    assert client.get("/api/v1/me").status_code == 200
    # A cross-site request could ride the cookie; without the CSRF token it is refused.
    refused = client.post(f"/api/v1/admin/users/{target.id}/unlock")
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"] == "bad_request"
    allowed = client.post(f"/api/v1/admin/users/{target.id}/unlock",
                          headers={"X-CSRFToken": csrf_token(home.get_data(as_text=True))})
    assert allowed.status_code == 200


def test_sign_out_works_from_an_error_page_and_keeps_the_language(client, make_user):
    focal = make_user("focal_point")
    client.get("/login?lang=ru")
    web_login(client, focal.email, PASSWORD)
    assert '<html lang="ru">' in client.get("/").get_data(as_text=True)  # the choice survives sign-in
    missing = client.get("/no-such-page")
    html = missing.get_data(as_text=True)
    assert missing.status_code == 404 and 'id="quick-exit"' in html
    client.post("/logout", data={"csrf_token": csrf_token(html)})
    assert client.get("/").status_code == 302


def test_language_links_keep_the_other_arguments(client):
    html = client.get("/login?next=/oversight").get_data(as_text=True)
    assert 'href="/login?next=%2Foversight&amp;lang=ky"' in html
