"""Supervisor pages (board, reassign, approve closure) and the officer's protection orders and service referrals."""
import json

import pyotp
from sqlalchemy import select

from referral.extensions import db
from referral.referrals.models import Referral
from referral.referrals.workflow_models import Offer, OfferStatus, ProtectionOrder
from referral.services_dir.models import ServiceReferral
from tests.factories import PASSWORD
from tests.referrals.helpers import canaries, minimal, submission
from tests.web.helpers import csrf_token, web_login


def sign_in(client, user):
    assert web_login(client, user.email, PASSWORD, pyotp.TOTP(user.totp_secret_plain).now()).status_code == 302


def submit(client, people, body):
    resp = client.post("/api/v1/referrals", json=body, headers=people["focal"][1])
    assert resp.status_code == 201
    return resp.get_json()


def test_board_groups_escalations_and_closures_waiting(client, place, people, officers, login_as):
    place["unit"].closure_approval = True
    db.session.flush()
    (officer, officer_h), _ = officers
    waiting = submit(client, people, minimal(place["district"].code))
    client.post(f"/api/v1/referrals/{waiting['id']}/accept", headers=officer_h)
    client.post(f"/api/v1/referrals/{waiting['id']}/actions", json={"type": "note"}, headers=officer_h)
    client.post(f"/api/v1/referrals/{waiting['id']}/close", json={"outcome": "other"}, headers=officer_h)
    # No officer of the unit speaks Uzbek: escalated.
    escalated = submit(client, people, {**minimal(place["district"].code),
                                        "survivor": {"age_group": "26-40", "language": "uz"}})
    assert db.session.get(Referral, escalated["id"]).status.value == "escalated"
    sign_in(client, people["supervisor"][0])
    html = client.get("/").get_data(as_text=True)
    esc_part, rest = html.split('id="h-closures"')
    closures_part, open_part = rest.split('id="h-open"')
    assert escalated["reference"] in esc_part and waiting["reference"] in closures_part
    assert "Escalations (1)" in html and "Closures to approve (1)" in html
    assert officer.name in closures_part


def test_supervisor_approves_a_closure_and_reassigns_on_the_page(client, place, people, officers):
    place["unit"].closure_approval = True
    db.session.flush()
    (first, first_h), (second, _second_h) = officers
    case = submit(client, people, minimal(place["district"].code))
    client.post(f"/api/v1/referrals/{case['id']}/accept", headers=first_h)
    client.post(f"/api/v1/referrals/{case['id']}/actions", json={"type": "note"}, headers=first_h)
    other = submit(client, people, minimal(place["district"].code))
    sign_in(client, first)
    token = csrf_token(client.get(f"/cases/{case['id']}").get_data(as_text=True))
    client.post(f"/cases/{case['id']}/close", data={"csrf_token": token, "outcome": "services_provided"})
    html = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert 'id="closure-pending"' in html and "Approve closure" not in html  # the officer only waits
    supervisor = people["supervisor"][0]
    sign_in(client, supervisor)
    page = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert "Approve closure" in page and second.name in page  # a reassign candidate; never the assignee
    assert f'<option value="{first.id}">' not in page
    token = csrf_token(page)
    assert client.post(f"/cases/{case['id']}/close/maybe", data={"csrf_token": token}).status_code == 404
    client.post(f"/cases/{case['id']}/close/approve", data={"csrf_token": token})
    referral = db.session.get(Referral, case["id"])
    db.session.refresh(referral)
    assert referral.status.value == "closed" and referral.outcome == "services_provided"
    # Reassign the other case on its page: offered to the chosen officer only.
    offered = db.session.scalar(select(Offer.officer_id).where(Offer.referral_id == other["id"]))
    target = first if offered == second.id else second
    page = client.get(f"/cases/{other['id']}").get_data(as_text=True)
    assert f'<option value="{target.id}">' in page and f'<option value="{offered}">' not in page
    client.post(f"/cases/{other['id']}/reassign", data={"csrf_token": token, "officer_id": str(target.id)})
    offers = db.session.scalars(select(Offer).where(Offer.referral_id == other["id"],
                                                    Offer.status == OfferStatus.open)).all()
    assert [o.officer_id for o in offers] == [target.id]
    bad = client.post(f"/cases/{other['id']}/reassign", data={"csrf_token": token, "officer_id": "abc"},
                      follow_redirects=True)
    assert "Not an eligible officer" in bad.get_data(as_text=True)


