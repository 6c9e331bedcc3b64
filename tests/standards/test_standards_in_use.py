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
from referral.reference.models import Area
from referral.referrals import routing
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
    files = len(list(STANDARDS.glob("*.yaml")))  # each file is one (code, version)
    assert files == 6 and standards == {"standards_created": files, "standards_unchanged": 0}
    again = json.loads(runner.invoke(args=["standards", "load"]).output)
    assert again == {"standards_created": 0, "standards_unchanged": files}
    doc = yaml.safe_load((STANDARDS / "default.yaml").read_text())
    doc["settings"]["accept_hours"] = 12
    changed = tmp_path / "default.yaml"
    changed.write_text(yaml.safe_dump(doc))
    refused = runner.invoke(args=["standards", "load", str(changed)])
    assert refused.exit_code == 1 and "new version" in refused.output
    doc["version"] = 3
    changed.write_text(yaml.safe_dump(doc))
    assert json.loads(runner.invoke(args=["standards", "load", str(changed)]).output)["standards_created"] == 1


def test_a_case_keeps_the_version_in_force_when_submitted(client, runner, place, people, officers, standards,
                                                          tmp_path):
    _sup, sup_h = people["supervisor"]
    first = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1]).get_json()
    row = db.session.get(Referral, first["id"])
    default_v2 = db.session.scalar(select(Standard).where(Standard.code == "DEFAULT", Standard.version == 2))
    assert row.standard_id == default_v2.id  # the newest version in force
    # Publish version 3 with a 12-hour acceptance step.
    doc = yaml.safe_load((STANDARDS / "default-v2.yaml").read_text())
    doc["version"], doc["settings"]["accept_hours"] = 3, 12
    path = tmp_path / "v2.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert runner.invoke(args=["standards", "load", str(path)]).exit_code == 0
    second = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1]).get_json()
    old = client.get(f"/api/v1/referrals/{first['id']}/compliance", headers=sup_h).get_json()
    new = client.get(f"/api/v1/referrals/{second['id']}/compliance", headers=sup_h).get_json()
    assert old["standard"] == {"code": "DEFAULT", "version": 2}
    assert new["standard"] == {"code": "DEFAULT", "version": 3}
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


@pytest.fixture()
def clinic(place):
    from tests.factories import OrganisationFactory

    clinic = OrganisationFactory(kind="provider", areas=[place["district"]], service_types=["health", "shelter"])
    db.session.flush()
    return clinic


def _steps(client, case_id, headers):
    body = client.get(f"/api/v1/referrals/{case_id}/compliance", headers=headers).get_json()
    return body["standard"], {s["step"]: s["status"] for s in body["steps"]}


def _stored(case_id):
    from referral.standards.models import StepStatus

    return dict(db.session.execute(select(StepStatus.step_code, StepStatus.status)
                                   .where(StepStatus.referral_id == case_id)).all())


@pytest.mark.parametrize("service_type, met", [("health", True), ("shelter", False)])
def test_a_health_service_referral_sent_through_amanat_meets_the_health_steps(
        client, place, people, officers, standards, clinic, service_type, met):
    """Version 2 of the standards: the officer sends the survivor to a clinic from the case (no separate
    action to record) and the health steps are met, on the case and in the stored rows the summaries count."""
    (officer, officer_h), _ = officers
    body = minimal(place["district"].code)
    body["incident"]["answers"]["penetration"] = True
    body["consent"]["services"] = True
    with time_machine.travel(T0 + dt.timedelta(days=3), tick=False):  # after version 2 took effect
        case = client.post("/api/v1/referrals", json=body, headers=people["focal"][1]).get_json()
        assert client.post(f"/api/v1/referrals/{case['id']}/accept", headers=officer_h).status_code == 200
        standard, steps = _steps(client, case["id"], people["supervisor"][1])
        assert standard == {"code": "DEFAULT", "version": 2}
        assert steps["health_referral"] == steps["health_referral_soon"] == "pending"
        sent = client.post(f"/api/v1/referrals/{case['id']}/service-referrals", headers=officer_h,
                           json={"provider_id": clinic.id, "service_type": service_type, "share": []})
        assert sent.status_code == 201, sent.get_json()
        db.session.commit()  # the stored rows are judged when the transaction commits
        _standard, steps = _steps(client, case["id"], people["supervisor"][1])
        stored = _stored(case["id"])
    expected = "met" if met else "pending"
    assert steps["health_referral"] == steps["health_referral_soon"] == expected
    assert stored["health_referral"] == stored["health_referral_soon"] == expected
    # Sending it is not an officer's action: "risk assessment first" is still open.
    assert steps["risk_assessment_first"] == "pending"


