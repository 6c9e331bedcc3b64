"""Stored step statuses say what judging each case says, at every moment (issue 10).

The unit summary now counts ``step_statuses`` and ``case_timings`` in the database. These tests compare it
with the per-case evaluation it replaced, on random cases (urgent and not, child, every relationship,
actions inside and outside follow-up windows, some exactly at a due time, closures, withdrawals, cases
with no standard or no officer) and at times before, at and after their deadlines — and check that the
rows stay current as cases change, through the ORM and through the API.
"""
import datetime as dt
import random
from collections import Counter, defaultdict

import pytest
import time_machine
import yaml
from sqlalchemy import func, select

from config.settings import PROJECT_ROOT
from referral.audit.models import AuditEvent
from referral.db import local_zone
from referral.extensions import db
from referral.referrals.models import Referral, Status
from referral.referrals.workflow_models import ActionType, CaseAction, Offer, OfferStatus
from referral.standards import step_statuses
from referral.standards.compliance import BREACHED, MET, MET_LATE, CaseFacts, evaluate, timeline
from referral.standards.loader import load_standards, read_standard
from referral.standards.models import CaseTiming, Standard, StepStatus
from referral.standards.services import bulk_facts, compliance_of, compliance_summary, read_compliance
from tests.factories import AreaFactory, UnitFactory
from tests.referrals.helpers import minimal

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
STANDARDS = PROJECT_ROOT / "config" / "standards"

# Rules the shipped standards do not use: the "offered" event, child and GBV-type conditions, a window
# counted from submission, fractional hours, and a closure checklist over all of them.
PARITY_STANDARD = {
    "code": "PARITY", "version": 1, "name": "Parity test standard", "countries": ["XX"],
    "effective_from": "2026-01-01",
    "settings": {"offer_hours": 2, "offer_urgent_hours": 0.5, "child_hours": 12.25},
    "steps": [
        {"code": "offered_quickly", "name": "Contact tried soon after the offer", "event": "offered",
         "deadline": "offer_hours", "urgent_deadline": "offer_urgent_hours",
         "satisfied_by": ["contact_attempt", "contact_made"]},
        {"code": "child_clinic", "name": "Child referred to a clinic", "when": {"child": True,
                                                                               "gbv_types": ["rape", "sexual_assault"]},
         "event": "incident", "deadline": "child_hours", "satisfied_by": ["service_referral"]},
        {"code": "early_window", "name": "Follow-up between 2 and 30 hours", "event": "submitted",
         "window_start_hours": 2, "deadline_hours": 30, "satisfied_by": ["follow_up", "note"]},
        {"code": "closure", "name": "Closure checklist", "rule": "closure",
         "requires": ["offered_quickly", "child_clinic", "early_window"]},
    ],
}
FLAGS = ("clinical_urgent", "clinical_soon", "immediate_danger", "intimate_partner", "child")
TYPES = ("rape", "sexual_assault", "physical_assault", "forced_marriage", "psychological_abuse", "non_gbv")
AGES = ("0-5", "12-14", "15-17", "18-25", "26-40", "61+")
RELATIONSHIPS = ("intimate_partner", "former_partner", "family", "stranger", None)
ACTIONS = [t for t in ActionType if t is not ActionType.closure]


# -- the per-case implementation the summary replaced, kept as the reference --------------------------

def _median(values):
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _holds(session, case_id, case=None):
    """(officer, from, until) from the case's offers: each acceptance lasts until its release or the next; with
    none on record, the assigned officer's since the first acceptance."""
    taken = sorted(((o.responded_at, o.released_at, o.officer_id) for o in session.scalars(
        select(Offer).where(Offer.referral_id == case_id, Offer.responded_at.is_not(None)))
        if (o.status is OfferStatus.accepted or o.released_at is not None)
        and (o.released_at is None or o.released_at > o.responded_at)), key=lambda t: t[0])
    out = []
    for i, (start, released, officer) in enumerate(taken):
        ends = [t for t in (released, taken[i + 1][0] if i + 1 < len(taken) else None) if t is not None]
        out.append((officer, start, min(ends) if ends else None))
    if not out and case is not None and case.assigned_officer_id and case.first_accepted_at:
        out.append((case.assigned_officer_id, case.first_accepted_at, None))
    return out


