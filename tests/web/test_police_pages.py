"""Officer and supervisor pages: offers with deadlines, accept, case page with timeline and compliance."""
import pyotp

from tests.factories import PASSWORD
from tests.referrals.helpers import canaries, submission
from tests.web.helpers import csrf_token, web_login


def sign_in(client, user):
    assert web_login(client, user.email, PASSWORD, pyotp.TOTP(user.totp_secret_plain).now()).status_code == 302


def test_officer_accepts_works_and_closes_on_the_web(client, runner, place, people, officers):
    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    values = canaries()
    case = client.post("/api/v1/referrals", json=submission(place["district"].code, values),
                       headers=people["focal"][1]).get_json()
    officer, _h = officers[0]
    sign_in(client, officer)
    home = client.get("/").get_data(as_text=True)
    assert case["reference"] in home and "Accept by" in home
    page = client.get(f"/cases/{case['id']}")
    html = page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert values["survivor.name"] not in html  # an offer shows no content
    token = csrf_token(html)
    assert client.post(f"/cases/{case['id']}/accept", data={"csrf_token": token}).status_code == 302
    html = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert values["survivor.name"] in html and "Compliance" in html
    assert 'data-keep-alive="/session/alive"' in html and "keep-alive.js" in html and "session-ended" in html
    for kind in ("risk_assessment", "rights_informed", "safety_plan"):
        client.post(f"/cases/{case['id']}/actions", data={"csrf_token": token, "type": kind, "note": f"did {kind}"})
    html = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert "did safety_plan" in html and "Being handled" in html
    assert client.post(f"/cases/{case['id']}/close", data={"csrf_token": token,
                                                           "outcome": "no_further_action"}).status_code == 302
    assert "Closed" in client.get(f"/cases/{case['id']}").get_data(as_text=True)
    # Without the CSRF token nothing happens.
    client.post(f"/cases/{case['id']}/actions", data={"type": "note", "note": "forged"})
    assert "forged" not in client.get(f"/cases/{case['id']}").get_data(as_text=True)


def test_case_pages_are_404_for_strangers(client, place, people, officers, make_user):
    case = client.post("/api/v1/referrals", json=submission(place["district"].code),
                       headers=people["focal"][1]).get_json()
    stranger = make_user("officer")
    sign_in(client, stranger)
    assert client.get(f"/cases/{case['id']}").status_code == 404


def test_supervisor_board_lists_the_units_cases(client, place, people, officers):
    case = client.post("/api/v1/referrals", json=submission(place["district"].code),
                       headers=people["focal"][1]).get_json()
    sign_in(client, people["supervisor"][0])
    assert case["reference"] in client.get("/").get_data(as_text=True)


def test_code_values_are_shown_in_the_readers_language(client, place, people, officers):
    case = client.post("/api/v1/referrals", json=submission(place["district"].code),
                       headers=people["focal"][1]).get_json()
    sign_in(client, officers[0][0])
    html = client.get(f"/cases/{case['id']}?lang=ky").get_data(as_text=True)
    assert "Физикалык зомбулук" in html and "Кызыкчылыктардын кагылышы" in html  # type and a decline reason
    assert "physical_assault" not in html.replace('value="physical_assault"', "")
