"""Closure with the supervisor's approval, where the unit requires it (SPEC §3.7)."""
from sqlalchemy import select

from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.referrals.models import Referral
from referral.referrals.workflow_models import CaseAction
from tests.referrals.helpers import minimal
from tests.referrals.test_workflow import post, submit


def ready_to_close(client, place, people, officers):
    """A case accepted by the first officer with the default checklist done (no standard loaded: none)."""
    (officer, officer_h), _ = officers
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    assert post(client, case["id"], "accept", officer_h).status_code == 200
    assert post(client, case["id"], "actions", officer_h, {"type": "risk_assessment"}).status_code == 201
    return case["id"], officer_h


def actions_of(cid):
    return db.session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == cid)).all()


def test_without_the_unit_setting_an_officer_closes_directly(client, place, people, officers):
    cid, officer_h = ready_to_close(client, place, people, officers)
    resp = post(client, cid, "close", officer_h, {"outcome": "no_further_action"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "closed"
    assert resp.get_json()["closure_pending"] is False


def test_an_officers_closure_waits_for_the_supervisor_who_approves(client, place, people, officers):
    place["unit"].closure_approval = True
    db.session.flush()
    cid, officer_h = ready_to_close(client, place, people, officers)
    resp = post(client, cid, "close", officer_h, {"outcome": "services_provided"})
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "in_progress"
    assert resp.get_json()["closure_pending"] is True
    assert post(client, cid, "close", officer_h, {"outcome": "other"}).status_code == 409  # already waiting
    # The officer cannot approve their own closure; a stranger supervisor gets 404 and a denied event.
    assert post(client, cid, "close/approve", officer_h).status_code == 403
    sup, sup_h = people["supervisor"]
    body = client.get(f"/api/v1/referrals/{cid}", headers=sup_h).get_json()
    assert body["closure_pending"] is True and body["outcome"] == "services_provided"
    approved = post(client, cid, "close/approve", sup_h)
    assert approved.status_code == 200 and approved.get_json()["status"] == "closed"
    referral = db.session.get(Referral, cid)
    db.session.refresh(referral)
    assert referral.outcome == "services_provided" and referral.closed_at is not None
    assert referral.closure_requested_at is None
    closure = db.session.scalar(select(CaseAction).where(CaseAction.referral_id == cid,
                                                         CaseAction.type == "closure"))
    assert closure.actor_id == sup.id
    assert {"referral.close_request", "referral.close_approve"} <= set(actions_of(cid))
    assert post(client, cid, "close/approve", sup_h).status_code == 409  # nothing waiting any more


def test_the_supervisor_sends_a_closure_back_and_work_goes_on(client, place, people, officers):
    place["unit"].closure_approval = True
    db.session.flush()
    cid, officer_h = ready_to_close(client, place, people, officers)
    post(client, cid, "close", officer_h, {"outcome": "no_further_action"})
    sent_back = post(client, cid, "close/reject", people["supervisor"][1])
    assert sent_back.status_code == 200 and sent_back.get_json()["status"] == "in_progress"
    assert sent_back.get_json()["closure_pending"] is False
    assert db.session.get(Referral, cid).outcome is None
    assert post(client, cid, "actions", officer_h, {"type": "follow_up"}).status_code == 201
    assert post(client, cid, "close/reject", people["supervisor"][1]).status_code == 409
    again = post(client, cid, "close", officer_h, {"outcome": "other"})
    assert again.get_json()["closure_pending"] is True


def test_a_supervisor_of_the_unit_closes_without_asking_anyone(client, place, people, officers):
    place["unit"].closure_approval = True
    db.session.flush()
    cid, _officer_h = ready_to_close(client, place, people, officers)
    resp = post(client, cid, "close", people["supervisor"][1], {"outcome": "other"})
    assert resp.status_code == 200 and resp.get_json()["status"] == "closed"


def test_other_units_and_roles_cannot_decide_a_closure(client, place, people, officers, login_as):
    from tests.factories import UnitFactory

    place["unit"].closure_approval = True
    db.session.flush()
    cid, officer_h = ready_to_close(client, place, people, officers)
    post(client, cid, "close", officer_h, {"outcome": "other"})
    _other, other_h = login_as("supervisor", unit=UnitFactory())
    before = len(actions_of(cid))
    assert post(client, cid, "close/approve", other_h).status_code == 404
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.object_id == cid,
                                                         AuditEvent.outcome == "denied")).all()
    assert len(actions_of(cid)) > before and denied
    for role in ("focal_point", "service_provider", "oversight", "admin"):
        _u, h = login_as(role)
        assert post(client, cid, "close/reject", h).status_code == 403
    assert post(client, cid, "close/approve", people["supervisor"][1], {"unexpected": 1}).status_code in (400, 422)
    assert db.session.get(Referral, cid).closure_requested_at is not None


def test_reassignment_drops_a_waiting_closure(client, place, people, officers):
    place["unit"].closure_approval = True
    db.session.flush()
    cid, officer_h = ready_to_close(client, place, people, officers)
    post(client, cid, "close", officer_h, {"outcome": "other"})
    second = officers[1][0]
    assert post(client, cid, "reassign", people["supervisor"][1], {"officer_id": second.id}).status_code == 200
    referral = db.session.get(Referral, cid)
    db.session.refresh(referral)
    assert referral.closure_requested_at is None and referral.outcome is None


def test_reference_files_set_the_unit_rule(tmp_path, runner, db_session):
    from referral.reference.models import Unit

    path = tmp_path / "ref.yaml"
    path.write_text("areas: [{code: CA, name: A, kind: country}]\n"
                    "units: [{code: U-CA, name: U, areas: [CA], closure_approval: true}]\n")
    assert runner.invoke(args=["reference", "load", str(path)]).exit_code == 0
    assert db.session.scalar(select(Unit).where(Unit.code == "U-CA")).closure_approval is True
    path.write_text("areas: [{code: CA, name: A, kind: country}]\n"
                    "units: [{code: U-CA, name: U, areas: [CA], closure_approval: maybe}]\n")
    assert runner.invoke(args=["reference", "load", str(path)]).exit_code != 0
