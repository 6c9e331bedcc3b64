"""Walk the URL map: every route that reads or changes a case writes an audit event."""
import pytest
from sqlalchemy import select

from referral.audit.models import AuditEvent
from referral.extensions import db
from tests.referrals.helpers import submission

# How to call each case route: (method, body, which user is entitled).
CASE_ROUTES = {
    ("GET", "/api/v1/referrals/<referral_id>"): (None, "supervisor"),
    ("POST", "/api/v1/referrals/<referral_id>/information"): ({"text": "more"}, "focal"),
}
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
def case(client, place, people):
    _focal, headers = people["focal"]
    return client.post("/api/v1/referrals", json=submission(place["district"].code), headers=headers).get_json()["id"]


@pytest.mark.parametrize("route", sorted(CASE_ROUTES))
def test_each_case_route_writes_a_complete_event(client, people, case, route):
    method, rule = route
    body, who = CASE_ROUTES[route]
    user, headers = people[who]
    before = last_seq()
    resp = client.open(rule.replace("<referral_id>", case), method=method, json=body, headers=headers)
    assert resp.status_code < 400, resp.get_json()
    events = [e for e in new_events(before) if e.object_id == case]
    assert events, f"{method} {rule} wrote no audit event"
    for e in events:
        assert e.actor_id == user.id and e.actor_role == user.role.value
        assert e.action.startswith("referral.") and e.object_type == "referral" and e.outcome == "allowed"
        assert e.request_id == resp.headers["X-Request-ID"] and e.source_ip
        assert e.fields != "[]", "the fields disclosed or written are named"


@pytest.mark.parametrize("route", sorted(CASE_ROUTES))
def test_each_case_route_refuses_strangers_with_404_and_a_denied_event(client, login_as, case, route):
    method, rule = route
    body, who = CASE_ROUTES[route]
    role = "supervisor" if who == "supervisor" else "focal_point"
    stranger, headers = login_as(role)
    before = last_seq()
    resp = client.open(rule.replace("<referral_id>", case), method=method, json=body, headers=headers)
    assert resp.status_code == 404
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
