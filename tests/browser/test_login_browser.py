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


@pytest.fixture(scope="module")
def focal_point(live_app):
    from referral.reference.models import Organisation, OrganisationKind

    with live_app.app_context():
        db.session.add(Organisation(code="WG-PW", name="Password group", kind=OrganisationKind.womens_group))
        db.session.flush()
        user, _secret = create_user(None, NewUser(email="browser.focal.pw@test.amanat.example", name="Browser Focal",
                                                  role="focal_point", password=PASSWORD, org="WG-PW"))
        db.session.commit()
        return user.email


def test_a_focal_point_changes_her_password_from_the_header(page, live_server, focal_point):
    new = "another browser passphrase"
    sign_in(page, live_server, focal_point, PASSWORD, "")  # focal points have no code
    page.get_by_role("link", name="Change password").click()
    expect(page.get_by_role("heading", name="Change password")).to_be_visible()
    page.get_by_label("Your password").fill("not the password")
    page.get_by_label("New password (8 to 128 characters)").fill(new)
    page.get_by_label("New password again").fill(new)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_have_text("This is not your current password.")
    assert page.get_by_label("Your password").input_value() == ""  # no password is ever sent back
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_label("New password (8 to 128 characters)").fill(new)
    page.get_by_label("New password again").fill(new)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status")).to_contain_text("Every other sign-in to your account has ended.")
    page.get_by_role("button", name="Sign out").click()
    page.get_by_label("E-mail").fill(focal_point)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Invalid e-mail, password or code.")
    page.get_by_label("Password").fill(new)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("link", name="Change password")).to_be_visible()
