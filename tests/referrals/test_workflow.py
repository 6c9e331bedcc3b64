"""The workflow: routing eligibility, offers, acceptance, transitions, deadlines (SPEC §3)."""
import datetime as dt

import pytest
import time_machine
from sqlalchemy import select

from referral.audit.models import AuditEvent
from referral.extensions import db
from referral.reference.models import RoutingMode
from referral.referrals.models import Referral, Status
from referral.standards.models import Certification
from referral.referrals.workflow_models import Alert, CaseAction, Offer, OfferStatus, ProtectionOrder
from tests.factories import AreaFactory, UnitFactory
from tests.referrals.helpers import minimal, submission

T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


def submit(client, focal_h, body):
    resp = client.post("/api/v1/referrals", json=body, headers=focal_h)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def offers_of(case_id):
    db.session.expire_all()
    return db.session.scalars(select(Offer).where(Offer.referral_id == case_id).order_by(Offer.id)).all()


def post(client, case_id, verb, headers, body=None):
    return client.post(f"/api/v1/referrals/{case_id}/{verb}", json=body, headers=headers)


# -- routing ----------------------------------------------------------------------

def test_only_eligible_officers_are_offered_a_case(client, place, people, login_as, certify):
    unit = place["unit"]
    unit.routing_mode = RoutingMode.pool
    good, _ = login_as("officer", unit=unit, languages="ky,ru")
    certify(good, "core", "child")
    uncertified, _ = login_as("officer", unit=unit, languages="ky")
    expired, _ = login_as("officer", unit=unit, languages="ky")
    certify(expired, "core", "child", completed=dt.date.today() - dt.timedelta(days=800))
    male, _ = login_as("officer", unit=unit, languages="ky", gender="male")
    certify(male, "core", "child")
    no_ky, _ = login_as("officer", unit=unit, languages="ru")
    certify(no_ky, "core", "child")
    no_child_course, _ = login_as("officer", unit=unit, languages="ky")
    certify(no_child_course, "core")
    inactive, _ = login_as("officer", unit=unit, languages="ky", active=False)
    certify(inactive, "core", "child")
    not_set_up, _ = login_as("officer", unit=unit, languages="ky", enrolment_pending=True)  # cannot sign in yet
    certify(not_set_up, "core", "child")
    elsewhere, _ = login_as("officer", languages="ky")
    certify(elsewhere, "core", "child")
    body = submission(place["district"].code)
    body["survivor"]["age_group"] = "15-17"  # a child: the child course is needed
    case = submit(client, people["focal"][1], body)
    assert case["status"] == "offered" and "child" in case["flags"]
    assert [o.officer_id for o in offers_of(case["id"])] == [good.id]


def test_an_adult_case_needs_only_the_core_course(client, place, people, login_as, certify):
    core_only, _ = login_as("officer", unit=place["unit"], languages="ky")
    certify(core_only, "core")
    case = submit(client, people["focal"][1], submission(place["district"].code))
    assert [o.officer_id for o in offers_of(case["id"])] == [core_only.id]


def test_direct_routing_offers_the_least_loaded_officer(client, place, people, officers):
    (first, first_h), (second, _second_h) = officers
    one = submit(client, people["focal"][1], minimal(place["district"].code))
    assert offers_of(one["id"])[0].officer_id == first.id
    assert post(client, one["id"], "accept", first_h).status_code == 200
    two = submit(client, people["focal"][1], minimal(place["district"].code))
    assert offers_of(two["id"])[0].officer_id == second.id
    # Only open cases weigh: once the first officer's case is closed, the two are even and the lower id wins.
    db.session.get(Referral, one["id"]).status = Status.closed
    db.session.commit()
    three = submit(client, people["focal"][1], minimal(place["district"].code))
    assert offers_of(three["id"])[0].officer_id == first.id


