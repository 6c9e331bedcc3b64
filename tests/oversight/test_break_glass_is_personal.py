"""Break-glass opens one case to the one oversight user who stated why, for at most the configured hours."""
import pyotp
import pytest

from tests.factories import PASSWORD
from tests.referrals.helpers import minimal
from tests.web.helpers import web_login

WHY = "Complaint 2026/114 about this unit's handling"


@pytest.fixture()
def case_id(client, place, people, officers):
    resp = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1])
    assert resp.status_code == 201
    return resp.get_json()["id"]


def test_a_grant_opens_the_case_to_its_holder_only(client, case_id, login_as):
    holder, holder_h = login_as("oversight")
    colleague, colleague_h = login_as("oversight")
    assert client.post("/api/v1/break-glass", json={"case_id": case_id, "justification": WHY},
                       headers=holder_h).status_code == 201
    assert client.get(f"/api/v1/referrals/{case_id}", headers=holder_h).status_code == 200
    assert client.get(f"/api/v1/referrals/{case_id}", headers=colleague_h).status_code == 404
    for user, expected in ((holder, 200), (colleague, 404)):
        browser = client.application.test_client()
        assert web_login(browser, user.email, PASSWORD, pyotp.TOTP(user.totp_secret_plain).now()).status_code == 302
        assert browser.get(f"/cases/{case_id}").status_code == expected, user.email


def test_the_longest_grant_follows_the_setting(client, app, case_id, login_as, monkeypatch):
    """The form's and the API's own bound is 72 hours; an operator who lowers the setting lowers the cap."""
    monkeypatch.setitem(app.config, "BREAK_GLASS_MAX_HOURS", 4)
    _user, headers = login_as("oversight")
    refused = client.post("/api/v1/break-glass", json={"case_id": case_id, "justification": WHY, "hours": 5},
                          headers=headers)
    assert refused.status_code == 422 and "hours" in refused.get_json()["error"]["fields"]
    assert client.post("/api/v1/break-glass", json={"case_id": case_id, "justification": WHY, "hours": 4},
                       headers=headers).status_code == 201
