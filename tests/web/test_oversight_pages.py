"""Oversight pages: charts rendered on the server as SVG, audit search with filters."""
import pyotp
import time_machine

from tests.factories import PASSWORD
from tests.referrals.helpers import minimal
from tests.web.helpers import web_login


def sign_in(client, user):
    code = pyotp.TOTP(user.totp_secret_plain).now() if user.totp_secret_plain else None
    assert web_login(client, user.email, PASSWORD, code).status_code == 302


def test_dashboard_draws_svg_charts_without_scripts(client, place, people, officers, make_user):
    client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1])
    auditor = make_user("oversight")
    sign_in(client, auditor)
    page = client.get("/oversight")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert html.count("<svg") >= 1 and 'role="img"' in html and "Open cases by stage" in html
    assert "<script" not in html.replace('src="/static/web/quick-exit.js"', "")


def test_audit_page_filters_and_flags_bad_input(client, place, people, make_user):
    client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1])
    auditor = make_user("oversight")
    sign_in(client, auditor)
    page = client.get(f"/oversight/audit?actor_id={people['focal'][0].id}&action=referral.create")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "1 events." in html and "<td>referral.create</td>" in html
    bad = client.get("/oversight/audit?since=yesterday")
    assert bad.status_code == 422 and 'aria-invalid="true"' in bad.get_data(as_text=True)


def test_oversight_pages_refuse_other_roles(client, make_user):
    for role in ("officer", "admin", "focal_point"):
        c = client.application.test_client()
        user = make_user(role)
        sign_in(c, user)
        assert c.get("/oversight").status_code == 403
        assert c.get("/oversight/audit").status_code == 403


def test_a_language_switch_keeps_the_filters_and_a_bad_filter_shows_nothing(client, place, people, make_user):
    client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1])
    auditor = make_user("oversight")
    sign_in(client, auditor)
    page = client.get("/oversight/audit?action=referral.create&lang=ru")
    assert page.status_code == 200 and "1 events." in page.get_data(as_text=True)
    bad = client.get("/oversight/audit?action=referral.create&since=2026-01-01T00:00:00")  # naive time
    assert bad.status_code == 422 and "0 events." in bad.get_data(as_text=True)


def test_statistics_and_disclosures_pages(client, place, people, make_user, login_as, monkeypatch):
    from tests.referrals.helpers import submission

    case = client.post("/api/v1/referrals", json=submission(place["district"].code),  # statistics consent given
                       headers=people["focal"][1]).get_json()
    client.get(f"/api/v1/referrals/{case['id']}", headers=people["supervisor"][1])
    auditor = make_user("oversight")
    sign_in(client, auditor)
    running = client.get("/oversight/statistics").get_data(as_text=True)  # this month runs: not counted yet
    assert "Months that have ended, up to" in running and "&lt;5" not in running
    from tests.referrals.helpers import month_after

    later = client.application.test_client()
    with time_machine.travel(month_after(), tick=False):
        sign_in(later, auditor)
        stats = later.get("/oversight/statistics?lang=uz").get_data(as_text=True)
    assert "Statistika" in stats and "&lt;5" in stats  # one consented case: a small cell (escaped)
    audit = client.get(f"/oversight/audit?case_id={case['id']}").get_data(as_text=True)
    assert f"/oversight/cases/{case['id']}/disclosures" in audit
    page = client.get(f"/oversight/cases/{case['id']}/disclosures")
    assert page.status_code == 200 and "assignment" in page.get_data(as_text=True)
    assert 'rel="next"' not in page.get_data(as_text=True)  # one page: no pager
    from referral.web import oversight as oversight_pages

    monkeypatch.setattr(oversight_pages, "DISCLOSURES_PER_PAGE", 1)
    first = client.get(f"/oversight/cases/{case['id']}/disclosures").get_data(as_text=True)
    assert 'rel="next"' in first and "submission" in first and "assignment" not in first
    second = client.get(f"/oversight/cases/{case['id']}/disclosures?page=2").get_data(as_text=True)
    assert 'rel="prev"' in second and "assignment" in second and "submission" not in second
    assert client.get("/oversight/cases/not-a-case/disclosures").status_code == 404
    officer = make_user("officer")
    other = client.application.test_client()
    sign_in(other, officer)
    assert other.get("/oversight/statistics").status_code == 403