def test_pool_routing_offers_everyone_and_the_first_accept_wins(client, place, people, officers):
    place["unit"].routing_mode = RoutingMode.pool
    (first, first_h), (second, second_h) = officers
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    assert sorted(o.officer_id for o in offers_of(case["id"])) == sorted([first.id, second.id])
    won = post(client, case["id"], "accept", second_h)
    assert won.status_code == 200 and won.get_json()["assigned_officer_id"] == second.id
    lost = post(client, case["id"], "accept", first_h)
    assert lost.status_code == 409
    assert {o.officer_id: o.status for o in offers_of(case["id"])} == {
        first.id: OfferStatus.cancelled, second.id: OfferStatus.accepted}


def test_no_eligible_officer_escalates_with_a_coverage_gap_alert(client, place, people):
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    assert case["status"] == "escalated"
    alert = db.session.scalar(select(Alert).where(Alert.referral_id == case["id"]))
    assert alert.kind.value == "coverage_gap" and alert.unit_id == place["unit"].id


def test_a_police_suspect_goes_to_another_units_supervisor_and_alerts(client, place, people, officers):
    region = AreaFactory(kind="region")
    place["district"].parent = region
    other_unit = UnitFactory(areas=[region])
    body = submission(place["district"].code)
    body["perpetrator"]["is_police_officer"] = True
    case = submit(client, people["focal"][1], body)
    row = db.session.get(Referral, case["id"])
    assert row.unit_id == other_unit.id and case["status"] == "escalated"
    assert offers_of(case["id"]) == []
    assert db.session.scalar(select(Alert).where(Alert.referral_id == case["id"])).kind.value == "police_suspect"
    # The local supervisor does not see it.
    assert client.get(f"/api/v1/referrals/{case['id']}", headers=people["supervisor"][1]).status_code == 404


# -- offers, acceptance, declines ----------------------------------------------------

def test_offered_officer_sees_a_summary_without_content(client, place, people, officers):
    (first, first_h), _ = officers
    case = submit(client, people["focal"][1], submission(place["district"].code))
    body = client.get(f"/api/v1/referrals/{case['id']}", headers=first_h).get_json()
    assert body["gbv_type"] == "physical_assault" and body["accept_by"]
    assert "survivor" not in body and "incident" not in body
    assert post(client, case["id"], "accept", first_h).status_code == 200
    full = client.get(f"/api/v1/referrals/{case['id']}", headers=first_h).get_json()
    assert full["survivor"]["name"]


def test_accepting_without_a_current_certification_is_refused_and_audited(client, place, people, officers):
    (first, first_h), _ = officers
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    # The certificate lapses between the offer and the answer.
    for cert in db.session.scalars(select(Certification).where(Certification.user_id == first.id)):
        cert.expires_on = dt.date.today()
    db.session.commit()
    resp = post(client, case["id"], "accept", first_h)
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "certification_required"
    assert "T-CORE" in resp.get_json()["error"]["message"]
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.accept",
                                                         AuditEvent.outcome == "denied")).all()
    assert len(denied) == 1 and "T-CORE" in denied[0].reason


def test_decline_needs_a_reason_and_never_comes_back(client, place, people, officers):
    (first, first_h), (second, second_h) = officers
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    assert post(client, case["id"], "decline", first_h, {}).status_code == 422
    assert post(client, case["id"], "decline", first_h, {"reason": "bored"}).status_code == 422
    assert post(client, case["id"], "decline", first_h, {"reason": "workload"}).status_code == 200
    assert [o.officer_id for o in offers_of(case["id"]) if o.status is OfferStatus.open] == [second.id]
    assert post(client, case["id"], "accept", first_h).status_code == 404  # no longer theirs to see
    assert post(client, case["id"], "decline", second_h, {"reason": "unavailable"}).status_code == 200
    row = db.session.get(Referral, case["id"])
    assert row.status.value == "escalated"


def test_recusal_reroutes_to_another_officer(client, place, people, officers):
    (first, first_h), (second, _) = officers
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    post(client, case["id"], "accept", first_h)
    assert post(client, case["id"], "recuse", first_h, {"reason": "conflict_of_interest"}).status_code == 204
    open_offers = [o.officer_id for o in offers_of(case["id"]) if o.status is OfferStatus.open]
    assert open_offers == [second.id]
    assert client.get(f"/api/v1/referrals/{case['id']}", headers=first_h).status_code == 404


