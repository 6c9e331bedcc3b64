"""The focal point's pages: refer a survivor without JavaScript, follow the stage, quick exit."""
import datetime as dt
from contextlib import contextmanager

import time_machine
from sqlalchemy import select

from referral.extensions import db
from referral.referrals.models import Referral
from tests.factories import PASSWORD
from tests.web.helpers import csrf_token, web_login
from tests.web.test_error_language import catalog

FORM = {"age_group": "26-40", "sex": "female", "name": "CanaryFormName", "phone": "+996555777888",
        "contact_method": "sms", "contact_notes": "CanaryFormNotes", "incident_date": "2026-11-20",
        "penetration": "no", "sexual_contact": "no", "physical_assault": "yes", "forced_marriage": "no",
        "denial_of_resources": "no", "psychological_abuse": "yes", "immediate_danger": "no",
        "relationship": "intimate_partner", "narrative": "CanaryFormStory", "consent_police": "y",
        "consent_services": "y", "consent_statistics": "y", "given_by": "survivor", "female_officer": "y"}


def test_focal_point_refers_a_survivor_through_the_form(client, place, people, officers):
    focal, _ = people["focal"]
    assert web_login(client, focal.email, PASSWORD).status_code == 302
    page = client.get("/referrals/new")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert 'id="quick-exit"' in html and "<title>New referral · Amanat</title>" in html
    assert len(page.get_data()) < 30 * 1024
    assert place["village"].code in html  # the group's areas and their villages
    data = {**FORM, "area": place["village"].code, "csrf_token": csrf_token(html)}
    sent = client.post("/referrals/new", data=data)
    assert sent.status_code == 302
    location = sent.headers["Location"]
    assert "Canary" not in location
    status = client.get(location)
    body = status.get_data(as_text=True)
    assert status.status_code == 200 and "Waiting for an officer" in body
    assert "Canary" not in body and 'id="quick-exit"' in body
    row = db.session.scalar(select(Referral).order_by(Referral.created_at.desc()))
    assert row.gbv_type == "physical_assault" and row.officer_gender == "female"
    assert row.safe_contact_method == "sms" and b"CanaryFormName" not in bytes(row.survivor_name_sealed)
    home = client.get("/").get_data(as_text=True)
    assert row.reference in home and "Waiting for an officer" in home


def test_form_errors_are_shown_and_nothing_is_stored(client, place, people):
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new").get_data(as_text=True)
    bad = {**FORM, "area": "NOT-MINE", "csrf_token": csrf_token(html)}
    resp = client.post("/referrals/new", data=bad)
    assert resp.status_code == 422 and 'aria-invalid="true"' in resp.get_data(as_text=True)
    assert db.session.scalar(select(Referral)) is None
    no_csrf = client.post("/referrals/new", data={**FORM, "area": place["village"].code})
    assert no_csrf.status_code == 400


def test_the_form_speaks_kyrgyz(client, people):
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new?lang=ky").get_data(as_text=True)
    assert '<html lang="ky">' in html and "Жаңы кайрылуу" in html and "Тез чыгуу" in html


def test_only_focal_points_use_the_referral_form(client, make_user):
    import pyotp

    officer = make_user("officer")
    web_login(client, officer.email, PASSWORD, pyotp.TOTP(officer.totp_secret_plain).now())
    assert client.get("/referrals/new").status_code == 403


def test_the_status_page_discloses_and_audits_the_stage_only(client, place, people, officers):
    import pyotp

    from referral.audit.models import AuditEvent

    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new").get_data(as_text=True)
    sent = client.post("/referrals/new", data={**FORM, "area": place["village"].code, "csrf_token": csrf_token(html)})
    case_id = sent.headers["Location"].split("/referrals/")[1].split("?")[0]
    sup_client = client.application.test_client()
    supervisor = people["supervisor"][0]
    web_login(sup_client, supervisor.email, PASSWORD, pyotp.TOTP(supervisor.totp_secret_plain).now())
    page = sup_client.get(f"/referrals/{case_id}").get_data(as_text=True)
    assert "CanaryFormName" not in page
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.actor_id == supervisor.id,
                                                        AuditEvent.action == "referral.read")).all()[-1]
    assert event.fields == '["reference","status"]'


