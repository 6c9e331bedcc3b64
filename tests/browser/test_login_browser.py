"""Signing in with password and TOTP in a real Chromium, and signing out."""
from __future__ import annotations


import pyotp
import pytest
from playwright.sync_api import expect

from referral.accounts.services import NewUser, create_user
from referral.extensions import db
from referral.reference.models import Unit

pytestmark = pytest.mark.browser
PASSWORD = "browser test passphrase"


@pytest.fixture(scope="module")
def officer(live_app):
    with live_app.app_context():
        db.session.add(Unit(code="U-BR", name="Browser unit", areas=[]))
        db.session.flush()
        user, secret = create_user(None, NewUser(email="browser.officer@test.amanat.example", name="Browser Officer",
                                                 role="officer", password=PASSWORD, unit="U-BR"))
        db.session.commit()
        return user.email, secret


def sign_in(page, base, email, password, otp):
    page.goto(f"{base}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Code from your authenticator app").fill(otp)
    page.get_by_role("button", name="Sign in").click()


def test_officer_signs_in_with_totp_and_out_again(page, live_server, officer):
    email, secret = officer
    sign_in(page, live_server, email, PASSWORD, pyotp.TOTP(secret).now())
    expect(page.get_by_role("heading", name="Your cases")).to_be_visible()
    assert page.url == f"{live_server}/"
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(f"{live_server}/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_wrong_code_shows_the_generic_message(page, live_server, officer):
    email, secret = officer
    sign_in(page, live_server, email, PASSWORD, "000000")
    expect(page.get_by_role("alert")).to_have_text("Invalid e-mail, password or code.")
    assert page.get_by_label("Password").input_value() == ""