# -- case work and the state machine -------------------------------------------------

def test_case_work_actions_protection_orders_and_closure(client, place, people, officers):
    (first, first_h), _ = officers
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    cid = case["id"]
    assert post(client, cid, "close", first_h, {"outcome": "no_further_action"}).status_code == 409  # not accepted yet
    post(client, cid, "accept", first_h)
    assert post(client, cid, "close", first_h, {"outcome": "no_further_action"}).status_code == 409  # not in progress
    resp = post(client, cid, "actions", first_h, {"type": "risk_assessment", "note": "CanaryRisk high"})
    assert resp.status_code == 201 and "Canary" not in resp.get_data(as_text=True)
    action = db.session.get(CaseAction, resp.get_json()["id"])
    assert b"CanaryRisk" not in bytes(action.note_sealed)
    assert db.session.get(Referral, cid).status.value == "in_progress"
    assert post(client, cid, "actions", first_h, {"type": "protection_order_extended",
                                                  "protection_order": {"expires_on": "2027-01-01"}}).status_code == 409
    assert post(client, cid, "actions", first_h, {"type": "protection_order_issued"}).status_code == 422
    assert post(client, cid, "actions", first_h, {"type": "protection_order_issued", "protection_order": {
        "issued_on": "2026-11-25", "expires_on": "2026-11-20"}}).status_code == 422
    assert post(client, cid, "actions", first_h, {"type": "protection_order_issued", "protection_order": {
        "issued_on": "2026-11-25", "expires_on": "2026-12-25"}}).status_code == 201
    assert post(client, cid, "actions", first_h, {"type": "protection_order_extended", "protection_order": {
        "expires_on": "2026-12-01"}}).status_code == 422
    assert post(client, cid, "actions", first_h, {"type": "protection_order_extended", "protection_order": {
        "expires_on": "2027-01-25"}}).status_code == 201
    order = db.session.scalar(select(ProtectionOrder).where(ProtectionOrder.referral_id == cid))
    assert order.expires_on == dt.date(2027, 1, 25) and order.extensions == 1
    shown = client.get(f"/api/v1/referrals/{cid}", headers=first_h).get_json()
    assert shown["protection_orders"] == [{"issued_on": "2026-11-25", "expires_on": "2027-01-25", "extensions": 1}]
    assert [(a["type"], a["actor_id"], a["note"]) for a in shown["actions"]] == [
        ("risk_assessment", first.id, "CanaryRisk high"), ("protection_order_issued", first.id, None),
        ("protection_order_extended", first.id, None)]
    assert shown["actions"][0]["id"] == action.id and shown["actions"][0]["created_at"] == action.created_at.isoformat()
    assert post(client, cid, "actions", first_h, {"type": "closure"}).status_code == 422
    assert post(client, cid, "close", first_h, {"outcome": "maybe"}).status_code == 422
    closed = post(client, cid, "close", first_h, {"outcome": "protection_order_in_place"})
    assert closed.status_code == 200 and closed.get_json()["status"] == "closed"
    for verb, body in (("actions", {"type": "note", "note": "x"}), ("close", {"outcome": "other"}),
                       ("accept", None)):
        assert post(client, cid, verb, first_h, body).status_code == 409
    assert post(client, cid, "withdraw", people["focal"][1]).status_code == 409


def test_supervisor_reassigns_to_an_eligible_officer_only(client, place, people, officers, login_as):
    (first, first_h), (second, second_h) = officers
    _sup, sup_h = people["supervisor"]
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    post(client, case["id"], "accept", first_h)
    uncertified, _ = login_as("officer", unit=place["unit"])
    assert post(client, case["id"], "reassign", sup_h, {"officer_id": uncertified.id}).status_code == 422
    assert post(client, case["id"], "reassign", sup_h, {"officer_id": "x"}).status_code == 422
    resp = post(client, case["id"], "reassign", sup_h, {"officer_id": second.id})
    assert resp.status_code == 200 and resp.get_json()["status"] == "offered"
    assert client.get(f"/api/v1/referrals/{case['id']}", headers=first_h).status_code == 404
    assert post(client, case["id"], "accept", second_h).status_code == 200