def _holder(holds, at):
    held = [officer for officer, start, until in holds if start <= at and (until is None or at < until)]
    return held[0] if held else None


def per_case_summary(session, unit, since, until, now):
    where = []
    if unit is not None:
        where.append(Referral.unit_id == unit.id)
    if since:  # days on the service's calendar
        where.append(Referral.created_at >= dt.datetime.combine(since, dt.time.min, tzinfo=local_zone()))
    if until:
        where.append(Referral.created_at < dt.datetime.combine(until + dt.timedelta(days=1), dt.time.min,
                                                               tzinfo=local_zone()))
    step_counts, by_officer = defaultdict(Counter), defaultdict(Counter)
    breaches_by_month, to_accept, to_contact, cases = Counter(), [], [], 0
    ids = session.scalars(select(Referral.id).where(*where)).all()
    judged = [j for start in range(0, len(ids), 5000) for j in bulk_facts(session, ids[start:start + 5000])]
    for referral, facts, standard in judged:
        cases += 1
        if facts.accepted_at:
            to_accept.append((facts.accepted_at - facts.submitted_at).total_seconds() / 3600)
            contact = [when for kind, when in facts.actions if kind == "contact_made"]
            if contact:
                to_contact.append((contact[0] - facts.accepted_at).total_seconds() / 3600)
        holds = _holds(session, referral.id, referral)
        for result in (evaluate(standard, facts, now) if standard is not None else []):
            step_counts[result.code][result.status] += 1
            # Met: whoever did it; late, breached or open: whoever held it when it fell due.
            at = result.done_at if result.status == MET else (result.due_at or result.done_at or result.decided_at)
            officer = referral.assigned_officer_id if at is None else _holder(holds, at)
            if officer:
                by_officer[officer][result.status] += 1
            if result.status == BREACHED:
                due = (result.due_at or referral.created_at).astimezone(local_zone())
                breaches_by_month[(result.code, due.strftime("%Y-%m"))] += 1

    def on_time(counts):
        judged = counts[MET] + counts[MET_LATE] + counts[BREACHED]
        return round(counts[MET] / judged, 3) if judged else None

    return {
        "cases": cases,
        "steps": {code: {"on_time": on_time(c), **dict(c)} for code, c in sorted(step_counts.items())},
        "officers": [{"officer_id": oid, "on_time": on_time(c), **dict(c)} for oid, c in sorted(by_officer.items())],
        "median_hours_to_accept": _median(to_accept),
        "median_hours_to_first_contact": _median(to_contact),
        "breaches_by_step_and_month": [{"step": s, "month": m, "count": n}
                                       for (s, m), n in sorted(breaches_by_month.items())],
    }


# -- random cases ----------------------------------------------------------------------------------------

@pytest.fixture()
def standards(db_session, tmp_path):
    path = tmp_path / "parity.yaml"
    path.write_text(yaml.safe_dump(PARITY_STANDARD))
    load_standards(db.session, sorted(STANDARDS.glob("*.yaml")) + [path])
    return db.session.scalars(select(Standard).order_by(Standard.id)).all()


@pytest.fixture()
def world(db_session, standards, make_user):
    units = [UnitFactory(), UnitFactory()]
    officers = {u.id: [make_user("officer", unit=u, totp=False) for _ in range(3)] for u in units}
    focal = make_user("focal_point", totp=False)
    auditor = make_user("oversight", totp=False)
    return {"units": units, "officers": officers, "focal": focal, "auditor": auditor, "standards": standards}


def _at(rng, start, hours):
    """A random time up to ``hours`` after ``start``; one in four falls on a whole hour (a due time)."""
    if rng.random() < 0.25:
        return start + rng.randint(0, int(hours)) * H
    return start + dt.timedelta(microseconds=rng.randint(0, int(hours * 3600e6)))


