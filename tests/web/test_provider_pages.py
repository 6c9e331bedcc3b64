"""Provider pages: only the shared fields, respond with an outcome; strangers get 404."""
import pyotp

from tests.factories import PASSWORD, OrganisationFactory
from tests.referrals.helpers import canaries, submission
from tests.web.helpers import csrf_token, web_login


def test_provider_sees_only_shared_fields_and_completes(client, place, people, officers, login_as):
    from referral.extensions import db

    clinic = OrganisationFactory(kind="provider", areas=[place["district"]], service_types=["health"])
    db.session.commit()  # the requests below use their own sessions
    values = canaries()
    case = client.post("/api/v1/referrals", json=submission(place["district"].code, values),
                       headers=people["focal"][1]).get_json()
    officer_h = officers[0][1]
    client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officer_h)
    sr = client.post(f"/api/v1/referrals/{case['id']}/service-referrals", headers=officer_h,
                     json={"provider_id": clinic.id, "service_type": "health", "share": ["survivor.name"]}).get_json()
    assert "id" in sr, sr
    staff, _h = login_as("service_provider", organisation=clinic)
    web_client = client.application.test_client()
    web_login(web_client, staff.email, PASSWORD, pyotp.TOTP(staff.totp_secret_plain).now())
    assert case["reference"] in web_client.get("/").get_data(as_text=True)
    page = web_client.get(f"/service-referrals/{sr['id']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert values["survivor.name"] in html
    assert values["incident.narrative"] not in html and values["survivor.phone"] not in html
    assert 'data-keep-alive="/session/alive"' in html and "keep-alive.js" in html and "session-ended" in html
    done = web_client.post(f"/service-referrals/{sr['id']}/complete",
                           data={"csrf_token": csrf_token(html), "outcome": "provided", "note": "seen"})
    assert done.status_code == 302
    assert "<strong>Completed</strong>" in web_client.get(f"/service-referrals/{sr['id']}").get_data(as_text=True)
    other, _o = login_as("service_provider")
    stranger = client.application.test_client()
    web_login(stranger, other.email, PASSWORD, pyotp.TOTP(other.totp_secret_plain).now())
    assert stranger.get(f"/service-referrals/{sr['id']}").status_code == 404
    assert stranger.post(f"/service-referrals/{sr['id']}/nonsense", data={}).status_code == 400  # no CSRF token