def test_withdrawal_stops_the_work(client, place, people, officers):
    (first, first_h), _ = officers
    focal, focal_h = people["focal"]
    case = submit(client, focal_h, minimal(place["district"].code))
    assert post(client, case["id"], "withdraw", focal_h, {"extra": 1}).status_code == 422
    resp = post(client, case["id"], "withdraw", focal_h)
    assert resp.status_code == 200 and resp.get_json()["status"] == "withdrawn"
    assert {o.status for o in offers_of(case["id"])} == {OfferStatus.cancelled}
    # Work stops: the case is gone for the officer it was offered to.
    assert post(client, case["id"], "accept", first_h).status_code == 404
    assert post(client, case["id"], "withdraw", focal_h).status_code == 409


def test_a_withdrawn_case_leaves_the_queue_of_the_officer_who_had_accepted_it(client, place, people, officers):
    """Listed means openable: the officer may not open a withdrawn case (404), so the queue leaves it out,
    the count too, and other cases stay."""
    (first, first_h), _ = officers
    focal_h = people["focal"][1]
    kept, gone = (submit(client, focal_h, minimal(place["district"].code)) for _ in range(2))
    for case in (kept, gone):
        holder = next(h for o, h in officers if o.id == offers_of(case["id"])[0].officer_id)
        assert post(client, case["id"], "accept", holder).status_code == 200
    holder = next(h for o, h in officers if o.id == offers_of(gone["id"])[0].officer_id)
    before = client.get("/api/v1/referrals", headers=holder).get_json()
    assert gone["id"] in [i["id"] for i in before["items"]]
    assert post(client, gone["id"], "withdraw", focal_h).status_code == 200
    after = client.get("/api/v1/referrals", headers=holder).get_json()
    assert gone["id"] not in [i["id"] for i in after["items"]] and after["total"] == before["total"] - 1
    assert client.get(f"/api/v1/referrals/{gone['id']}", headers=holder).status_code == 404


def test_a_focal_point_cannot_withdraw_someone_elses_case(client, place, people, login_as):
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    _other, other_h = login_as("focal_point", organisation=place["group"])
    assert post(client, case["id"], "withdraw", other_h).status_code == 404


# -- deadlines ------------------------------------------------------------------------

def test_sla_tick_expires_reoffers_and_is_idempotent(client, runner, place, people, officers):
    (first, _), (second, _) = officers
    with time_machine.travel(T0, tick=False):
        case = submit(client, people["focal"][1], minimal(place["district"].code))
    deadline = offers_of(case["id"])[0].deadline
    assert deadline == T0 + dt.timedelta(hours=24)
    quiet = runner.invoke(args=["sla", "tick", "--now", (T0 + dt.timedelta(hours=23)).isoformat()])
    assert quiet.exit_code == 0 and '"breaches": 0' in quiet.output
    late = (T0 + dt.timedelta(hours=25)).isoformat()
    first_tick = runner.invoke(args=["sla", "tick", "--now", late])
    assert '"breaches": 1' in first_tick.output and '"reoffered": 1' in first_tick.output
    offers = offers_of(case["id"])
    assert [(o.officer_id, o.status) for o in offers] == [(first.id, OfferStatus.expired), (second.id, OfferStatus.open)]
    again = runner.invoke(args=["sla", "tick", "--now", late])
    assert '"breaches": 0' in again.output
    assert db.session.scalar(select(Alert).where(Alert.referral_id == case["id"])).kind.value == "acceptance_missed"
    breaches = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "sla.breach")).all()
    assert len(breaches) == 1 and breaches[0].object_id == case["id"]
    final = runner.invoke(args=["sla", "tick", "--now", (T0 + dt.timedelta(hours=50)).isoformat()])
    assert '"escalated": 1' in final.output
    assert db.session.get(Referral, case["id"]).status.value == "escalated"