def make_cases(world, n, seed):
    rng = random.Random(seed)
    area = AreaFactory()
    made = []
    for i in range(n):
        unit = rng.choice(world["units"])
        created = _at(rng, T0, 40 * 24)
        flags = sorted(rng.sample(FLAGS, rng.randint(0, 3)))
        case = Referral(
            reference=f"R-P{seed % 1000:03d}-{i:04d}", area_id=area.id, unit_id=unit.id,
            submitter_id=world["focal"].id, created_at=created, age_group=rng.choice(AGES),
            safe_contact_method="sms", answers="{}", consent="{}", gbv_type=rng.choice(TYPES), flags=",".join(flags),
            perpetrator_relationship=rng.choice(RELATIONSHIPS),
            incident_date=None if rng.random() < 0.2 else (created - rng.randint(0, 4) * 24 * H).date(),
            standard_id=None if rng.random() < 0.1 else rng.choice(world["standards"]).id,
            status=Status.offered)
        db.session.add(case)
        db.session.flush()
        for _ in range(rng.randint(0, 2)):
            db.session.add(Offer(referral_id=case.id, officer_id=rng.choice(world["officers"][unit.id]).id,
                                 offered_at=_at(rng, created, 3), deadline=created + 24 * H))
        end = None
        if rng.random() < 0.8:
            case.first_accepted_at = case.accepted_at = _at(rng, created, 40)
            case.status = Status.in_progress
            roll = rng.random()
            first, second = rng.sample(world["officers"][unit.id], 2)
            if roll < 0.1:  # an assigned officer and no acceptance on record (rows loaded past the application)
                case.assigned_officer_id = first.id
            elif roll < 0.9:  # accepted by an officer who holds it still, or who handed it to another
                db.session.add(Offer(referral_id=case.id, officer_id=first.id, offered_at=case.created_at,
                                     deadline=case.created_at + 24 * H, responded_at=case.first_accepted_at,
                                     status=OfferStatus.accepted))
                case.assigned_officer_id = first.id
                if roll < 0.4:  # reassigned: released, then (after a gap, or at once) accepted by another
                    released = _at(rng, case.first_accepted_at, 200)
                    taken = released if rng.random() < 0.3 else _at(rng, released, 30)
                    db.session.get(Offer, db.session.scalars(select(Offer.id).where(
                        Offer.referral_id == case.id, Offer.officer_id == first.id)).first()).released_at = released
                    db.session.add(Offer(referral_id=case.id, officer_id=second.id, offered_at=released,
                                         deadline=released + 24 * H, responded_at=taken,
                                         status=OfferStatus.accepted))
                    case.assigned_officer_id = case.accepted_at = None
                    if rng.random() < 0.8:
                        case.assigned_officer_id, case.accepted_at = second.id, taken
            elif roll < 0.95:  # recused: nobody holds it now
                released = _at(rng, case.first_accepted_at, 100)
                db.session.add(Offer(referral_id=case.id, officer_id=first.id, offered_at=case.created_at,
                                     deadline=case.created_at + 24 * H, responded_at=case.first_accepted_at,
                                     released_at=released, status=OfferStatus.declined, reason="conflict"))
            times = sorted(_at(rng, case.first_accepted_at - 3 * H, 900) for _ in range(rng.randint(0, 7)))
            for when in times:
                db.session.add(CaseAction(referral_id=case.id, actor_id=world["focal"].id,
                                          type=rng.choice(ACTIONS), created_at=when))
            roll = rng.random()
            if roll < 0.35:
                end = _at(rng, max([case.first_accepted_at, *times]), 400)
                case.status, case.closed_at, case.outcome = Status.closed, end, "other"
                db.session.add(CaseAction(referral_id=case.id, actor_id=world["focal"].id, type=ActionType.closure,
                                          created_at=end))
            elif roll < 0.45:
                case.status, case.closed_at = Status.withdrawn, _at(rng, created, 300)
        elif rng.random() < 0.3:
            case.status, case.closed_at = Status.withdrawn, _at(rng, created, 200)
        made.append(case)
    db.session.flush()
    return made


