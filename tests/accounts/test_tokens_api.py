"""Bearer tokens, lockout and TOTP through the API (SPEC §7, §12)."""
import datetime as dt

import pyotp
import time_machine

from referral.accounts.models import ApiToken
from referral.extensions import db
from referral.security.tokens import digest
from tests.factories import PASSWORD

T0 = dt.datetime(2026, 11, 25, 9, 0, 0, tzinfo=dt.UTC)


def code(user, when=None):
    return pyotp.TOTP(user.totp_secret_plain).at(when or dt.datetime.now(dt.UTC))


def ask_token(client, email, password, otp=None):
    body = {"email": email, "password": password}
    if otp is not None:
        body["otp"] = otp
    return client.post("/api/v1/auth/tokens", json=body)


def test_officer_gets_a_token_with_password_and_totp_and_reads_me(client, make_user):
    officer = make_user("officer")
    with time_machine.travel(T0, tick=False):
        resp = ask_token(client, officer.email.upper(), PASSWORD, code(officer, T0))
        assert resp.status_code == 201
        body = resp.get_json()
        assert body["token"].startswith("amn_")
        assert dt.datetime.fromisoformat(body["expires_at"]) == T0 + dt.timedelta(hours=12)
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.get_json()["email"] == officer.email
    assert me.get_json()["role"] == "officer"
    assert "password_hash" not in me.get_json() and "totp_secret" not in me.get_json()
    assert me.headers["Cache-Control"] == "no-store"


def test_token_is_stored_only_as_its_hash(client, make_user):
    officer = make_user("officer")
    raw = ask_token(client, officer.email, PASSWORD, code(officer)).get_json()["token"]
    row = db.session.scalar(db.select(ApiToken).where(ApiToken.user_id == officer.id))
    assert row.token_hash == digest(raw)
    assert raw.encode() not in row.token_hash


def test_focal_point_signs_in_without_totp(client, make_user):
    focal = make_user("focal_point")
    assert focal.totp_secret_plain is None
    assert ask_token(client, focal.email, PASSWORD).status_code == 201


def test_case_reading_role_needs_the_code(client, make_user):
    officer = make_user("officer")
    resp = ask_token(client, officer.email, PASSWORD)
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "invalid_credentials"


def test_replayed_totp_code_is_refused(client, make_user):
    officer = make_user("officer")
    with time_machine.travel(T0, tick=False):
        first = code(officer, T0)
        assert ask_token(client, officer.email, PASSWORD, first).status_code == 201
        again = ask_token(client, officer.email, PASSWORD, first)
    assert again.status_code == 401


def test_unknown_email_and_wrong_password_answer_identically(client, make_user):
    officer = make_user("officer")
    unknown = ask_token(client, "nobody@test.amanat.example", PASSWORD, "123456")
    wrong = ask_token(client, officer.email, "wrong password!", code(officer))
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.get_json() == wrong.get_json()


def test_five_failures_in_fifteen_minutes_lock_the_account(client, make_user):
    officer = make_user("officer")
    with time_machine.travel(T0, tick=False) as traveller:
        for _ in range(5):
            assert ask_token(client, officer.email, "wrong password!").status_code == 401
            traveller.shift(dt.timedelta(minutes=2))
        # Locked: the right password and code now fail, and look like any failure.
        locked = ask_token(client, officer.email, PASSWORD, code(officer, dt.datetime.now(dt.UTC)))
        assert locked.status_code == 401
        unknown = ask_token(client, "nobody@test.amanat.example", PASSWORD, "123456")
        assert locked.get_json() == unknown.get_json()
        traveller.shift(dt.timedelta(minutes=16))
        assert ask_token(client, officer.email, PASSWORD, code(officer, dt.datetime.now(dt.UTC))).status_code == 201


def test_failures_spread_over_more_than_the_window_do_not_lock(client, make_user):
    officer = make_user("officer")
    with time_machine.travel(T0, tick=False) as traveller:
        for _ in range(6):
            assert ask_token(client, officer.email, "wrong password!").status_code == 401
            traveller.shift(dt.timedelta(minutes=4))
        assert ask_token(client, officer.email, PASSWORD, code(officer, dt.datetime.now(dt.UTC))).status_code == 201


def test_the_window_slides_so_a_burst_across_its_end_still_locks(client, make_user):
    """SPEC §7: five failures in *any* fifteen minutes. A fixed window started by the first failure let a
    burst straddling its end through (four just before, four just after)."""
    officer = make_user("officer")
    with time_machine.travel(T0, tick=False) as traveller:
        assert ask_token(client, officer.email, "wrong password!").status_code == 401
        for at in ("14:50", "14:51", "14:52", "15:01", "15:02"):
            minutes, seconds = map(int, at.split(":"))
            traveller.move_to(T0 + dt.timedelta(minutes=minutes, seconds=seconds))
            assert ask_token(client, officer.email, "wrong password!").status_code == 401
        db.session.refresh(officer)
        # 14:50 to 15:02: five failures within fifteen minutes (the first, at 0:00, has left the window).
        assert officer.locked_until == T0 + dt.timedelta(minutes=15, seconds=2) + dt.timedelta(minutes=15)
        traveller.shift(dt.timedelta(seconds=5))
        assert ask_token(client, officer.email, PASSWORD, code(officer, dt.datetime.now(dt.UTC))).status_code == 401


def test_an_unlock_forgets_the_earlier_failures():
    from referral.accounts.auth import clear_failures, record_failure
    from referral.accounts.models import User

    user = User(email="x@example.org", name="x", role="officer", password_hash="-")
    for minute in range(4):
        record_failure(user, T0 + dt.timedelta(minutes=minute))
    assert user.failed_logins == 4 and user.locked_until is None
    clear_failures(user)
    record_failure(user, T0 + dt.timedelta(minutes=5))
    assert user.failed_logins == 1 and user.locked_until is None


def test_wrong_codes_count_towards_the_lockout(client, make_user):
    officer = make_user("officer")
    with time_machine.travel(T0, tick=False):
        for _ in range(5):
            assert ask_token(client, officer.email, PASSWORD, "000000").status_code == 401
        db.session.refresh(officer)
        assert officer.locked_until == T0 + dt.timedelta(minutes=15)


def test_deactivated_account_cannot_sign_in(client, make_user):
    officer = make_user("officer", active=False)
    assert ask_token(client, officer.email, PASSWORD, code(officer)).status_code == 401


def test_revoking_the_current_token_ends_it(client, login_as):
    _user, headers = login_as("supervisor")
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert client.delete("/api/v1/auth/tokens/current", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_expired_and_garbage_tokens_are_refused(client, login_as):
    with time_machine.travel(T0, tick=False) as traveller:
        _user, headers = login_as("officer")
        assert client.get("/api/v1/me", headers=headers).status_code == 200
        traveller.shift(dt.timedelta(hours=12, seconds=1))
        assert client.get("/api/v1/me", headers=headers).status_code == 401
    for bad in ("Bearer amn_forged", "Bearer ", "Basic abc", "Bearer " + "x" * 5000):
        resp = client.get("/api/v1/me", headers={"Authorization": bad})
        assert resp.status_code == 401
        assert resp.get_json()["error"]["code"] == "unauthenticated"