def test_urgent_cases_must_be_accepted_within_an_hour(client, place, people, officers):
    body = minimal(place["district"].code)
    body["incident"]["answers"]["penetration"] = True
    with time_machine.travel(T0, tick=False):
        case = submit(client, people["focal"][1], body)
    assert "clinical_urgent" in case["flags"] and case["gbv_type"] == "rape"
    assert offers_of(case["id"])[0].deadline == T0 + dt.timedelta(hours=1)


def _urgent_case_offered_at_t0(client, place, people, officers):
    """A rape reported at T0 (urgent: answer within 1 h): the case, and the id and headers of the officer
    it is offered to."""
    body = minimal(place["district"].code)
    body["incident"]["answers"]["penetration"] = True
    with time_machine.travel(T0, tick=False):
        case = submit(client, people["focal"][1], body)
    holder_id = offers_of(case["id"])[0].officer_id
    return case, holder_id, next(h for o, h in officers if o.id == holder_id)


@pytest.mark.parametrize("minutes, late", [(59, False), (60, False), (61, True)])
def test_a_late_acceptance_counts_as_a_breach_even_before_a_tick_sees_it(client, runner, place, people, officers,
                                                                          minutes, late):
    """SPEC §3.5: a miss counts as a breach. The officer who accepts after the deadline still gets the case,
    but the miss is recorded as the tick would have recorded it, and the tick does not record it again."""
    from referral.notify.models import OutboxMessage

    case, holder_id, holder_h = _urgent_case_offered_at_t0(client, place, people, officers)
    with time_machine.travel(T0 + dt.timedelta(minutes=minutes), tick=False):
        assert post(client, case["id"], "accept", holder_h).status_code == 200
    tick = runner.invoke(args=["sla", "tick", "--now", (T0 + dt.timedelta(hours=3)).isoformat()])
    assert '"breaches": 0' in tick.output
    breaches = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "sla.breach")).all()
    alerts = db.session.scalars(select(Alert).where(Alert.referral_id == case["id"])).all()
    told = db.session.scalars(select(OutboxMessage).where(OutboxMessage.template == "breach")).all()
    assert (len(breaches), len(alerts), len(told)) == ((1, 1, 1) if late else (0, 0, 0))
    if late:
        assert breaches[0].object_id == case["id"] and f"officer {holder_id}" in breaches[0].reason
        assert alerts[0].kind.value == "acceptance_missed"
    assert db.session.get(Referral, case["id"]).assigned_officer_id == holder_id


def test_a_late_decline_counts_as_a_breach_too(client, runner, place, people, officers):
    case, first_id, first_h = _urgent_case_offered_at_t0(client, place, people, officers)
    with time_machine.travel(T0 + dt.timedelta(hours=5), tick=False):
        assert post(client, case["id"], "decline", first_h, {"reason": "workload"}).status_code == 200
    assert '"breaches": 0' in runner.invoke(args=["sla", "tick", "--now",
                                                  (T0 + dt.timedelta(hours=5, minutes=30)).isoformat()]).output
    breaches = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "sla.breach")).all()
    assert len(breaches) == 1 and f"officer {first_id} (declined late" in breaches[0].reason


def test_sla_tick_rejects_a_bad_time(runner, db_session):
    result = runner.invoke(args=["sla", "tick", "--now", "tomorrow"])
    assert result.exit_code == 2 and "ISO" in result.output


def test_future_incident_dates_are_refused(client, place, people):
    body = minimal(place["district"].code)
    body["incident"]["date"] = "2999-01-01"
    resp = client.post("/api/v1/referrals", json=body, headers=people["focal"][1])
    assert resp.status_code == 422 and "incident" in resp.get_json()["error"]["fields"]


