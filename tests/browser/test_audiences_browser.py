"""Each audience's main flow in real Chromium, with and without JavaScript.

An officer accepts an offer and works the case (action, protection order, service
referral, closure request); the supervisor approves the closure from the unit
board; the provider accepts and completes the service referral; an auditor reads
the dashboard, opens the case through break-glass, and another auditor reviews it.
"""
from __future__ import annotations

import datetime as dt
import os

import pyotp
import pytest
from playwright.sync_api import expect

from referral.accounts.services import NewUser, create_user
from referral.extensions import db
from referral.reference.models import (
    Area, AreaKind, Organisation, OrganisationKind, OrganisationService, ServiceType, Unit,
)
from referral.referrals.schemas import Submission
from referral.referrals.services import create_referral
from referral.standards.models import Course, CourseRequirement
from referral.standards.services import record_certification
from config.settings import PROJECT_ROOT
from tests.referrals.helpers import canaries, submission

pytestmark = pytest.mark.browser
PASSWORD = "audience browser passphrase"


def make_world(live_app, tag: str) -> dict:
    """A district with a unit requiring closure approval, a group, a clinic, one of each role and an offered case."""
    with live_app.app_context():
        district = Area(code=f"AU{tag}-D", name=f"Audience district {tag}", kind=AreaKind.district)
        unit = Unit(code=f"U-AU{tag}", name="Audience police", areas=[district], closure_approval=True)
        group = Organisation(code=f"WG-AU{tag}", name="Audience group", kind=OrganisationKind.womens_group,
                             areas=[district])
        clinic = Organisation(code=f"HC-AU{tag}", name=f"Audience clinic {tag}", kind=OrganisationKind.provider,
                              areas=[district], services=[OrganisationService(service_type=ServiceType.health)])
        db.session.add_all([district, unit, group, clinic])
        if db.session.query(Course).filter_by(code="AU-CORE").first() is None:
            db.session.add(Course(code="AU-CORE", name="Core", validity_months=24, required_for=CourseRequirement.all))
        db.session.flush()
        people = {}
        for key, role, extra in (("focal", "focal_point", {"org": group.code}),
                                 ("officer", "officer", {"unit": unit.code, "gender": "female", "languages": ["ky", "ru"]}),
                                 ("supervisor", "supervisor", {"unit": unit.code}),
                                 ("provider", "service_provider", {"org": clinic.code}),
                                 ("auditor", "oversight", {}), ("reviewer", "oversight", {}),
                                 ("admin", "admin", {})):
            user, secret = create_user(None, NewUser(email=f"{key}.{tag}@audience.amanat.example", name=f"{key} {tag}",
                                                     role=role, password=PASSWORD, **extra))
            people[key] = (user.email, secret)
        record_certification(None, people["officer"][0], "AU-CORE", dt.date.today() - dt.timedelta(days=10))
        values = canaries()
        focal = db.session.scalar(db.select(type(user)).where(type(user).email == people["focal"][0]))
        referral = create_referral(db.session, focal, Submission().load(submission(district.code, values)))
        db.session.commit()
        return {"people": people, "case_id": referral.id, "reference": referral.reference, "values": values}


@pytest.fixture(scope="module", params=[True, False], ids=["with-js", "without-js"])
def world(request, live_app):
    shots = PROJECT_ROOT / "docs" / "screenshots"
    return make_world(live_app, "J" if request.param else "N") | {"javascript": request.param, "shots": shots}


