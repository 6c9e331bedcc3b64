"""Every verb from every state: legal moves succeed, illegal ones answer 409 and change nothing."""
import pytest
from sqlalchemy import select

from referral.extensions import db
from referral.referrals.models import Referral
from referral.referrals.workflow_models import Offer, OfferStatus
from tests.referrals.helpers import minimal

STATES = ("offered", "escalated", "accepted", "in_progress", "closed", "withdrawn")

# verb → (who calls, body, {state: expected status})
VERBS = {
    "accept": ("officer", None, {"offered": 200}),
    "decline": ("officer", {"reason": "workload"}, {"offered": 200}),
    "recuse": ("officer", {"reason": "conflict_of_interest"}, {"accepted": 204, "in_progress": 204}),
    "actions": ("officer", {"type": "follow_up"}, {"accepted": 201, "in_progress": 201}),
    "close": ("officer", {"outcome": "no_further_action"}, {"in_progress": 200}),
    "reassign": ("supervisor", "other", {"offered": 200, "escalated": 200, "accepted": 200, "in_progress": 200}),
    "withdraw": ("focal", None, {"offered": 200, "escalated": 200, "accepted": 200, "in_progress": 200}),
}


def make_case(client, place, people, officers, state):
    (officer, officer_h), _ = officers
    case = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1]).get_json()
    cid = case["id"]
    if state == "escalated":
        decline = {"reason": "workload"}
        for _ in range(2):
            open_offer = db.session.scalar(select(Offer).where(Offer.referral_id == cid,
                                                                Offer.status == OfferStatus.open))
            headers = officer_h if open_offer.officer_id == officer.id else officers[1][1]
            assert client.post(f"/api/v1/referrals/{cid}/decline", json=decline, headers=headers).status_code == 200
    if state in ("accepted", "in_progress", "closed"):
        assert client.post(f"/api/v1/referrals/{cid}/accept", headers=officer_h).status_code == 200
    if state in ("in_progress", "closed"):
        assert client.post(f"/api/v1/referrals/{cid}/actions", json={"type": "contact_made"},
                           headers=officer_h).status_code == 201
    if state == "closed":
        assert client.post(f"/api/v1/referrals/{cid}/close", json={"outcome": "other"},
                           headers=officer_h).status_code == 200
    if state == "withdrawn":
        assert client.post(f"/api/v1/referrals/{cid}/withdraw", headers=people["focal"][1]).status_code == 200
    db.session.expire_all()
    assert db.session.get(Referral, cid).status.value == state
    return cid


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("verb", sorted(VERBS))
def test_transition(client, place, people, officers, login_as, certify, state, verb):
    cid = make_case(client, place, people, officers, state)
    who, body, legal = VERBS[verb]
    headers = {"officer": officers[0][1], "supervisor": people["supervisor"][1], "focal": people["focal"][1]}[who]
    if body == "other":  # a fresh eligible officer: those who declined are never offered it again
        fresh, _h = login_as("officer", unit=place["unit"], languages="ky,ru")
        certify(fresh, "core", "child")
        body = {"officer_id": fresh.id}
    before = db.session.get(Referral, cid).status.value
    resp = client.post(f"/api/v1/referrals/{cid}/{verb}", json=body, headers=headers)
    expected = legal.get(state)
    if expected is not None:
        assert resp.status_code == expected, resp.get_json()
    else:
        # Illegal: 409 — or 404 when the case is not (or no longer) this officer's to see.
        assert resp.status_code in (409, 404), resp.get_json()
        if resp.status_code == 404:
            assert who == "officer" and state in ("escalated", "withdrawn")
        db.session.expire_all()
        assert db.session.get(Referral, cid).status.value == before