def test_sms_contact_without_a_phone_is_marked_on_the_phone_field(client, place, people):
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new").get_data(as_text=True)
    resp = client.post("/referrals/new", data={**FORM, "phone": "", "area": place["village"].code,
                                               "csrf_token": csrf_token(html)})
    assert resp.status_code == 422 and "Give her phone number" in resp.get_data(as_text=True)


def test_focal_point_adds_information_and_withdraws_on_the_web(client, place, people, officers):
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new").get_data(as_text=True)
    sent = client.post("/referrals/new", data={**FORM, "area": place["village"].code, "csrf_token": csrf_token(html)})
    status_url = sent.headers["Location"].split("?")[0]
    page = client.get(status_url).get_data(as_text=True)
    token = csrf_token(page)
    client.post(status_url + "/information", data={"csrf_token": token, "text": "CanaryMoreInfo she moved"})
    row = db.session.scalar(select(Referral).order_by(Referral.created_at.desc()))
    db.session.refresh(row)
    assert len(row.notes) == 1 and b"CanaryMoreInfo" not in bytes(row.notes[0].body_sealed)
    assert "CanaryMoreInfo" not in client.get(status_url).get_data(as_text=True)  # stage only, even for her
    client.post(status_url + "/withdraw", data={"csrf_token": token})  # a tap alone: nothing happens
    page = client.get(status_url).get_data(as_text=True)
    assert "Nothing was withdrawn: tick the box" in page and "Withdraw the referral" in page
    db.session.refresh(row)
    assert row.status.value != "withdrawn"
    client.post(status_url + "/withdraw", data={"csrf_token": token, "confirm_withdraw": "y"})
    page = client.get(status_url).get_data(as_text=True)
    assert "Withdrawn" in page and "Withdraw the referral" not in page


def transferred(client, url: str) -> tuple[int, str]:
    """Bytes of the page and of every stylesheet and script it loads (what a phone downloads)."""
    import re

    page = client.get(url)
    assert page.status_code == 200, url
    html = page.get_data(as_text=True)
    total = len(page.get_data())
    for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', html):
        with client.get(asset) as response:
            total += len(response.get_data())
    return total, html


def test_every_focal_page_is_small_and_has_quick_exit(client, place, people, officers):
    """Issue 8: each focal-point page at most 30 KB transferred, with the quick-exit control."""
    size, html = transferred(client, "/login")
    assert size <= 30 * 1024 and 'id="quick-exit"' in html
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new").get_data(as_text=True)
    sent = client.post("/referrals/new", data={**FORM, "area": place["village"].code, "csrf_token": csrf_token(html)})
    status_url = sent.headers["Location"].split("?")[0]
    for url in ("/", "/referrals/new", status_url, "/referrals/new?lang=ky", "/?lang=tg", status_url + "?lang=uz"):
        size, html = transferred(client, url)
        assert size <= 30 * 1024, f"{url}: {size} bytes"
        assert 'id="quick-exit"' in html, url
    # SPEC §10: *every* page a focal point can open, not only those listed above (the change-password page
    # is linked from every page's header): each page path of the app without parameters.
    pages = 0
    for rule in client.application.url_map.iter_rules():
        if "GET" not in rule.methods or rule.arguments or rule.rule.startswith(("/api/", "/static", "/metrics")):
            continue
        page = client.get(rule.rule)
        if page.status_code == 200 and page.mimetype == "text/html":
            pages += 1
            assert 'id="quick-exit"' in page.get_data(as_text=True), rule.rule
    assert pages >= 3


@contextmanager
def _form_open_at_a_frozen_time(client, people):
    """The focal point signed in with the referral form open, the clock stopped: (traveller, the form's page)."""
    with time_machine.travel(dt.datetime.now(dt.UTC), tick=False) as traveller:
        web_login(client, people["focal"][0].email, PASSWORD)
        yield traveller, client.get("/referrals/new").get_data(as_text=True)


