"""A focal point refers a survivor in real Chromium, with and without JavaScript; quick exit leaves no trace."""
from __future__ import annotations

from contextlib import contextmanager

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


def _age_sessions(live_app, email, minutes):
    """As if nobody had used the account's sessions for ``minutes``."""
    import datetime as dt

    from sqlalchemy import select, update

    from referral.accounts.models import User, UserSession

    with live_app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == email))
        db.session.execute(update(UserSession).where(UserSession.user_id == user_id).values(
            last_seen_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)))
        db.session.commit()
        return user_id


def _last_seen(live_app, user_id):
    from sqlalchemy import func, select

    from referral.accounts.models import UserSession

    with live_app.app_context():
        return db.session.scalar(select(func.max(UserSession.last_seen_at)).where(UserSession.user_id == user_id))


def _referrals_of(live_app, user_id):
    from sqlalchemy import func, select

    from referral.referrals.models import Referral

    with live_app.app_context():
        return db.session.scalar(select(func.count()).select_from(Referral).where(Referral.submitter_id == user_id))


@contextmanager
def _on_the_form(browser, live_server, email, *, clock=False):
    """A new browser context signed in as ``email`` with the referral form open: (context, page)."""
    context = browser.new_context()
    page = context.new_page()
    if clock:
        page.clock.install()  # the script's minute between pings, fast-forwarded
    try:
        sign_in(page, live_server, email)
        page.goto(f"{live_server}/referrals/new")
        yield context, page
    finally:
        context.close()


def _fill_some(page, story):
    page.get_by_label("Where did it happen (village or district)?").select_option("BR-D-1")
    page.get_by_label("Her age").select_option("26-40")
    page.get_by_label("She agrees that the police receive this referral").check()
    page.get_by_label("What happened, in her words (optional)").fill(story)


def test_a_long_form_outlives_the_idle_limit_and_is_never_lost(browser, live_app, live_server, focal):
    import datetime as dt

    with _on_the_form(browser, live_server, focal, clock=True) as (context, page):
        page.get_by_label("Where did it happen (village or district)?").select_option("BR-D-1")
        page.get_by_label("Her age").select_option("26-40")
        page.get_by_role("group", name="Was she hit, beaten, choked or hurt in another physical way?") \
            .get_by_label("Yes").check()
        page.get_by_label("She agrees that the police receive this referral").check()

        # Ten minutes of writing: typing tells the server, which keeps the sign-in.
        user_id = _age_sessions(live_app, focal, 10)
        page.clock.fast_forward(61_000)
        with page.expect_response(lambda r: r.url.endswith("/session/alive")) as ping:
            page.get_by_label("What happened, in her words (optional)").fill("Synthetic story written slowly")
        assert ping.value.status == 200
        assert dt.datetime.now(dt.UTC) - _last_seen(live_app, user_id) < dt.timedelta(minutes=1)

        # Then the phone is put down for sixteen minutes: Send sends nothing and says why.
        before = _referrals_of(live_app, user_id)
        expect(page.locator("#session-ended")).to_be_hidden()
        _age_sessions(live_app, focal, 16)
        page.get_by_role("button", name="Send referral").click()
        expect(page.locator("#session-ended")).to_be_visible()
        expect(page.locator("#session-ended")).to_be_focused()
        assert page.url.endswith("/referrals/new")
        expect(page.get_by_label("What happened, in her words (optional)")).to_have_value("Synthetic story written slowly")
        assert _referrals_of(live_app, user_id) == before

        # Signing in again in another tab; back here, the same answers are sent.
        other = context.new_page()
        sign_in(other, live_server, focal)
        other.close()
        page.bring_to_front()
        page.get_by_role("button", name="Send referral").click()
        expect(page.get_by_role("status")).to_contain_text("Keep this reference")
        assert _referrals_of(live_app, user_id) == before + 1


def test_a_form_sent_while_the_server_is_unreachable_stays_on_the_page(browser, live_app, live_server, focal):
    with _on_the_form(browser, live_server, focal) as (context, page):
        _fill_some(page, "Synthetic story on a bad line")
        expect(page.locator("#connection-lost")).to_be_hidden()
        context.route("**/session/alive", lambda route: route.abort("internetdisconnected"))
        page.get_by_role("button", name="Send referral").click()
        expect(page.locator("#connection-lost")).to_be_visible()
        expect(page.locator("#session-ended")).to_be_hidden()
        expect(page.get_by_label("What happened, in her words (optional)")).to_have_value("Synthetic story on a bad line")
        assert page.url.endswith("/referrals/new")