@pytest.mark.parametrize("utc, date, accepted", [
    # 03:30 in Bishkek (UTC+6), Dushanbe and Tashkent (UTC+5) on 10 March is still 9 March in UTC:
    # tonight's incident, dated by the local calendar, is no future date.
    ("2026-03-09T21:30:00+00:00", "2026-03-10", True),
    ("2026-03-09T21:30:00+00:00", "2026-03-11", False),   # the day after tomorrow, in every zone
    ("2026-03-10T09:59:00+00:00", "2026-03-10", True),
    ("2026-03-10T09:59:00+00:00", "2026-03-11", False),   # UTC+14 is still on the 10th (23:59)
    ("2026-03-10T10:00:00+00:00", "2026-03-11", True),    # ... and now on the 11th somewhere
])
def test_an_incident_date_is_judged_by_the_calendar_where_the_focal_point_is(client, place, people, officers,
                                                                            utc, date, accepted):
    body = minimal(place["district"].code)
    body["incident"]["date"] = date
    with time_machine.travel(dt.datetime.fromisoformat(utc), tick=False):
        resp = client.post("/api/v1/referrals", json=body, headers=people["focal"][1])
    assert resp.status_code == (201 if accepted else 422), resp.get_json()


def test_officer_list_shows_offers_and_own_cases_only(client, place, people, officers):
    (first, first_h), (second, second_h) = officers
    one = submit(client, people["focal"][1], minimal(place["district"].code))
    two = submit(client, people["focal"][1], minimal(place["district"].code))
    assert offers_of(two["id"])[0].officer_id in (first.id, second.id)
    mine = {item["id"] for item in client.get("/api/v1/referrals", headers=first_h).get_json()["items"]}
    theirs = {item["id"] for item in client.get("/api/v1/referrals", headers=second_h).get_json()["items"]}
    assert mine | theirs == {one["id"], two["id"]} and not (mine & theirs)
    body = client.get("/api/v1/referrals?per_page=1", headers=people["supervisor"][1]).get_json()
    assert body["total"] == 2 and len(body["items"]) == 1 and body["per_page"] == 1


def test_duplicates_by_phone_only_within_ninety_days(client, place, people):
    from tests.referrals.helpers import canaries

    values = canaries()
    first = submit(client, people["focal"][1], submission(place["district"].code, values))
    same_phone = {"survivor.phone": values["survivor.phone"]}
    soon = submit(client, people["focal"][1], submission(place["district"].code, {**canaries(), **same_phone}))
    late = submit(client, people["focal"][1], submission(place["district"].code, {**canaries(), **same_phone}))
    # Spread them in time: 30 days after the first, and 200 days after.
    base = db.session.get(Referral, first["id"]).created_at
    db.session.get(Referral, soon["id"]).created_at = base + dt.timedelta(days=30)
    db.session.get(Referral, late["id"]).created_at = base + dt.timedelta(days=200)
    db.session.commit()
    matches = client.get(f"/api/v1/referrals/{first['id']}", headers=people["supervisor"][1]).get_json()["matches"]
    assert matches["same_phone"] == [soon["reference"]]


GARBAGE = [None, [], "text", 0, {"reason": None}, {"reason": 7}, {"type": {"a": 1}}, {"outcome": ["x"]},
           {"officer_id": "1; DROP TABLE users"}, {"officer_id": 10**30}, {"text": "x" * 100000},
           {"protection_order": "soon", "type": "protection_order_issued"}]


def test_bad_input_never_gives_a_500(client, app, place, people, officers, login_as):
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    callers = [people["focal"][1], people["supervisor"][1], officers[0][1], login_as("admin")[1]]
    routes = sorted({r.rule for r in app.url_map.iter_rules()
                     if r.rule.startswith("/api/v1/referrals/<referral_id>/") and "POST" in r.methods})
    assert len(routes) >= 8
    for rule in routes:
        for target in (case["id"], "not-a-case"):
            for headers in callers:
                for body in GARBAGE:
                    resp = client.post(rule.replace("<referral_id>", target), json=body, headers=headers)
                    assert resp.status_code < 500, (rule, body, resp.get_json())