def test_officer_records_a_protection_order_and_a_service_referral_on_the_page(client, place, people, officers):
    from tests.factories import OrganisationFactory

    from referral.reference.models import OrganisationKind

    provider = OrganisationFactory(kind=OrganisationKind.provider, areas=[place["district"]],
                                   service_types=["health", "shelter"])
    db.session.flush()
    values = canaries()
    (officer, officer_h), _ = officers
    case = submit(client, people, submission(place["district"].code, values))
    client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officer_h)
    sign_in(client, officer)
    html = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    token = csrf_token(html)
    assert f'value="{provider.id}:health"' in html
    # A protection order without its end date is refused with a message, nothing stored.
    resp = client.post(f"/cases/{case['id']}/actions", data={"csrf_token": token, "type": "protection_order_issued"},
                       follow_redirects=True)
    assert "Give the protection order&#39;s dates as YYYY-MM-DD." in resp.get_data(as_text=True)
    assert db.session.scalar(select(ProtectionOrder).where(ProtectionOrder.referral_id == case["id"])) is None
    client.post(f"/cases/{case['id']}/actions", data={"csrf_token": token, "type": "protection_order_issued",
                                                      "order_issued_on": "2026-11-25",
                                                      "order_expires_on": "2026-12-25"})
    html = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert "2026-11-25 – 2026-12-25" in html
    # Consent covers health: share the name and age group with the clinic.
    resp = client.post(f"/cases/{case['id']}/service-referrals",
                       data={"csrf_token": token, "provider": f"{provider.id}:health",
                             "share": ["survivor.name", "survivor.age_group", "not.a.field"]})
    assert resp.status_code == 302 and "Canary" not in resp.headers["Location"]
    row = db.session.scalar(select(ServiceReferral).where(ServiceReferral.referral_id == case["id"],
                                                          ServiceReferral.provider_id == provider.id))
    assert row is not None and sorted(json.loads(row.share)) == ["survivor.age_group", "survivor.name"]
    # Shelter is not consented: refused with the reason, nothing more stored.
    resp = client.post(f"/cases/{case['id']}/service-referrals",
                       data={"csrf_token": token, "provider": f"{provider.id}:shelter", "share": ["survivor.name"]},
                       follow_redirects=True)
    assert resp.status_code == 200
    assert db.session.scalars(select(ServiceReferral).where(ServiceReferral.referral_id == case["id"],
                                                            ServiceReferral.provider_id == provider.id)).all() == [row]
    html = client.get(f"/cases/{case['id']}").get_data(as_text=True)
    assert "Health care" in html and "Service referrals" in html


def test_supervisor_routes_refuse_officers_and_strangers(client, place, people, officers, login_as):
    (officer, officer_h), _ = officers
    case = submit(client, people, minimal(place["district"].code))
    client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officer_h)
    sign_in(client, officer)
    token = csrf_token(client.get(f"/cases/{case['id']}").get_data(as_text=True))
    assert client.post(f"/cases/{case['id']}/reassign", data={"csrf_token": token, "officer_id": "1"}).status_code == 403
    assert client.post(f"/cases/{case['id']}/close/approve", data={"csrf_token": token}).status_code == 403
    from tests.factories import UnitFactory

    stranger, _h = login_as("supervisor", unit=UnitFactory())
    sign_in(client, stranger)
    token = csrf_token(client.get("/").get_data(as_text=True))
    assert client.post(f"/cases/{case['id']}/close/approve", data={"csrf_token": token}).status_code == 404
    assert client.get(f"/cases/{case['id']}").status_code == 404