def test_a_follow_up_written_after_the_idle_limit_is_kept_and_sent_after_signing_in_again(browser, live_app,
                                                                                         live_server, focal):
    from sqlalchemy import func, select

    from referral.referrals.models import CaseNote, Referral

    context = browser.new_context()
    page = context.new_page()
    try:
        sign_in(page, live_server, focal)
        page.get_by_role("link", name="Refer a survivor").click()
        page.get_by_label("Where did it happen (village or district)?").select_option("BR-D-1")
        page.get_by_label("Her age").select_option("26-40")
        page.get_by_label("She agrees that the police receive this referral").check()
        page.get_by_role("button", name="Send referral").click()
        expect(page.get_by_role("status")).to_contain_text("Keep this reference")
        case_id = page.url.split("/referrals/")[1].split("?")[0]

        def notes():
            with live_app.app_context():
                return db.session.scalar(select(func.count()).select_from(CaseNote).where(
                    CaseNote.referral_id == case_id))

        page.get_by_label("More information").fill("Synthetic follow-up written slowly")
        _age_sessions(live_app, focal, 16)
        page.get_by_role("button", name="Add information").click()
        notice = page.locator("form .session-ended")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("What you wrote is still here")
        expect(page.get_by_label("More information")).to_have_value("Synthetic follow-up written slowly")
        assert notes() == 0

        other = context.new_page()
        sign_in(other, live_server, focal)
        other.close()
        page.get_by_role("button", name="Add information").click()
        expect(page.get_by_role("status")).to_contain_text("Saved.")
        assert notes() == 1
        with live_app.app_context():
            assert db.session.get(Referral, case_id) is not None
    finally:
        context.close()


@pytest.fixture(scope="module")
def second_focal(live_app, focal):
    """Another focal point of the same group: a phone the group shares."""
    with live_app.app_context():
        user, _ = create_user(None, NewUser(email="browser.focal.two@test.amanat.example", name="Second Focal",
                                            role="focal_point", password=PASSWORD, org="WG-BR"))
        db.session.commit()
        return user.email


def test_a_form_is_never_sent_under_someone_else_who_signed_in_on_the_same_phone(browser, live_app, live_server,
                                                                               focal, second_focal):
    with _on_the_form(browser, live_server, focal) as (context, page):
        _fill_some(page, "Synthetic story of the first focal point")
        first_id = _age_sessions(live_app, focal, 16)
        other = context.new_page()
        sign_in(other, live_server, second_focal)  # the phone passes to a colleague, who signs in
        other.close()
        second_id = _age_sessions(live_app, second_focal, 0)
        before = (_referrals_of(live_app, first_id), _referrals_of(live_app, second_id))
        page.get_by_role("button", name="Send referral").click()
        expect(page.locator("#session-ended")).to_be_visible()
        assert page.url.endswith("/referrals/new")
        assert (_referrals_of(live_app, first_id), _referrals_of(live_app, second_id)) == before
        expect(page.get_by_label("What happened, in her words (optional)")).to_have_value(
            "Synthetic story of the first focal point")


@pytest.mark.parametrize("answer", [
    {"status": 503, "body": "busy"},
    {"status": 200, "body": "<html>Log in to the hotel Wi-Fi</html>", "content_type": "text/html"},
], ids=["server-error", "captive-portal"])
def test_a_ping_that_is_not_ours_sends_nothing_and_says_so(browser, live_app, live_server, focal, answer):
    with _on_the_form(browser, live_server, focal) as (context, page):
        _fill_some(page, "Synthetic story behind a portal")
        user_id = _age_sessions(live_app, focal, 0)
        before = _referrals_of(live_app, user_id)
        context.route("**/session/alive", lambda route: route.fulfill(**answer))
        page.get_by_role("button", name="Send referral").click()
        expect(page.locator("#connection-lost")).to_be_visible()
        expect(page.locator("#session-ended")).to_be_hidden()
        assert _referrals_of(live_app, user_id) == before
        # The line clears: the same button sends it, once however often it is pressed.
        context.unroute("**/session/alive")
        button = page.get_by_role("button", name="Send referral")
        button.evaluate("b => { b.click(); b.click(); b.click(); }")
        expect(page.get_by_role("status")).to_contain_text("Keep this reference")
        assert _referrals_of(live_app, user_id) == before + 1


@pytest.mark.parametrize("javascript", [True, False], ids=["with-js", "without-js"])
def test_choosing_another_language_on_the_form_keeps_what_she_typed(browser, live_server, focal, javascript):
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    try:
        sign_in(page, live_server, focal)
        page.goto(f"{live_server}/referrals/new?lang=en")
        page.get_by_label("Her name (optional)").fill("Synthetic Browsername")
        page.get_by_label("Her age").select_option("18-25")
        page.get_by_role("button", name="Русский").click()
        expect(page.get_by_role("heading", name="Новое обращение")).to_be_visible()
        expect(page.get_by_label("Её имя (необязательно)")).to_have_value("Synthetic Browsername")
        expect(page.locator("select[name=age_group]")).to_have_value("18-25")
        # Enter in a field sends the form (its default button), never switches the language.
        page.get_by_label("Её имя (необязательно)").press("Enter")
        expect(page.get_by_role("heading", name="Новое обращение")).to_be_visible()
        assert "lang=ky" not in page.url and "lang=en" not in page.url
        expect(page.locator("html")).to_have_attribute("lang", "ru")
        page.goto(f"{live_server}/?lang=en")  # leave the language as the other tests expect it
    finally:
        context.close()