def test_review_regressions_reassignment_keeps_clocks_and_visibility_rules(client, place, people, officers,
                                                                           login_as, certify, runner):
    """Found in review: reassigning reset the acceptance clock; a reassigned-away officer kept the summary;
    a recused officer could be chosen again; an action note was sealed to row 'None'."""
    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    (first, first_h), (second, second_h) = officers
    _sup, sup_h = people["supervisor"]
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    cid = case["id"]
    post(client, cid, "accept", first_h)
    note = post(client, cid, "actions", first_h, {"type": "risk_assessment", "note": "CanaryAction at home"})
    assert note.status_code == 201
    body = client.get(f"/api/v1/referrals/{cid}", headers=first_h).get_json()
    assert body["actions"][0]["note"] == "CanaryAction at home" and body["actions"][0]["id"] == note.get_json()["id"]
    assert post(client, cid, "recuse", first_h, {"reason": "conflict_of_interest"}).status_code == 204
    assert post(client, cid, "reassign", sup_h, {"officer_id": first.id}).status_code == 422  # never back
    third, third_h = login_as("officer", unit=place["unit"], languages="ky,ru")
    certify(third, "core", "child")
    assert post(client, cid, "reassign", sup_h, {"officer_id": third.id}).status_code == 200
    assert client.get(f"/api/v1/referrals/{cid}", headers=second_h).status_code == 404  # reassigned away
    steps = {s["step"]: s["status"] for s in
             client.get(f"/api/v1/referrals/{cid}/compliance", headers=sup_h).get_json()["steps"]}
    assert steps["accept"] == "met"  # the first acceptance still counts


def test_all_declined_is_an_escalation_not_a_coverage_gap(client, place, people, officers):
    (first, first_h), (second, second_h) = officers
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    post(client, case["id"], "decline", first_h, {"reason": "workload"})
    post(client, case["id"], "decline", second_h, {"reason": "workload"})
    assert db.session.get(Referral, case["id"]).status.value == "escalated"
    assert db.session.scalar(select(Alert).where(Alert.referral_id == case["id"])) is None


def test_a_routed_submission_is_inserted_once_already_offered(client, place, people, officers):
    """The case, its consents, offer and message go in with the request's one flush: no INSERT of a case
    still "new" followed by an UPDATE to "offered" (issue 10: a statement and a flush fewer per submission)."""
    from sqlalchemy import event

    seen = []

    def note(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split()).lower())

    engine = db.session.get_bind()
    event.listen(engine, "before_cursor_execute", note)
    try:
        case = submit(client, people["focal"][1], submission(place["district"].code))
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert case["status"] == "offered"
    assert not [s for s in seen if s.startswith("update referrals")]
    # (on PostgreSQL inside the one statement that writes the case, its offer and the message)
    assert sum(s.count("insert into referrals ") for s in seen) == 1
    stored = db.session.get(Referral, case["id"])
    assert stored.status.value == "offered" and stored.unit_id == place["unit"].id
    assert [o.officer_id for o in offers_of(case["id"])] in ([o.id] for o, _h in officers)