def test_the_emergency_contraception_window_alone_forces_a_health_offer(client, place, people, officers, standards,
                                                                        clinic):
    """SPEC §3.2: clinical_soon (within 120 h) forces a health-service offer as clinical_urgent does."""
    from referral.services_dir.models import ServiceReferral

    body = minimal(place["district"].code)
    body["incident"]["answers"]["penetration"] = True
    now = T0 + dt.timedelta(days=3)
    body["incident"]["date"] = (now - dt.timedelta(days=4)).date().isoformat()  # 3-4 days ago: past PEP
    with time_machine.travel(now, tick=False):
        case = client.post("/api/v1/referrals", json=body, headers=people["focal"][1]).get_json()
        assert "clinical_soon" in case["flags"] and "clinical_urgent" not in case["flags"]
        suggestion = db.session.scalar(select(ServiceReferral).where(ServiceReferral.referral_id == case["id"]))
        assert suggestion is not None and suggestion.status.value == "suggested"
        assert suggestion.provider_id == clinic.id and suggestion.service_type == "health"
        _standard, steps = _steps(client, case["id"], people["supervisor"][1])
    assert steps["health_referral"] == "not_applicable" and steps["health_referral_soon"] == "pending"


@pytest.mark.parametrize(("utc_time", "version"), [
    (dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC), 1),
    (dt.datetime(2026, 11, 26, 17, 59, tzinfo=dt.UTC), 1),  # 23:59 on the 26th in Bishkek
    (dt.datetime(2026, 11, 26, 18, 1, tzinfo=dt.UTC), 2),   # 00:01 on the 27th there: version 2 is in force
])
def test_a_version_is_in_force_from_midnight_in_the_service_zone(client, place, people, officers, standards,
                                                                 utc_time, version):
    with time_machine.travel(utc_time, tick=False):
        case = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                           headers=people["focal"][1]).get_json()
    standard, steps = _steps(client, case["id"], people["supervisor"][1])
    assert standard == {"code": "DEFAULT", "version": version}
    assert ("health_referral_soon" in steps) == (version == 2)


def test_a_services_only_case_sent_to_a_health_coordinator_meets_the_health_step_from_the_start(
        client, place, people, standards):
    """The coordinator's service referral is written in the submission's own transaction: the stored rows see
    it (the case is judged with its sent service referrals, not skipped as a new case without actions)."""
    from tests.factories import OrganisationFactory

    OrganisationFactory(kind="provider", areas=[place["district"]], service_types=["health"], coordinator=True)
    db.session.flush()
    body = minimal(place["district"].code)
    body["incident"]["answers"]["penetration"] = True
    body["consent"].update(police=False, services=True)
    with time_machine.travel(T0 + dt.timedelta(days=3), tick=False):
        case = client.post("/api/v1/referrals", json=body, headers=people["focal"][1]).get_json()
    assert case["status"] == "services_only"
    assert _stored(case["id"])["health_referral"] == "met"


def test_protection_orders_get_one_reminder_per_expiry(client, runner, place, people, officers, standards):
    """SPEC §2: expiry reminders. The case's officer is told (a reference and a date only) once per expiry,
    PROTECTION_ORDER_REMINDER_DAYS (3) before it; an extension earns a new one; a withdrawn case none."""
    from referral.notify.models import OutboxMessage
    from referral.referrals.workflow_models import Offer

    focal_h = people["focal"][1]
    today = dt.date(2026, 11, 27)
    cases = []
    with time_machine.travel(dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC), tick=False):
        for expires in (today + dt.timedelta(days=3), today + dt.timedelta(days=4), today + dt.timedelta(days=1)):
            case = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=focal_h).get_json()
            holder = next(h for o, h in officers if o.id == db.session.scalar(
                select(Offer.officer_id).where(Offer.referral_id == case["id"])))
            assert client.post(f"/api/v1/referrals/{case['id']}/accept", headers=holder).status_code == 200
            assert client.post(f"/api/v1/referrals/{case['id']}/actions", headers=holder, json={
                "type": "protection_order_issued",
                "protection_order": {"issued_on": today.isoformat(), "expires_on": expires.isoformat()}}
            ).status_code == 201
            cases.append((case, holder))
        # The third case is withdrawn by the survivor: nobody is reminded of it.
        assert client.post(f"/api/v1/referrals/{cases[2][0]['id']}/withdraw", headers=focal_h).status_code == 200

    def tick(day: int) -> int:
        out = runner.invoke(args=["sla", "tick", "--now", f"2026-11-{day}T10:00:00+00:00"])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)["protection_order_reminders"]

    def reminders() -> list[tuple[int, dict]]:
        return [(m.user_id, json.loads(m.params)) for m in db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "protection_order_expiring")
            .order_by(OutboxMessage.id))]

    assert (tick(27), tick(27)) == (1, 0)
    first, first_h = cases[0]
    first_officer = db.session.get(Referral, first["id"]).assigned_officer_id
    assert reminders() == [(first_officer, {"reference": first["reference"], "date": "2026-11-30"})]
    assert tick(28) == 1  # the second order is 3 days from expiry now
    # The first order is extended by a week, then falls due again.
    with time_machine.travel(dt.datetime(2026, 11, 28, 11, tzinfo=dt.UTC), tick=False):
        assert client.post(f"/api/v1/referrals/{first['id']}/actions", headers=first_h, json={
            "type": "protection_order_extended", "protection_order": {"expires_on": "2026-12-07"}}).status_code == 201
    assert (tick(29), tick(30)) == (0, 0)
    out = runner.invoke(args=["sla", "tick", "--now", "2026-12-04T10:00:00+00:00"])
    assert json.loads(out.output)["protection_order_reminders"] == 1
    assert [p["date"] for _u, p in reminders()] == ["2026-11-30", "2026-12-01", "2026-12-07"]
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "protection_order.reminder")).all()
    assert len(events) == 3 and all(e.object_id in {cases[0][0]["id"], cases[1][0]["id"]} for e in events)