def shot(page, world, name: str) -> None:
    """With REFERRAL_SCREENSHOTS=1 the main pages (a 360-pixel phone, JavaScript on) refresh docs/screenshots."""
    if os.environ.get("REFERRAL_SCREENSHOTS") == "1" and world["javascript"]:
        page.screenshot(path=str(world["shots"] / f"{name}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing overflows sideways


def open_as(browser, base, world, who):
    context = browser.new_context(java_script_enabled=world["javascript"], viewport={"width": 360, "height": 740})
    page = context.new_page()
    email, secret = world["people"][who]
    page.goto(f"{base}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return context, page


def test_officer_supervisor_provider_and_oversight_flows(browser, live_server, world):
    reference, values = world["reference"], world["values"]
    # Officer: the offer, accept, work, protection order, service referral, closure request.
    context, page = open_as(browser, live_server, world, "officer")
    try:
        expect(page.get_by_role("heading", name="Your cases")).to_be_visible()
        page.get_by_role("link", name=reference).click()
        assert values["survivor.name"] not in page.content()  # an offer shows no content
        page.get_by_role("button", name="Accept").click()
        expect(page.get_by_text(values["survivor.name"])).to_be_visible()
        assert reference not in page.title() and "Canary" not in page.title()
        page.get_by_label("What did you do?").select_option("risk_assessment")
        page.get_by_role("button", name="Save").click()
        # The page after the save, not the one before it: the accept already flashed "Saved.", and with
        # JavaScript the form is sent only after the sign-in check answers (so the click returns first).
        expect(page.get_by_role("listitem").filter(has_text="Risk assessment")).to_be_visible()
        expect(page.get_by_role("status")).to_have_text("Saved.")
        page.get_by_label("What did you do?").select_option("protection_order_issued")
        page.get_by_label("Ends on").fill((dt.date.today() + dt.timedelta(days=30)).isoformat())
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("heading", name="Protection orders")).to_be_visible()
        page.get_by_label("Her name").check()
        page.get_by_role("button", name="Send to the service").click()
        expect(page.get_by_role("heading", name="Service referrals")).to_be_visible()
        page.get_by_label("Outcome").select_option("services_provided")
        page.get_by_role("button", name="Close case").click()
        expect(page.locator("#closure-pending")).to_contain_text("waiting for the supervisor")
        shot(page, world, "officer-case-en")
        assert "/cases/" in page.url and "Canary" not in page.url
    finally:
        context.close()

    # Supervisor: the closure waits on the unit board; approve it.
    context, page = open_as(browser, live_server, world, "supervisor")
    try:
        expect(page.get_by_role("heading", name="Closures to approve (1)")).to_be_visible()
        shot(page, world, "supervisor-board-en")
        page.get_by_role("link", name=reference).click()
        page.get_by_role("button", name="Approve closure").click()
        expect(page.get_by_role("status")).to_have_text("Saved.")
        expect(page.locator("p strong").first).to_have_text("Closed")
    finally:
        context.close()

    # Provider: only the shared field, then accept and complete.
    context, page = open_as(browser, live_server, world, "provider")
    try:
        expect(page.get_by_role("heading", name="Incoming service referrals")).to_be_visible()
        page.get_by_role("link", name=reference).click()
        expect(page.get_by_text(values["survivor.name"])).to_be_visible()
        assert values["incident.narrative"] not in page.content()
        shot(page, world, "provider-referral-en")
        page.get_by_role("button", name="Accept").click()
        page.get_by_label("Outcome").select_option("provided")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("p strong")).to_have_text("Completed")
    finally:
        context.close()

    # Oversight: dashboard and audit search, then break-glass into the case.
    context, page = open_as(browser, live_server, world, "auditor")
    try:
        page.goto(f"{live_server}/oversight")
        expect(page.locator("svg").first).to_be_visible()
        shot(page, world, "oversight-dashboard-en")
        page.get_by_role("link", name="Audit search").click()
        expect(page.get_by_role("heading", name="Audit search")).to_be_visible()
        page.goto(f"{live_server}/oversight/break-glass?case_id={world['case_id']}")
        page.get_by_label("Why do you need to see this case?").fill("Complaint 2026/77 asks how this case was handled.")
        page.get_by_role("button", name="Open the case").click()
        expect(page.get_by_text(values["survivor.name"])).to_be_visible()
    finally:
        context.close()
    context, page = open_as(browser, live_server, world, "reviewer")
    try:
        page.goto(f"{live_server}/oversight/break-glass")
        page.get_by_role("button", name="Justified").first.click()
        expect(page.get_by_role("status")).to_have_text("Saved.")
        expect(page.get_by_role("cell", name="Justified").first).to_be_visible()
        shot(page, world, "break-glass-review-en")
    finally:
        context.close()


def test_admin_creates_an_officer_and_records_a_certification(browser, live_server, world):
    tag = "j" if world["javascript"] else "n"
    context, page = open_as(browser, live_server, world, "admin")
    try:
        expect(page.get_by_role("heading", name="Administration")).to_be_visible()
        page.goto(f"{live_server}/admin/users")
        page.get_by_label("E-mail", exact=True).fill(f"new.officer.{tag}@audience.amanat.example")
        page.get_by_label("Name").fill("New Officer")
        page.locator("#role").select_option("officer")  # the filter above has a "Role" too
        page.get_by_label("Unit code (officers and supervisors)").fill(f"U-AU{tag.upper()}")
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_role("heading", name="Account created")).to_be_visible()
        link = page.get_by_label("Set-up link").input_value()
        assert "/enrol/" in link and "secret" not in page.url.lower() and "/enrol/" not in page.url
        assert page.locator("#totp-secret").count() == 0 and "otpauth" not in page.content()
        shot(page, world, "admin-account-created-en")
        page.goto(f"{live_server}/admin/courses")
        page.get_by_label("E-mail of the officer or supervisor").fill(f"new.officer.{tag}@audience.amanat.example")
        page.get_by_label("Course", exact=True).select_option("AU-CORE")
        page.get_by_label("Completed on (YYYY-MM-DD)").fill(dt.date.today().isoformat())
        page.get_by_role("button", name="Record").click()
        expect(page.get_by_role("status")).to_contain_text("Certification recorded")
    finally:
        context.close()

    # The holder, in a browser of their own, sets the account up with the link the admin handed over.
    context = browser.new_context(java_script_enabled=world["javascript"], viewport={"width": 360, "height": 740})
    page = context.new_page()
    try:
        page.goto(link)
        expect(page.get_by_role("heading", name="Set up your account")).to_be_visible()
        page.get_by_label("New password (8 to 128 characters)").fill("a long new officer passphrase")
        page.get_by_label("New password again").fill("a long new officer passphrase")
        secret = page.get_by_label("Key").input_value()
        assert page.locator("#totp-uri").get_attribute("href").startswith("otpauth://totp/")
        shot(page, world, "enrolment-en")
        page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Finish set-up").click()
        expect(page.get_by_role("heading", name="Set-up complete")).to_be_visible()
        page.get_by_role("link", name="Sign in").click()
        page.get_by_label("E-mail").fill(f"new.officer.{tag}@audience.amanat.example")
        page.get_by_label("Password").fill("a long new officer passphrase")
        # The code that confirmed the set-up is used up; the next one (a step ahead) signs in.
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
        page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(later))
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    finally:
        context.close()
