"""A focal point refers a survivor in real Chromium, with and without JavaScript; quick exit leaves no trace."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from referral.accounts.services import NewUser, create_user
from referral.extensions import db
from referral.reference.models import Area, AreaKind, Organisation, OrganisationKind, Unit

pytestmark = pytest.mark.browser
PASSWORD = "focal browser passphrase"


@pytest.fixture(scope="module")
def focal(live_app):
    with live_app.app_context():
        district = Area(code="BR-D", name="Browser district", kind=AreaKind.district)
        village = Area(code="BR-D-1", name="Browser village", kind=AreaKind.community, parent=district)
        db.session.add_all([district, village, Unit(code="U-BRF", name="Browser police", areas=[district]),
                            Organisation(code="WG-BR", name="Browser group", kind=OrganisationKind.womens_group,
                                         areas=[district])])
        db.session.flush()
        user, _ = create_user(None, NewUser(email="browser.focal@test.amanat.example", name="Browser Focal",
                                            role="focal_point", password=PASSWORD, org="WG-BR"))
        db.session.commit()
        return user.email


def sign_in(page, base, email):
    page.goto(f"{base}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your referrals")).to_be_visible()


@pytest.mark.parametrize("javascript", [True, False], ids=["with-js", "without-js"])
def test_focal_point_refers_and_sees_the_stage(browser, live_server, focal, javascript):
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    try:
        sign_in(page, live_server, focal)
        page.get_by_role("link", name="Refer a survivor").click()
        expect(page.get_by_role("heading", name="New referral")).to_be_visible()
        page.get_by_label("Where did it happen (village or district)?").select_option("BR-D-1")
        page.get_by_label("Her age").select_option("18-25")
        page.get_by_role("group", name="Was she hit, beaten, choked or hurt in another physical way?") \
            .get_by_label("Yes").check()
        page.get_by_label("She agrees that the police receive this referral").check()
        page.get_by_role("button", name="Send referral").click()
        expect(page.get_by_role("status")).to_contain_text("Keep this reference")
        reference = page.get_by_role("heading").inner_text().split()[-1]
        assert reference.startswith("R-")
        expect(page.locator("strong")).to_have_text("With the police supervisor")  # no certified officer here
        page.get_by_role("link", name="Back").click()
        expect(page.get_by_text(reference)).to_be_visible()
    finally:
        context.close()


def test_quick_exit_leaves_for_a_neutral_site_and_replaces_history(browser, live_server, focal):
    context = browser.new_context()
    page = context.new_page()
    # The neutral site is answered locally: this machine has no outside network.
    context.route("https://www.google.com/**", lambda route: route.fulfill(body="<p>Weather</p>",
                                                                          content_type="text/html"))
    try:
        sign_in(page, live_server, focal)
        page.goto(f"{live_server}/referrals/new")
        page.locator("#quick-exit").click()
        page.wait_for_url("https://www.google.com/**")
        page.go_back()
        # Back leads to the page before the form, never to the form itself.
        assert not page.url.endswith("/referrals/new")
    finally:
        context.close()