def interesting_times(cases, rng):
    """Before anything, at and just after stored due times, and long after."""
    dues = sorted({r.due_at for r in db.session.scalars(select(StepStatus).where(StepStatus.due_at.is_not(None)))})
    picked = rng.sample(dues, min(6, len(dues)))
    return [T0 - 24 * H, T0 + 30 * H, T0 + 20 * 24 * H, T0 + 400 * 24 * H,
            *picked, *(d + dt.timedelta(microseconds=1) for d in picked[:3])]


def assert_summaries_agree(world, now):
    auditor, (u1, _u2) = world["auditor"], world["units"]
    scopes = [(u1, None, None), (None, None, None), (u1, (T0 + 5 * 24 * H).date(), (T0 + 25 * 24 * H).date()),
              (None, None, (T0 + 10 * 24 * H).date())]
    for unit, since, until in scopes:
        got = compliance_summary(db.session, auditor, unit_code=unit.code if unit else None, since=since,
                                 until=until, now=now)
        expected = per_case_summary(db.session, unit, since, until, now)
        assert {k: got[k] for k in expected} == expected, (unit, since, until, now)


def assert_each_case_agrees(cases, now):
    rows = defaultdict(dict)
    for row in db.session.scalars(select(StepStatus).where(StepStatus.referral_id.in_([c.id for c in cases]))):
        rows[row.referral_id][row.step_code] = (BREACHED if row.breaches_at is not None and now > row.breaches_at
                                                 else row.status)
    for case in cases:
        judged = {r.code: r.status for r in compliance_of(db.session, case, now)}
        assert rows.get(case.id, {}) == judged, (case.id, now)


# -- the tests -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2])
def test_summary_and_each_case_match_judging_every_case(world, seed):
    rng = random.Random(seed)
    cases = make_cases(world, 120, seed)
    step_statuses.sync(db.session)
    for now in interesting_times(cases, rng):
        assert_summaries_agree(world, now)
        assert_each_case_agrees(cases, now)
    # The API's per-case view says the same as the stored rows.
    for case in rng.sample(cases, 5):
        now = T0 + rng.randint(0, 60 * 24) * H
        shown = {s["step"]: s["status"] for s in read_compliance(db.session, world["auditor"], case.id,
                                                                 now=now)["steps"]}
        stored = {r.step_code: r.status if r.breaches_at is None or now <= r.breaches_at else BREACHED
                  for r in db.session.scalars(select(StepStatus).where(StepStatus.referral_id == case.id))}
        assert shown == stored


def test_rows_follow_changes_to_cases_offers_and_actions(world):
    rng = random.Random(3)
    cases = make_cases(world, 60, 3)
    db.session.commit()  # the commit judges them (in tests, a savepoint release)
    assert db.session.scalar(select(StepStatus.referral_id).limit(1)) is not None
    for case in rng.sample(cases, 30):
        change = rng.choice(["action", "close", "recuse", "offer", "flags", "move", "delete_action"])
        if change == "action" and case.first_accepted_at:
            db.session.add(CaseAction(referral_id=case.id, actor_id=world["focal"].id, type=rng.choice(ACTIONS),
                                      created_at=_at(rng, case.first_accepted_at, 200)))
        elif change == "close" and case.closed_at is None:
            case.status, case.closed_at = Status.closed, _at(rng, case.created_at, 500)
        elif change == "recuse":
            case.assigned_officer_id = None
        elif change == "offer":
            db.session.add(Offer(referral_id=case.id, officer_id=world["officers"][case.unit_id][0].id,
                                 offered_at=case.created_at - H, deadline=case.created_at + H,
                                 status=OfferStatus.declined))
        elif change == "flags":
            case.flags = "" if case.flags else "immediate_danger"
        elif change == "move":
            case.unit_id = next(u.id for u in world["units"] if u.id != case.unit_id)
        elif change == "delete_action":
            action = db.session.scalar(select(CaseAction).where(CaseAction.referral_id == case.id).limit(1))
            if action is not None:
                db.session.delete(action)
    db.session.flush()
    for now in interesting_times(cases, rng)[:6]:
        assert_summaries_agree(world, now)  # reads this transaction's own changes (sync)
        assert_each_case_agrees(cases, now)
    db.session.commit()
    kept = _snapshot()
    assert step_statuses.rebuild(db.session)["cases"] >= len(cases)
    assert _snapshot() == kept


