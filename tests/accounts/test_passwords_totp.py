import datetime as dt

import pyotp
import pytest

from referral.security import passwords, totp


@pytest.mark.parametrize("candidate, problem", [
    ("short7!", "at least 8"),
    ("x" * 129, "at most 128"),
    ("password123", "too common"),
    ("Qwerty123", "too common"),
    ("someone@example.org", "e-mail"),
])
def test_password_rules_refuse(candidate, problem):
    problems = passwords.password_problems(candidate, email="someone@example.org")
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize("candidate", ["eight ch", "a" * 8 + "Z", "x" * 128, "долгий пароль 2026"])
def test_password_rules_accept(candidate):
    assert passwords.password_problems(candidate) == []


def test_argon2id_hash_verifies_and_is_not_the_password():
    stored = passwords.hash_password("long enough secret", "fast-tests")
    assert stored.startswith("$argon2id$")
    assert "long enough secret" not in stored
    assert passwords.verify_password(stored, "long enough secret")
    assert not passwords.verify_password(stored, "long enough secreT")
    assert not passwords.verify_password("not a hash", "anything")


def test_production_profile_is_stronger_than_test_profile():
    assert passwords.needs_rehash(passwords.hash_password("long enough secret", "fast-tests"), "default")


def test_totp_code_is_accepted_once_then_refused_as_replay():
    secret = totp.new_secret()
    now = dt.datetime(2026, 11, 25, 10, 0, 15, tzinfo=dt.UTC)
    code = pyotp.TOTP(secret).at(now)
    counter = totp.matching_counter(secret, code, now, None)
    assert counter is not None
    assert totp.matching_counter(secret, code, now, counter) is None
    later = now + dt.timedelta(seconds=30)
    assert totp.matching_counter(secret, pyotp.TOTP(secret).at(later), later, counter) == counter + 1


def test_totp_refuses_codes_outside_the_window_and_garbage():
    secret = totp.new_secret()
    now = dt.datetime(2026, 11, 25, 10, 0, 15, tzinfo=dt.UTC)
    old = pyotp.TOTP(secret).at(now - dt.timedelta(minutes=2))
    assert totp.matching_counter(secret, old, now, None) is None
    for junk in ("", "12345", "abcdef", "1234567", None):
        assert totp.matching_counter(secret, junk, now, None) is None