def test_admins_list_every_loaded_standard_version(client, login_as, standards):
    _admin, admin_h = login_as("admin")
    page = client.get("/api/v1/admin/standards?per_page=100", headers=admin_h)
    assert page.status_code == 200
    body = page.get_json()
    assert body["total"] == 6 and [(i["code"], i["version"]) for i in body["items"]][:2] == [("DEFAULT", 2),
                                                                                           ("DEFAULT", 1)]
    kg = next(i for i in body["items"] if (i["code"], i["version"]) == ("KG", 2))
    assert kg["countries"] == ["KG"] and kg["effective_from"] == "2026-11-27"
    assert kg["settings"]["protection_order_days"] == 15
    assert {"code": "health_referral_soon",
            "name": "Health referral offered within 120 h (emergency contraception window)"} in kg["steps"]
    assert client.get("/api/v1/admin/standards?per_page=2&page=3", headers=admin_h).get_json()["items"][-1][
        "code"] == "UZ"
    for role in ("officer", "supervisor", "oversight", "focal_point", "service_provider"):
        _u, headers = login_as(role)
        assert client.get("/api/v1/admin/standards", headers=headers).status_code == 403
    db.session.commit()
    listed = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "standard.list")).all()
    assert len(listed) == 2


def test_the_summary_counts_the_periods_coverage_gaps_only(client, place, people, standards):
    """No trained officer in the unit: each case is a coverage gap, counted in the period it happened."""
    for when in (dt.datetime(2026, 3, 10, 9, tzinfo=dt.UTC), dt.datetime(2026, 4, 10, 9, tzinfo=dt.UTC)):
        with time_machine.travel(when, tick=False):
            case = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                               headers=people["focal"][1]).get_json()
            assert case["status"] == "escalated"
    sup_h = people["supervisor"][1]

    def gaps(query: str) -> int:
        resp = client.get(f"/api/v1/compliance/summary{query}", headers=sup_h)
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()["coverage_gaps"]

    assert (gaps(""), gaps("?since=2026-04-01"), gaps("?until=2026-03-31"),
            gaps("?since=2026-05-01")) == (2, 1, 1, 0)


@pytest.mark.parametrize("seed", range(6))
def test_the_version_in_force_is_chosen_as_the_rule_says(db_session, seed):
    """The standard a submission gets: the latest version in force of those listing its country, else the
    latest of the fallbacks (no countries); of equal versions the last loaded. Chosen in one query, checked
    against the rule written out over random sets of versions (a code like ``K_`` must not match ``KG``)."""
    import random

    from referral.standards.loader import standard_for

    rng = random.Random(seed)
    day = dt.date(2026, 6, 1)
    db.session.execute(Standard.__table__.delete())
    rows = []
    for i in range(rng.randint(0, 9)):
        countries = rng.choice(["", "", "KG", "TJ", "KG,TJ", "TJ,UZ", "UZ", "KGZ", "K_", "XKG"])
        rows.append(Standard(code=f"S{i}", version=rng.randint(1, 3), name=f"Standard {i}",
                             countries=countries, effective_from=day + dt.timedelta(days=rng.randint(-5, 5)),
                             body="{}"))
    db.session.add_all(rows)
    db.session.flush()
    villages = {}
    for country in ("KG", "TJ", "UZ", "K_", "RU"):  # a country (the lineage's root), a district, a village
        root = db.session.scalar(select(Area).where(Area.code == country)) or AreaFactory(code=country)
        villages[country] = AreaFactory(parent=AreaFactory(parent=root), kind="community").code
    for country in ("KG", "TJ", "UZ", "K_", "RU"):
        for on in (day - dt.timedelta(days=6), day, day + dt.timedelta(days=6)):
            in_force = sorted((s for s in rows if s.effective_from <= on), key=lambda s: (s.version, s.id), reverse=True)
            own = [s for s in in_force if country in s.countries.split(",")]
            fallback = [s for s in in_force if not s.countries]
            expected = own[0] if own else fallback[0] if fallback else None
            assert standard_for(db.session, country, on) is expected, (country, on)
            # A submission's own choice, made in routing's one statement from the area's country
            assert routing.place(db.session, villages[country], on=on).standard is expected, (country, on)