def test_a_form_sent_after_the_sign_in_ended_is_refused_with_a_message_not_silently_dropped(client, place, people,
                                                                                           officers):
    with _form_open_at_a_frozen_time(client, people) as (traveller, html):
        traveller.shift(dt.timedelta(minutes=15, seconds=1))  # the phone was put down
        sent = client.post("/referrals/new", data={**FORM, "area": place["village"].code,
                                                   "csrf_token": csrf_token(html)})
        assert sent.status_code == 302 and sent.headers["Location"].startswith("/login")
        login = client.get(sent.headers["Location"]).get_data(as_text=True)
    assert "You were signed out, so what you sent was not saved. Sign in and send it again." in login
    assert "Canary" not in login and "Canary" not in sent.headers["Location"]
    assert db.session.scalar(select(Referral)) is None


def test_session_alive_keeps_a_typing_user_signed_in_and_hands_the_current_csrf_token(client, place, people,
                                                                                      officers):
    with _form_open_at_a_frozen_time(client, people) as (traveller, html):
        assert 'data-keep-alive="/session/alive"' in html and "keep-alive.js" in html
        assert 'id="session-ended"' in html and 'id="connection-lost"' in html
        for _minute in range(3):  # 42 minutes of typing, a ping every 14 of them
            traveller.shift(dt.timedelta(minutes=14))
            alive = client.get("/session/alive")
            assert alive.status_code == 200 and alive.headers["Cache-Control"] == "no-store"
            assert alive.get_json() == {"csrf_token": alive.get_json()["csrf_token"], "user": people["focal"][0].id}
        sent = client.post("/referrals/new", data={**FORM, "area": place["village"].code,
                                                   "csrf_token": alive.get_json()["csrf_token"]})
        assert sent.status_code == 302 and "/referrals/" in sent.headers["Location"]
        assert db.session.scalar(select(Referral)) is not None
        traveller.shift(dt.timedelta(minutes=15, seconds=1))
        ended = client.get("/session/alive")
        assert ended.status_code == 302 and ended.headers["Location"].startswith("/login")


def test_a_new_sign_in_elsewhere_gives_the_open_form_a_token_that_works(client, place, people, officers):
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token(html)})
    web_login(client, focal.email, PASSWORD)  # in another tab: a new session, a new CSRF secret
    data = {**FORM, "area": place["village"].code}
    assert client.post("/referrals/new", data={**data, "csrf_token": csrf_token(html)}).status_code == 400
    fresh = client.get("/session/alive").get_json()["csrf_token"]
    assert client.post("/referrals/new", data={**data, "csrf_token": fresh}).status_code == 302


def test_every_form_with_free_text_outlives_the_idle_limit(client, place, people, officers):
    """The referral form, the focal point's follow-up, the officer's action note and the provider's outcome
    note carry keep-alive.js and its two notices, translated."""
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new").get_data(as_text=True)
    sent = client.post("/referrals/new", data={**FORM, "area": place["village"].code, "csrf_token": csrf_token(html)})
    status = client.get(sent.headers["Location"] + "&lang=ru").get_data(as_text=True)
    for page in (html, status):
        assert page.count("data-keep-alive=") == 1 and "keep-alive.js" in page
        assert 'class="error session-ended"' in page and 'class="error connection-lost"' in page
    assert "Написанное осталось здесь" in status