def test_a_rolled_back_change_leaves_the_rows_as_they_were(world):
    cases = make_cases(world, 10, 4)
    db.session.commit()
    kept = _snapshot()
    nested = db.session.begin_nested()
    for case in cases:
        case.closed_at, case.status = T0, Status.withdrawn
    db.session.flush()
    step_statuses.sync(db.session)
    assert _snapshot() != kept
    nested.rollback()
    db.session.commit()
    assert _snapshot() == kept


def test_deleting_an_action_loaded_in_an_earlier_transaction_judges_its_case_again(world):
    case = next(c for c in make_cases(world, 20, 5) if c.first_accepted_at and c.standard_id)
    action = CaseAction(referral_id=case.id, actor_id=world["focal"].id, type=ActionType.contact_made,
                        created_at=case.first_accepted_at + H)
    db.session.add(action)
    db.session.commit()  # expires the action: its case id is no longer loaded
    with_contact = _snapshot()
    db.session.delete(action)
    db.session.commit()
    assert _snapshot() != with_contact
    kept = _snapshot()
    step_statuses.rebuild(db.session)
    assert _snapshot() == kept


def _snapshot():
    steps = db.session.execute(select(*(getattr(StepStatus, c) for c in step_statuses.STEP_COLUMNS))
                               .order_by(StepStatus.referral_id, StepStatus.step_code)).all()
    timings = db.session.execute(select(*(getattr(CaseTiming, c) for c in step_statuses.TIMING_COLUMNS))
                                 .order_by(CaseTiming.referral_id)).all()
    return steps, timings


def test_rows_written_through_the_api_are_what_a_rebuild_writes(client, runner, place, people, officers, login_as):
    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    (first, first_h), (second, second_h) = officers
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).replace(microsecond=0)
    with time_machine.travel(start, tick=False) as traveller:
        ids = [client.post("/api/v1/referrals", json=minimal(place["district"].code),
                           headers=people["focal"][1]).get_json()["id"] for _ in range(3)]
        for hours, case_id in enumerate(ids[:2], start=1):
            traveller.move_to(start + hours * H)
            mine = {i["id"] for i in client.get("/api/v1/referrals", headers=first_h).get_json()["items"]}
            headers = first_h if case_id in mine else second_h
            assert client.post(f"/api/v1/referrals/{case_id}/accept", headers=headers).status_code == 200
            for kind in ("risk_assessment", "contact_made", "rights_informed", "safety_plan"):
                traveller.shift(H)
                assert client.post(f"/api/v1/referrals/{case_id}/actions", json={"type": kind},
                                   headers=headers).status_code == 201
        assert client.post(f"/api/v1/referrals/{ids[1]}/close", json={"outcome": "other"},
                           headers=first_h if ids[1] in mine else second_h).status_code == 200
    db.session.expire_all()
    stored = _snapshot()
    assert {row.referral_id for row in stored[0]} == set(ids) and len(stored[1]) == 2
    result = runner.invoke(args=["standards", "rebuild"])
    assert result.exit_code == 0, result.output
    assert '"cases": 3' in result.output
    assert _snapshot() == stored
    _auditor, oversight_h = login_as("oversight")
    body = client.get(f"/api/v1/compliance/summary?unit={place['unit'].code}", headers=oversight_h).get_json()
    assert body["cases"] == 3 and body["steps"]["accept"]["met"] == 2


FACTS = dict(submitted_at=T0, offered_at=T0 + 0.25 * H, incident_date=T0.date(), gbv_type="rape",
             relationship="family", age_group="12-14")