def test_protection_order_dates_must_be_plausible(client, place, people, officers):
    (_first, first_h), _ = officers
    with time_machine.travel(T0, tick=False):
        cid = submit(client, people["focal"][1], minimal(place["district"].code))["id"]
        post(client, cid, "accept", first_h)

        def issue(issued_on, expires_on):
            order = {"expires_on": expires_on} | ({"issued_on": issued_on} if issued_on else {})
            return post(client, cid, "actions", first_h, {"type": "protection_order_issued",
                                                          "protection_order": order})

        def problem(resp, field):
            assert resp.status_code == 422, resp.get_json()
            return resp.get_json()["error"]["fields"]["protection_order"][field]

        assert problem(issue("0001-01-01", "2026-12-25"), "issued_on") == ["At most five years ago: check the year."]
        assert problem(issue("2021-11-24", "2026-12-25"), "issued_on") == ["At most five years ago: check the year."]
        assert problem(issue("2026-11-26", "2026-12-25"), "issued_on") == ["Cannot be in the future."]
        assert problem(issue("2026-11-25", "9999-12-31"), "expires_on") == [
            "At most five years after it was issued: check the year."]
        assert problem(issue(None, "2031-11-28"), "expires_on") == [
            "At most five years after it was issued: check the year."]
        assert db.session.scalar(select(ProtectionOrder).where(ProtectionOrder.referral_id == cid)) is None
    # 19:00 UTC on the 25th is 01:00 on the 26th in Bishkek (LOCAL_TIMEZONE): the officer's date, a day
    # ahead of UTC's, is today; five years back and forward count from it too.
    with time_machine.travel(T0 + dt.timedelta(hours=10), tick=False):
        assert problem(issue("2026-11-27", "2026-12-25"), "issued_on") == ["Cannot be in the future."]
        assert problem(issue("2021-11-25", "2026-12-25"), "issued_on") == ["At most five years ago: check the year."]
        assert issue("2026-11-26", "2031-11-26").status_code == 201
        resp = issue("2021-11-26", "2026-11-26")
        assert resp.status_code == 201, resp.get_json()
        extend = {"type": "protection_order_extended", "protection_order": {"expires_on": "2031-11-27"}}
        resp = post(client, cid, "actions", first_h, extend)
        assert resp.status_code == 422
        assert resp.get_json()["error"]["fields"]["protection_order"]["expires_on"] == [
            "At most five years from now: check the year."]
        extend["protection_order"]["expires_on"] = "2031-11-26"
        assert post(client, cid, "actions", first_h, extend).status_code == 201
        orders = db.session.scalars(select(ProtectionOrder).where(ProtectionOrder.referral_id == cid)
                                    .order_by(ProtectionOrder.id)).all()
        assert [(o.issued_on.isoformat(), o.expires_on.isoformat(), o.extensions) for o in orders] == [
            ("2026-11-26", "2031-11-26", 0), ("2021-11-26", "2031-11-26", 1)]


@pytest.mark.parametrize("verb, body", [("decline", {"reason": "x"}), ("recuse", {"reason": "x"}),
                                        ("close", {"outcome": "x"})])
def test_a_bad_body_on_someone_elses_case_is_a_404_and_a_denied_event(client, place, people, login_as, verb, body):
    """Visibility before validation: probing another officer's case leaves a trace for the anomaly check,
    whatever the body said."""
    case = submit(client, people["focal"][1], minimal(place["district"].code))
    _stranger, stranger_h = login_as("officer")
    assert post(client, case["id"], verb, stranger_h, body).status_code == 404
    db.session.commit()
    denied = db.session.scalars(select(AuditEvent).where(AuditEvent.object_id == case["id"],
                                                         AuditEvent.action == f"referral.{verb}",
                                                         AuditEvent.outcome == "denied")).all()
    assert len(denied) == 1


def test_a_certificate_lapses_at_midnight_in_the_service_zone_not_in_utc(client, app, place, people, officers):
    """Certificates are current up to (not on) their expiry day in LOCAL_TIMEZONE (Bishkek, UTC+6): at
    18:30 UTC the day there is already the expiry day, though UTC's is the day before."""
    assert app.config["LOCAL_TIMEZONE"] == "Asia/Bishkek"
    day = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)  # in the past: the tokens are still valid
    for cert in db.session.scalars(select(Certification)):
        cert.completed_on, cert.expires_on = day - dt.timedelta(days=300), day + dt.timedelta(days=1)
    db.session.commit()
    focal_h = people["focal"][1]
    by_id = {user.id: headers for user, headers in officers}

    def at(hour, minute):
        return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)

    with time_machine.travel(at(17, 0), tick=False) as traveller:
        early = submit(client, focal_h, minimal(place["district"].code))
        traveller.move_to(at(17, 30))  # 23:30 in Bishkek: the last half hour of the certificate
        [early_offer] = offers_of(early["id"])
        assert post(client, early["id"], "accept", by_id[early_offer.officer_id]).status_code == 200
        traveller.move_to(at(17, 45))
        late = submit(client, focal_h, minimal(place["district"].code))
        [late_offer] = offers_of(late["id"])  # offered while the certificate was current
        traveller.move_to(at(18, 30))  # 00:30 in Bishkek: lapsed, though still the day before in UTC
        refused = post(client, late["id"], "accept", by_id[late_offer.officer_id])
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "certification_required"
        unoffered = submit(client, focal_h, minimal(place["district"].code))
        assert offers_of(unoffered["id"]) == []  # nobody in the unit is certified any more