def test_an_untouched_age_or_place_question_is_asked_again_not_guessed(client, place, people):
    """The age and place selects start on "Choose…": an untouched form is refused at those fields, never filed
    as a child aged 0–5 in the first district listed."""
    import re

    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new?lang=ru").get_data(as_text=True)
    for name in ("area", "age_group"):
        select_html = re.search(rf'<select[^>]*name="{name}".*?</select>', html, re.S).group(0)
        first = re.search(r"<option[^>]*>([^<]*)", select_html)
        assert 'value=""' in first.group(0) and first.group(1) == catalog("ru")["Choose…"]
    assert re.search(r'<form[^>]*action="/referrals/new"[^>]*autocomplete="off"', html)
    untouched = {k: v for k, v in FORM.items() if k != "age_group"}
    resp = client.post("/referrals/new", data={**untouched, "area": "", "csrf_token": csrf_token(html)})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422 and db.session.scalar(select(Referral)) is None
    assert page.count(catalog("ru")["Answer this question."]) == 2 and "This field is required" not in page
    assert re.search(r'<select[^>]*aria-invalid="true"[^>]*name="age_group"|<select[^>]*name="age_group"[^>]*aria-invalid="true"', page)
    assert "CanaryFormStory" in page  # what she typed is still there


def test_the_service_s_answers_are_shown_at_their_fields(client, place, people):
    """A future incident date and a phone number too short are told at those fields, in her language."""
    import re

    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new?lang=ru").get_data(as_text=True)
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    resp = client.post("/referrals/new", data={**FORM, "area": place["village"].code, "incident_date": future,
                                               "csrf_token": csrf_token(html)})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422 and db.session.scalar(select(Referral)) is None
    date_input = re.search(r'<input[^>]*name="incident_date"[^>]*>', page).group(0)
    assert 'aria-invalid="true"' in date_input
    assert page.count(catalog("ru")["The incident date cannot be in the future."]) == 2  # at the top and the field
    short = client.post("/referrals/new", data={**FORM, "area": place["village"].code, "phone": "12",
                                                "csrf_token": csrf_token(html)})
    page = short.get_data(as_text=True)
    phone_input = re.search(r'<input[^>]*name="phone"[^>]*>', page).group(0)
    assert short.status_code == 422 and 'aria-invalid="true"' in phone_input
    assert catalog("ru")["Give the number in international form, e.g. +996555123456."] in page
    assert catalog("ru")["Give her phone number for contact by phone or SMS."] not in page


def test_the_home_page_names_the_role_in_words(client, people):
    import re

    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    home = client.get("/?lang=ru").get_data(as_text=True)
    who = re.search(r'<p class="who">.*?</p>', home, re.S).group(0)
    assert f' · {catalog("ru")["Focal point"]}' in who and "· focal_point" not in who


def test_changing_the_language_keeps_what_she_typed(client, place, people):
    """The languages on the form send it back to be shown again in the one chosen: nothing typed is lost,
    nothing is sent, no field is marked wrong."""
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new").get_data(as_text=True)
    form_html = html[html.index('<form id="referral-form"'):]
    assert 'name="switch_language" value="ru"' in form_html  # buttons of the form, after its default one
    assert form_html.index('class="default-submit"') < form_html.index('name="switch_language"')
    typed = {**FORM, "area": place["village"].code, "age_group": "", "csrf_token": csrf_token(html)}
    resp = client.post("/referrals/new?lang=ru", data={**typed, "switch_language": "ru"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and '<html lang="ru">' in page and db.session.scalar(select(Referral)) is None
    assert "CanaryFormName" in page and "CanaryFormStory" in page and "CanaryFormNotes" in page
    assert 'aria-invalid' not in page and catalog("ru")["Answer this question."] not in page
    assert catalog("ru")["New referral"] in page


def test_a_date_that_cannot_be_read_is_told_in_her_language(client, place, people):
    focal, _ = people["focal"]
    web_login(client, focal.email, PASSWORD)
    html = client.get("/referrals/new?lang=ky").get_data(as_text=True)
    resp = client.post("/referrals/new", data={**FORM, "area": place["village"].code, "incident_date": "20/11/2026",
                                               "csrf_token": csrf_token(html)})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422 and db.session.scalar(select(Referral)) is None
    assert catalog("ky")["Write the date as year-month-day, e.g. 2026-11-20."] in page
    assert "Not a valid date value" not in page and "CanaryFormStory" in page