@pytest.mark.parametrize("name", ["default.yaml", "kyrgyzstan.yaml", "uzbekistan.yaml", "parity"])
def test_timeline_gives_evaluate_at_every_moment(name):
    doc = read_standard(STANDARDS / name) if name != "parity" else PARITY_STANDARD
    rng = random.Random(name)
    for _ in range(150):
        accepted = T0 + rng.choice([0.5, 3, 30]) * H if rng.random() < 0.8 else None
        actions = tuple(sorted(((rng.choice(ACTIONS).value, _at(rng, T0, 900)) for _ in range(rng.randint(0, 6))),
                               key=lambda a: a[1]))
        closed = rng.choice([None, None, _at(rng, T0, 1000)])
        facts = CaseFacts(accepted_at=accepted, closed_at=closed, withdrawn=closed is not None and rng.random() < 0.3,
                          flags=tuple(rng.sample(FLAGS, rng.randint(0, 3))), urgent=rng.random() < 0.4,
                          actions=actions, **FACTS)
        steps = timeline(doc, facts)
        moments = {T0 - H, T0 + 5000 * H, *(t for s in steps if s.breaches_at for t in (
            s.breaches_at, s.breaches_at + dt.timedelta(microseconds=1)))}
        for now in moments:
            judged = [(r.code, r.status) for r in evaluate(doc, facts, now)]
            assert [(s.code, s.status_at(now)) for s in steps] == judged


def test_standard_bodies_kept_for_judging_last_only_as_long_as_the_transaction(standards):
    """A submission's standard is judged at commit without being read again; the next transaction reads it
    again (one that rolled back may have loaded a standard that no longer exists)."""
    from referral.standards.loader import STANDARD_BODIES, standard_for

    chosen = standard_for(db.session, "XX", dt.date(2026, 6, 1))
    assert chosen is not None and chosen.code == "PARITY"
    assert db.session.info[STANDARD_BODIES] == {chosen.id: chosen.body}
    db.session.commit()
    assert STANDARD_BODIES not in db.session.info


@pytest.mark.parametrize("seed", [11, 12])
def test_tick_records_what_judging_every_open_case_finds_breached(world, seed):
    """``sla tick`` reads overdue steps from the stored rows; it records exactly the steps the per-case
    judgement it replaced finds breached in open cases, once each, as time moves on."""
    from referral.standards.models import StepBreach
    from referral.standards.services import tick_steps

    rng = random.Random(seed)
    cases = make_cases(world, 80, seed)
    db.session.commit()
    open_states = {Status.offered, Status.escalated, Status.accepted, Status.in_progress, Status.closed}
    expected: set[tuple[str, str]] = set()
    for now in sorted(interesting_times(cases, rng)):
        for case in cases:
            if case.status in open_states and case.standard_id is not None:
                expected |= {(case.id, r.code) for r in compliance_of(db.session, case, now) if r.status == BREACHED}
        tick_steps(db.session, now)
        recorded = set(db.session.execute(select(StepBreach.referral_id, StepBreach.step_code)).tuples())
        assert recorded == expected, now
        assert tick_steps(db.session, now)["step_breaches"] == 0  # once each
    assert expected  # the random cases did breach something


def test_a_long_backlog_of_breaches_is_recorded_a_batch_per_transaction(world, monkeypatch):
    """A first tick after a long pause records every overdue step once, committing between batches, so the
    audit chain's head (which every request appends to) is held one batch at a time."""
    from referral.standards import services as standards_services
    from referral.standards.models import StepBreach
    from referral.standards.services import tick_steps

    make_cases(world, 6, 5)
    db.session.commit()
    later = T0 + 400 * 24 * H
    monkeypatch.setattr(standards_services, "STEP_BREACH_BATCH", 2)
    batches = []

    def commit():
        batches.append(db.session.scalar(select(func.count()).select_from(StepBreach)))
        db.session.commit()

    stats = tick_steps(db.session, later, between_batches=commit)
    recorded = db.session.scalar(select(func.count()).select_from(StepBreach))
    assert recorded == stats["step_breaches"] >= 5
    # Two at a time, each batch committed before the next was read; the last one found fewer than two.
    assert batches == list(range(2, recorded + 1, 2)) + [recorded]
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "sla.step_breach")).all()
    assert len(events) == recorded
    assert tick_steps(db.session, later, between_batches=commit)["step_breaches"] == 0
