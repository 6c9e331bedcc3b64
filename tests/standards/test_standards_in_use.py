"""Standards loaded into the database, stamped on cases, scored over the API and by `sla tick`."""
import datetime as dt
import json

import pytest
import time_machine
import yaml
from sqlalchemy import select

from config.settings import PROJECT_ROOT
from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.referrals.models import Referral
from referral.standards.models import CertificationReminder, Standard, StepBreach
from tests.factories import AreaFactory
from tests.referrals.helpers import minimal

STANDARDS = PROJECT_ROOT / "config" / "standards"
T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


@pytest.fixture()
def standards(runner):
    result = runner.invoke(args=["standards", "load"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_loading_is_idempotent_and_versions_are_immutable(runner, standards, tmp_path):
    assert standards == {"standards_created": 3, "standards_unchanged": 0}
    again = json.loads(runner.invoke(args=["standards", "load"]).output)
    assert again == {"standards_created": 0, "standards_unchanged": 3}
    doc = yaml.safe_load((STANDARDS / "default.yaml").read_text())
    doc["settings"]["accept_hours"] = 12
    changed = tmp_path / "default.yaml"
    changed.write_text(yaml.safe_dump(doc))
    refused = runner.invoke(args=["standards", "load", str(changed)])
    assert refused.exit_code == 1 and "new version" in refused.output
    doc["version"] = 2
    changed.write_text(yaml.safe_dump(doc))
    assert json.loads(runner.invoke(args=["standards", "load", str(changed)]).output)["standards_created"] == 1


def test_a_case_keeps_the_version_in_force_when_submitted(client, runner, place, people, officers, standards,
                                                          tmp_path):
    _sup, sup_h = people["supervisor"]
    first = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1]).get_json()
    row = db.session.get(Referral, first["id"])
    default_v1 = db.session.scalar(select(Standard).where(Standard.code == "DEFAULT", Standard.version == 1))
    assert row.standard_id == default_v1.id
    # Publish version 2 with a 12-hour acceptance step.
    doc = yaml.safe_load((STANDARDS / "default.yaml").read_text())
    doc["version"], doc["settings"]["accept_hours"] = 2, 12
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert runner.invoke(args=["standards", "load", str(path)]).exit_code == 0
    second = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1]).get_json()
    old = client.get(f"/api/v1/referrals/{first['id']}/compliance", headers=sup_h).get_json()
    new = client.get(f"/api/v1/referrals/{second['id']}/compliance", headers=sup_h).get_json()
    assert old["standard"] == {"code": "DEFAULT", "version": 1}
    assert new["standard"] == {"code": "DEFAULT", "version": 2}
    due = {c["reference"]: next(s for s in c["steps"] if s["step"] == "accept")["due_at"] for c in (old, new)}
    old_due = dt.datetime.fromisoformat(due[old["reference"]]) - db.session.get(Referral, first["id"]).created_at
    new_due = dt.datetime.fromisoformat(due[new["reference"]]) - db.session.get(Referral, second["id"]).created_at
    assert (old_due, new_due) == (dt.timedelta(hours=24), dt.timedelta(hours=12))


def test_country_standard_is_chosen_by_the_areas_country(client, people, login_as, standards, certify):
    from tests.factories import OrganisationFactory, UnitFactory

    kg = AreaFactory(code="KG", kind="country")
    district = AreaFactory(parent=kg)
    UnitFactory(areas=[district])
    _focal, focal_h = login_as("focal_point", organisation=OrganisationFactory(areas=[district]))
    case = client.post("/api/v1/referrals", json=minimal(district.code), headers=focal_h).get_json()
    standard = db.session.get(Standard, db.session.get(Referral, case["id"]).standard_id)
    assert standard.code == "KG"


def test_compliance_is_for_case_handlers_and_oversight(client, place, people, officers, standards, login_as):
    case = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1]).get_json()
    sup = client.get(f"/api/v1/referrals/{case['id']}/compliance", headers=people["supervisor"][1])
    assert sup.status_code == 200
    steps = {s["step"]: s["status"] for s in sup.get_json()["steps"]}
    assert steps["accept"] == "pending" and steps["health_referral"] == "not_applicable"
    _auditor, oversight_h = login_as("oversight")
    assert client.get(f"/api/v1/referrals/{case['id']}/compliance", headers=oversight_h).status_code == 200
    for role in ("admin", "service_provider", "focal_point", "officer"):
        _u, headers = login_as(role)
        assert client.get(f"/api/v1/referrals/{case['id']}/compliance", headers=headers).status_code == 404
    # The submitting focal point sees the stage, not the handling.
    assert client.get(f"/api/v1/referrals/{case['id']}/compliance", headers=people["focal"][1]).status_code == 404


def test_tick_records_each_overdue_step_once(client, runner, place, people, officers, standards):
    (officer, officer_h), _ = officers
    with time_machine.travel(T0, tick=False):
        case = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                           headers=people["focal"][1]).get_json()
        assert client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officer_h).status_code == 200
    late = (T0 + dt.timedelta(hours=30)).isoformat()
    first = json.loads(runner.invoke(args=["sla", "tick", "--now", late]).output)
    breached = set(db.session.scalars(select(StepBreach.step_code).where(StepBreach.referral_id == case["id"])))
    assert breached == {"first_contact"} and first["step_breaches"] == 1
    second = json.loads(runner.invoke(args=["sla", "tick", "--now", late]).output)
    assert second["step_breaches"] == 0
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "sla.step_breach")).all()
    assert len(events) == 1 and "first_contact" in events[0].reason


def test_closure_needs_the_checklist(client, place, people, officers, standards):
    (officer, officer_h), _ = officers
    case = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1]).get_json()
    cid = case["id"]
    client.post(f"/api/v1/referrals/{cid}/accept", headers=officer_h)
    client.post(f"/api/v1/referrals/{cid}/actions", json={"type": "risk_assessment"}, headers=officer_h)
    refused = client.post(f"/api/v1/referrals/{cid}/close", json={"outcome": "other"}, headers=officer_h)
    assert refused.status_code == 409
    assert "rights_informed" in refused.get_json()["error"]["message"]
    assert "safety_plan" in refused.get_json()["error"]["message"]
    for kind in ("rights_informed", "safety_plan"):
        client.post(f"/api/v1/referrals/{cid}/actions", json={"type": kind}, headers=officer_h)
    assert client.post(f"/api/v1/referrals/{cid}/close", json={"outcome": "other"}, headers=officer_h).status_code == 200


def test_expiring_certificates_get_one_reminder(runner, make_user, certify):
    officer = make_user("officer")
    today = dt.date.today()
    from referral.standards.services import add_months

    certify(officer, "core", completed=add_months(today, -24) + dt.timedelta(days=10))  # expires in 10 days
    fresh = make_user("officer")
    certify(fresh, "core")
    now = dt.datetime.now(dt.UTC).isoformat()
    first = json.loads(runner.invoke(args=["sla", "tick", "--now", now]).output)
    assert first["certificate_reminders"] == 1
    assert json.loads(runner.invoke(args=["sla", "tick", "--now", now]).output)["certificate_reminders"] == 0
    reminder = db.session.scalar(select(CertificationReminder))
    assert reminder is not None
