"""Walk the URL map: every route that reads or changes a case writes an audit event."""
import pytest
from sqlalchemy import select

from referral.audit.models import AuditEvent
from referral.extensions import db
from tests.referrals.helpers import submission

# How to call each case route: body, who is entitled, and what state the case must be in first.
CASE_ROUTES = {
    ("GET", "/api/v1/referrals/<referral_id>"): (None, "supervisor", "offered"),
    ("GET", "/api/v1/referrals/<referral_id>/compliance"): (None, "supervisor", "offered"),
    ("POST", "/api/v1/referrals/<referral_id>/information"): ({"text": "more"}, "focal", "offered"),
    ("POST", "/api/v1/referrals/<referral_id>/accept"): (None, "officer", "offered"),
    ("POST", "/api/v1/referrals/<referral_id>/decline"): ({"reason": "workload"}, "officer", "offered"),
    ("POST", "/api/v1/referrals/<referral_id>/recuse"): ({"reason": "conflict_of_interest"}, "officer", "accepted"),
    ("POST", "/api/v1/referrals/<referral_id>/actions"): ({"type": "contact_made", "note": "called"}, "officer",
                                                         "accepted"),
    ("POST", "/api/v1/referrals/<referral_id>/close"): ({"outcome": "no_further_action"}, "officer", "in_progress"),
    ("POST", "/api/v1/referrals/<referral_id>/close/approve"): (None, "supervisor", "closure_pending"),
    ("POST", "/api/v1/referrals/<referral_id>/close/reject"): (None, "supervisor", "closure_pending"),
    ("POST", "/api/v1/referrals/<referral_id>/reassign"): ("other_officer", "supervisor", "offered"),
    ("POST", "/api/v1/referrals/<referral_id>/withdraw"): (None, "focal", "offered"),
    ("POST", "/api/v1/referrals/<referral_id>/erasure"): (None, "focal", "offered"),
    ("POST", "/api/v1/referrals/<referral_id>/consents"): ({"scope": "statistics", "granted": False}, "focal",
                                                           "offered"),
    ("POST", "/api/v1/referrals/<referral_id>/service-referrals"): ("service", "officer", "accepted"),
    ("GET", "/api/v1/referrals/<referral_id>/disclosures"): (None, "oversight", "offered"),
    ("GET", "/api/v1/referrals/<referral_id>/matches"): (None, "oversight", "offered"),
}
DISCLOSING = {"/api/v1/referrals/<referral_id>", "/api/v1/referrals/<referral_id>/compliance",
              "/api/v1/referrals/<referral_id>/service-referrals", "/api/v1/referrals/<referral_id>/information",
              "/api/v1/referrals/<referral_id>/actions"}
COLLECTION_ROUTES = {
    ("POST", "/api/v1/referrals"): "focal",
    ("GET", "/api/v1/referrals"): "supervisor",
}


def case_rules(app):
    rules = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/referrals"):
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                rules.add((method, rule.rule))
    return rules


def test_every_case_route_is_in_this_test(app):
    assert case_rules(app) == set(CASE_ROUTES) | set(COLLECTION_ROUTES)


def new_events(since):
    return db.session.scalars(select(AuditEvent).where(AuditEvent.seq > since).order_by(AuditEvent.seq)).all()


def last_seq():
    return db.session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0


@pytest.fixture()
def actors(people, officers, place, login_as):
    """Direct routing offers the case to the first (least-loaded, lowest id) officer."""
    from tests.factories import OrganisationFactory

    provider = OrganisationFactory(kind="provider", areas=[place["district"]], service_types=["health"])
    return {**people, "officer": officers[0], "other_officer": officers[1], "provider": provider,
            "oversight": login_as("oversight")}


@pytest.fixture()
def case(client, place, actors):
    _focal, headers = actors["focal"]
    body = client.post("/api/v1/referrals", json=submission(place["district"].code), headers=headers).get_json()
    assert body["status"] == "offered"
    return body["id"]


def bring_to(client, actors, case, state):
    _officer, headers = actors["officer"]
    if state in ("accepted", "in_progress", "closure_pending"):
        assert client.post(f"/api/v1/referrals/{case}/accept", headers=headers).status_code == 200
    if state in ("in_progress", "closure_pending"):
        assert client.post(f"/api/v1/referrals/{case}/actions", json={"type": "contact_attempt"},
                           headers=headers).status_code == 201
    if state == "closure_pending":
        from referral.referrals.models import Referral

        db.session.get(Referral, case).unit.closure_approval = True
        db.session.flush()
        resp = client.post(f"/api/v1/referrals/{case}/close", json={"outcome": "other"}, headers=headers)
        assert resp.get_json()["closure_pending"] is True


def body_for(body, actors):
    if body == "service":
        return {"provider_id": actors["provider"].id, "service_type": "health", "share": ["survivor.name"]}
    if body == "other_officer":
        return {"officer_id": actors["other_officer"][0].id}
    return body


@pytest.mark.parametrize("route", sorted(CASE_ROUTES))
def test_each_case_route_writes_a_complete_event(client, actors, case, route):
    method, rule = route
    body, who, state = CASE_ROUTES[route]
    bring_to(client, actors, case, state)
    user, headers = actors[who]
    before = last_seq()
    resp = client.open(rule.replace("<referral_id>", case), method=method, json=body_for(body, actors),
                       headers=headers)
    assert resp.status_code < 400, resp.get_json()
    events = [e for e in new_events(before) if e.object_id == case]
    assert events, f"{method} {rule} wrote no audit event"
    for e in [e for e in events if e.actor_id == user.id]:
        assert e.actor_role == user.role.value
        assert e.action.split(".")[0] in ("referral", "consent", "service_referral")
        assert e.object_type == "referral" and e.outcome == "allowed"
        assert e.request_id == resp.headers["X-Request-ID"] and e.source_ip
    mine = [e for e in events if e.actor_id == user.id]
    assert mine
    if rule in DISCLOSING:
        assert mine[0].fields != "[]", "the fields disclosed or written are named"


@pytest.mark.parametrize("route", sorted(CASE_ROUTES))
def test_each_case_route_refuses_strangers_with_404_and_a_denied_event(client, login_as, actors, case, route):
    method, rule = route
    body, who, state = CASE_ROUTES[route]
    bring_to(client, actors, case, state)
    role = {"supervisor": "supervisor", "focal": "focal_point", "officer": "officer", "oversight": "admin"}[who]
    stranger, headers = login_as(role)  # same role, another unit or group
    before = last_seq()
    resp = client.open(rule.replace("<referral_id>", case), method=method, json=body_for(body, actors),
                       headers=headers)
    # Oversight-only routes refuse other roles as a whole (403); case routes pretend the case is not there.
    assert resp.status_code == (403 if who == "oversight" else 404)
    denied = [e for e in new_events(before) if e.outcome == "denied"]
    assert len(denied) == 1
    assert denied[0].actor_id == stranger.id and denied[0].object_id == case
    assert denied[0].request_id == resp.headers["X-Request-ID"]


@pytest.mark.parametrize("route", sorted(COLLECTION_ROUTES))
def test_collection_routes_are_audited(client, place, people, route):
    method, rule = route
    user, headers = people[COLLECTION_ROUTES[route]]
    before = last_seq()
    body = submission(place["district"].code) if method == "POST" else None
    resp = client.open(rule, method=method, json=body, headers=headers)
    assert resp.status_code < 400
    events = new_events(before)
    assert any(e.actor_id == user.id and e.action.startswith("referral.") for e in events)
