"""Admin course/certification API and the compliance summary on a generated set of cases."""
import datetime as dt
import json

import pytest
import time_machine
from zoneinfo import ZoneInfo

from tests.referrals.helpers import minimal

# A few days back, so the officers' certificates (30 days old) are current and tokens still valid.
T0 = (dt.datetime.now(dt.UTC) - dt.timedelta(days=5)).replace(hour=8, minute=0, second=0, microsecond=0)


def test_admin_manages_courses_and_records_certifications(client, login_as, make_user):
    _admin, headers = login_as("admin")
    created = client.post("/api/v1/admin/courses", json={"code": "GBV-REFRESH", "name": "Refresher",
                                                        "required_for": "none"}, headers=headers)
    assert created.status_code == 201 and created.get_json()["validity_months"] == 24
    updated = client.post("/api/v1/admin/courses", json={"code": "GBV-REFRESH", "name": "Refresher course",
                                                        "validity_months": 12}, headers=headers)
    assert updated.status_code == 200 and updated.get_json()["validity_months"] == 12
    listed = client.get("/api/v1/admin/courses", headers=headers).get_json()
    assert any(c["code"] == "GBV-REFRESH" for c in listed["items"])
    officer = make_user("officer")
    cert = client.post("/api/v1/admin/certifications", json={"email": officer.email, "course": "GBV-REFRESH",
                                                             "completed": "2026-01-31"}, headers=headers)
    assert cert.status_code == 201 and cert.get_json()["expires_on"] == "2027-01-31"
    for bad in ({"code": "bad code", "name": "x"}, {"code": "X", "name": "x", "validity_months": 0},
                {"code": "X", "name": "x", "required_for": "everyone"}):
        assert client.post("/api/v1/admin/courses", json=bad, headers=headers).status_code == 422
    assert client.post("/api/v1/admin/certifications", json={"email": officer.email, "course": "NOPE",
                                                             "completed": "2026-01-01"}, headers=headers).status_code == 404


@pytest.mark.parametrize("role", ["officer", "supervisor", "focal_point", "oversight", "service_provider"])
def test_only_admins_manage_training(client, login_as, role):
    _u, headers = login_as(role)
    assert client.post("/api/v1/admin/courses", json={"code": "X", "name": "x"}, headers=headers).status_code == 403
    assert client.get("/api/v1/admin/courses", headers=headers).status_code == 403


def test_summary_on_a_generated_set_of_cases(client, runner, place, people, officers, login_as):
    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    (first, first_h), (second, second_h) = officers
    focal_h = people["focal"][1]
    plan = [  # (hours until accepted or None, hours after acceptance of first contact or None)
        (2, 1), (3, 30), (30, None), (None, None), (5, 2),
    ]
    with time_machine.travel(T0, tick=False) as traveller:
        ids = [client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=focal_h).get_json()["id"]
               for _ in plan]
        for case_id, (accept_after, contact_after) in zip(ids, plan):
            if accept_after is None:
                continue
            traveller.move_to(T0 + dt.timedelta(hours=accept_after))
            offered_to = client.get("/api/v1/referrals", headers=first_h).get_json()["items"]
            headers = first_h if any(i["id"] == case_id for i in offered_to) else second_h
            assert client.post(f"/api/v1/referrals/{case_id}/accept", headers=headers).status_code == 200
            if contact_after is not None:
                traveller.move_to(T0 + dt.timedelta(hours=accept_after + contact_after))
                assert client.post(f"/api/v1/referrals/{case_id}/actions", json={"type": "contact_made"},
                                   headers=headers).status_code == 201
    _auditor, oversight_h = login_as("oversight")
    since, until = (T0 - dt.timedelta(days=1)).date(), (T0 + dt.timedelta(days=3)).date()
    resp = client.get(f"/api/v1/compliance/summary?unit={place['unit'].code}&since={since}&until={until}",
                      headers=oversight_h)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["cases"] == 5
    accept = body["steps"]["accept"]
    # Accepted at 2 h, 3 h, 5 h (met), 30 h (late); one never accepted and now overdue (breached).
    assert (accept["met"], accept["met_late"], accept["breached"]) == (3, 1, 1)
    assert accept["on_time"] == 0.6
    assert body["median_hours_to_accept"] == 4.0            # of 2, 3, 5, 30
    assert body["median_hours_to_first_contact"] == 2.0     # of 1, 30, 2
    contact = body["steps"]["first_contact"]
    assert contact["met"] == 2 and contact["met_late"] == 1
    month = (T0 + dt.timedelta(hours=24)).astimezone(ZoneInfo("Asia/Bishkek")).strftime("%Y-%m")
    assert {"step": "accept", "month": month, "count": 1} in body["breaches_by_step_and_month"]
    assert sum(o["met"] + o.get("met_late", 0) + o.get("breached", 0) + o.get("pending", 0)
               + o.get("not_applicable", 0) for o in body["officers"]) > 0
    assert "survivor" not in json.dumps(body)
    # Supervisors see their own unit only; bad arguments are field errors.
    sup = client.get("/api/v1/compliance/summary", headers=people["supervisor"][1]).get_json()
    assert sup["unit"] == place["unit"].code and sup["cases"] == 5
    other_unit_sup, other_h = login_as("supervisor")
    assert client.get(f"/api/v1/compliance/summary?unit={place['unit'].code}", headers=other_h).status_code == 422
    assert client.get("/api/v1/compliance/summary?since=yesterday", headers=oversight_h).status_code == 422
    assert client.get("/api/v1/compliance/summary?unit=NOPE", headers=oversight_h).status_code == 422
    for role in ("officer", "admin", "focal_point", "service_provider"):
        _u, headers = login_as(role)
        assert client.get("/api/v1/compliance/summary", headers=headers).status_code == 403


