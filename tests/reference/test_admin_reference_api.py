"""Admin API listings of the reference data, and the routing-mode service behind the admin page."""
import pytest
from sqlalchemy import select

from referral.audit.models import AuditEvent
from referral.audit.service import pending
from referral.errors import Forbidden, NotFound, ValidationFailed
from referral.extensions import db
from referral.reference import services
from referral.reference.models import RoutingMode
from tests.factories import AreaFactory, OrganisationFactory, UnitFactory

LISTINGS = ["/api/v1/admin/areas", "/api/v1/admin/units", "/api/v1/admin/organisations"]


@pytest.fixture()
def admin(login_as):
    return login_as("admin")


@pytest.fixture()
def world(db_session):
    """A country with two regions (listed out of code order) and a district in the second."""
    country = AreaFactory(code="T-KG", kind="country")
    south = AreaFactory(code="T-KG-S", kind="region", parent=country)
    north = AreaFactory(code="T-KG-N", kind="region", parent=country)
    district = AreaFactory(code="T-KG-S-1", parent=south)
    unit = UnitFactory(code="T-U-S", areas=[district, south])
    shelter = OrganisationFactory(code="T-SH", kind="provider", areas=[south], service_types=["shelter", "health"],
                                  coordinator=True)
    group = OrganisationFactory(code="T-WG", areas=[district])
    db.session.flush()
    return {"country": country, "north": north, "south": south, "district": district, "unit": unit,
            "shelter": shelter, "group": group}


def test_areas_come_as_a_tree_depth_first(client, admin, world):
    _user, headers = admin
    body = client.get("/api/v1/admin/areas", headers=headers).get_json()
    assert set(body) == {"items", "page", "per_page", "total"} and body["total"] == 4
    assert [(a["code"], a["depth"], a["parent"]) for a in body["items"]] == [
        ("T-KG", 0, None), ("T-KG-N", 1, "T-KG"), ("T-KG-S", 1, "T-KG"), ("T-KG-S-1", 2, "T-KG-S")]
    assert body["items"][0] == {"code": "T-KG", "name": world["country"].name, "kind": "country", "parent": None,
                                "depth": 0}


def test_units_and_organisations_use_the_reference_file_keys(client, admin, world):
    _user, headers = admin
    units = client.get("/api/v1/admin/units", headers=headers).get_json()
    assert units["items"] == [{"code": "T-U-S", "name": world["unit"].name, "areas": ["T-KG-S", "T-KG-S-1"],
                               "routing": "direct", "closure_approval": False, "active": True}]
    orgs = client.get("/api/v1/admin/organisations", headers=headers).get_json()
    assert orgs["total"] == 2
    shelter, group = orgs["items"]
    assert shelter == {"code": "T-SH", "name": world["shelter"].name, "kind": "provider",
                       "services": ["health", "shelter"], "areas": ["T-KG-S"], "coordinator": True, "active": True}
    assert group["kind"] == "womens_group" and group["services"] == [] and not group["coordinator"]


def test_listings_are_paginated(client, admin, world):
    _user, headers = admin
    second = client.get("/api/v1/admin/areas?page=2&per_page=3", headers=headers).get_json()
    assert (second["page"], second["per_page"], second["total"]) == (2, 3, 4)
    assert [a["code"] for a in second["items"]] == ["T-KG-S-1"]
    orgs = client.get("/api/v1/admin/organisations?page=2&per_page=1", headers=headers).get_json()
    assert [o["code"] for o in orgs["items"]] == ["T-WG"] and orgs["total"] == 2
    beyond = client.get("/api/v1/admin/units?page=5", headers=headers).get_json()
    assert beyond["items"] == [] and beyond["total"] == 1
    for path in LISTINGS:
        for bad in ("per_page=101", "page=0", "page=x", "colour=red"):
            assert client.get(f"{path}?{bad}", headers=headers).status_code == 422, (path, bad)


@pytest.mark.parametrize("path", LISTINGS)
def test_each_listing_is_audited(client, admin, world, path):
    user, headers = admin
    resp = client.get(path, headers=headers)
    assert resp.status_code == 200
    action = {"areas": "area.list", "units": "unit.list", "organisations": "organisation.list"}[path.rsplit("/", 1)[1]]
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == action))
    assert event.actor_id == user.id and event.outcome == "allowed"
    assert event.request_id == resp.headers["X-Request-ID"]


@pytest.mark.parametrize("role", ["focal_point", "officer", "supervisor", "service_provider", "oversight"])
def test_only_admins_list_reference_data(client, login_as, role):
    _user, headers = login_as(role)
    for path in LISTINGS:
        resp = client.get(path, headers=headers)
        assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "forbidden"
    for path in LISTINGS:
        assert client.get(path).status_code == 401


def test_routing_mode_service_checks_flushes_and_stages_its_audit_event(make_user, world):
    admin_user = make_user("admin")
    unit = services.set_routing_mode(db.session, admin_user, "T-U-S", "pool")
    assert unit.routing_mode is RoutingMode.pool
    staged = [e for e in pending(db.session) if e.action == "unit.routing"]
    assert [(e.object_id, e.reason, e.actor_id) for e in staged] == [("T-U-S", "routing direct -> pool", admin_user.id)]
    assert not db.session.dirty  # flushed, left for the caller to commit
    services.set_routing_mode(db.session, admin_user, "T-U-S", "pool")
    assert pending(db.session)[-1].reason == "routing pool (unchanged)"


def test_routing_mode_service_refuses_what_it_must(make_user, world):
    with pytest.raises(Forbidden):
        services.set_routing_mode(db.session, make_user("supervisor"), "T-U-S", "pool")
    admin_user = make_user("admin")
    with pytest.raises(ValidationFailed) as bad:
        services.set_routing_mode(db.session, admin_user, "T-U-S", "fastest")
    assert "routing" in bad.value.fields
    with pytest.raises(NotFound):
        services.set_routing_mode(db.session, admin_user, "Canary pasted text", "pool")
    assert world["unit"].routing_mode is RoutingMode.direct
    from sqlalchemy import select

    from referral.audit.models import AuditEvent

    db.session.commit()  # events join the chain when the request's transaction commits
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "unit.routing",
                                                         AuditEvent.outcome == "denied")).all()
    assert [(e.actor_id, e.object_id) for e in denied] == [(admin_user.id, "unknown")]
    assert "Canary" not in (denied[0].reason or "")
