"""Regressions from the web review: closure requests, service types, break-glass reviews, NUL bytes,
unique ids, refused (never cut) input, forms only for those who may use them."""
import re

import pyotp
from sqlalchemy import select

from referral.extensions import db
from referral.oversight.models import BreakGlassGrant
from referral.referrals.models import Referral
from referral.services_dir.models import ServiceReferral
from tests.factories import PASSWORD, OrganisationFactory
from tests.referrals.helpers import minimal, submission
from tests.referrals.test_workflow import post, submit
from tests.web.helpers import csrf_token, web_login


def sign_in(client, user):
    assert web_login(client, user.email, PASSWORD, pyotp.TOTP(user.totp_secret_plain).now()).status_code == 302


def test_recusal_drops_a_waiting_closure(client, place, people, officers):
    place["unit"].closure_approval = True
    db.session.flush()
    (first, first_h), _ = officers
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    post(client, case["id"], "accept", first_h)
    post(client, case["id"], "actions", first_h, {"type": "note"})
    assert post(client, case["id"], "close", first_h, {"outcome": "other"}).get_json()["closure_pending"]
    assert post(client, case["id"], "recuse", first_h, {"reason": "conflict_of_interest"}).status_code == 204
    referral = db.session.get(Referral, case["id"])
    db.session.refresh(referral)
    assert referral.closure_requested_at is None and referral.outcome is None


def test_a_bad_service_type_from_the_page_is_refused_and_nothing_stored(client, place, people, officers):
    from referral.reference.models import OrganisationKind

    clinic = OrganisationFactory(kind=OrganisationKind.provider, areas=[place["district"]], service_types=["health"])
    (officer, officer_h) = officers[0]
    case = submit(client, people["focal"][1], submission(place["district"].code))
    post(client, case["id"], "accept", officer_h)
    sign_in(client, officer)
    token = csrf_token(client.get(f"/cases/{case['id']}").get_data(as_text=True))
    for value in (f"{clinic.id}:bogus", f"{clinic.id}:", "x:health"):
        resp = client.post(f"/cases/{case['id']}/service-referrals", data={"csrf_token": token, "provider": value},
                           follow_redirects=True)
        assert resp.status_code == 200
    assert db.session.scalars(select(ServiceReferral).where(ServiceReferral.referral_id == case["id"])).all() == []


def test_a_break_glass_review_stands(client, place, people, login_as):
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    _a, a_h = login_as("oversight")
    _b, b_h = login_as("oversight")
    _c, c_h = login_as("oversight")
    grant = client.post("/api/v1/break-glass", headers=a_h,
                        json={"case_id": case["id"], "justification": "Complaint 2026/3 about this case."}).get_json()
    assert client.post(f"/api/v1/break-glass/{grant['id']}/review", headers=b_h,
                       json={"outcome": "unjustified"}).status_code == 200
    again = client.post(f"/api/v1/break-glass/{grant['id']}/review", headers=c_h, json={"outcome": "justified"})
    assert again.status_code == 409
    assert db.session.get(BreakGlassGrant, grant["id"]).review_outcome == "unjustified"


def test_nul_bytes_are_a_clear_400_everywhere(client, place, people, make_user):
    admin = make_user("admin")
    sign_in(client, admin)
    token = csrf_token(client.get("/admin/users").get_data(as_text=True))
    form = client.post("/admin/users", data={"csrf_token": token, "email": "x@test.example", "name": "A\x00B",
                                             "role": "officer", "password": "long enough passphrase"})
    assert form.status_code == 400
    refused = client.post("/admin/reference/units/A%00B/routing", data={"csrf_token": token, "routing": "pool"})
    assert refused.status_code in (302, 404)  # an unknown unit, never a 500
    api = client.post("/api/v1/referrals", headers=people["focal"][1],
                      json={**minimal(place["district"].code), "survivor": {"age_group": "26-40", "name": "a\x00"}})
    assert api.status_code == 400 and api.get_json()["error"]["code"] == "nul_character"


def test_case_pages_have_unique_ids_and_refuse_rather_than_cut(client, place, people, officers):
    (officer, officer_h) = officers[0]
    case = submit(client, people["focal"][1], submission(place["district"].code))
    post(client, case["id"], "accept", officer_h)
    sign_in(client, officer)
    html = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    token = csrf_token(html)
    resp = client.post(f"/cases/{case['id']}/actions", data={"csrf_token": token, "type": "note", "note": "x" * 5001},
                       follow_redirects=True)
    assert "The note is too long" in resp.get_data(as_text=True)
    resp = client.post(f"/cases/{case['id']}/actions", follow_redirects=True,
                       data={"csrf_token": token, "type": "protection_order_issued", "order_issued_on": "25/11/2026",
                             "order_expires_on": "2026-12-25"})
    assert "YYYY-MM-DD" in resp.get_data(as_text=True)
    from referral.referrals.workflow_models import CaseAction, ProtectionOrder

    assert db.session.scalar(select(ProtectionOrder).where(ProtectionOrder.referral_id == case["id"])) is None
    assert db.session.scalars(select(CaseAction).where(CaseAction.referral_id == case["id"])).all() == []


def test_oversight_reading_through_break_glass_sees_no_work_forms(client, place, people, officers, make_user):
    (officer, officer_h) = officers[0]
    case = submit(client, people["focal"][1], submission(place["district"].code))
    post(client, case["id"], "accept", officer_h)
    post(client, case["id"], "actions", officer_h, {"type": "contact_made"})
    auditor = make_user("oversight")
    sign_in(client, auditor)
    token = csrf_token(client.get("/oversight/break-glass").get_data(as_text=True))
    client.post("/oversight/break-glass", data={"csrf_token": token, "case_id": case["id"],
                                                "justification": "Complaint 2026/9 asks about this case."})
    html = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert "Survivor" in html and "Record what you did" not in html and "Close case" not in html
    sign_in(client, officer)
    html = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert "Record what you did" in html and "Close case" in html