def test_steps_count_against_the_officer_who_held_the_case(client, runner, place, people, officers, login_as):
    """A handover moves nothing that happened before it: the first officer let first contact go late, and the
    second, who then made it, is not blamed for that; what the second did in time is theirs; a step that
    falls due after a recusal, with nobody holding the case, counts against no officer."""
    from sqlalchemy import select

    from referral.extensions import db
    from referral.standards.models import StepStatus

    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    focal_h, sup_h = people["focal"][1], people["supervisor"][1]
    hour = dt.timedelta(hours=1)

    def officer_of_each_step(case_id):
        db.session.expire_all()
        return {r.step_code: r.officer_id for r in db.session.scalars(
            select(StepStatus).where(StepStatus.referral_id == case_id))}

    with time_machine.travel(T0, tick=False) as traveller:
        case_id = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                              headers=focal_h).get_json()["id"]
        (first, first_h), (second, second_h) = officers
        if not any(i["id"] == case_id for i in client.get("/api/v1/referrals", headers=first_h).get_json()["items"]):
            (first, first_h), (second, second_h) = (second, second_h), (first, first_h)
        traveller.move_to(T0 + hour)
        assert client.post(f"/api/v1/referrals/{case_id}/accept", headers=first_h).status_code == 200
        traveller.move_to(T0 + 27 * hour)  # first contact fell due at 25 h, while the first officer held it
        moved = client.post(f"/api/v1/referrals/{case_id}/reassign", json={"officer_id": second.id}, headers=sup_h)
        assert moved.status_code == 200, moved.get_json()
        assert client.post(f"/api/v1/referrals/{case_id}/accept", headers=second_h).status_code == 200
        for minute, action in enumerate(("risk_assessment", "contact_made", "rights_informed")):
            traveller.move_to(T0 + 27 * hour + dt.timedelta(minutes=minute + 1))  # in this order
            assert client.post(f"/api/v1/referrals/{case_id}/actions", json={"type": action},
                               headers=second_h).status_code == 201
        steps = officer_of_each_step(case_id)
        assert steps["accept"] == first.id                  # met, by the first officer
        assert steps["first_contact"] == first.id           # made late by the second: let go late by the first
        assert steps["risk_assessment_first"] == second.id  # in time, by the second
        assert steps["rights_informed"] == second.id
        assert steps["safety_plan"] == second.id            # falls due later: whoever holds the case now
        _auditor, oversight_h = login_as("oversight")
        summary = client.get(f"/api/v1/compliance/summary?unit={place['unit'].code}", headers=oversight_h).get_json()
        by_officer = {o["officer_id"]: o for o in summary["officers"]}
        assert by_officer[first.id].get("met_late") == 1 and by_officer[first.id].get("met") == 1
        assert not by_officer[second.id].get("met_late") and by_officer[second.id].get("met") == 2

        traveller.move_to(T0 + 30 * hour)
        assert client.post(f"/api/v1/referrals/{case_id}/recuse", json={"reason": "conflict_of_interest"},
                           headers=second_h).status_code == 204
        steps = officer_of_each_step(case_id)
        assert steps["safety_plan"] is None  # nobody holds the case when it falls due
        assert (steps["accept"], steps["first_contact"], steps["rights_informed"]) == (first.id, first.id, second.id)


def test_summary_dates_out_of_range_are_field_errors(client, login_as):
    _auditor, headers = login_as("oversight")
    for query in ("until=9999-12-31", "since=0001-01-01"):
        resp = client.get(f"/api/v1/compliance/summary?{query}", headers=headers)
        assert resp.status_code == 422
