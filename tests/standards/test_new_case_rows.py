"""A new case's step statuses are judged from the objects written with it, in the same statement
(``step_statuses.rows_of_new_case``, issue 10): they must be exactly what judging the case from the database
writes, for every kind of submission, and the shortcut must step aside wherever it cannot be sure."""
from __future__ import annotations

import datetime as dt
import random

import pytest
import time_machine
import yaml
from sqlalchemy import event, func, inspect, select

from referral.db import insert_objects
from referral.extensions import db
from referral.reference.models import AreaKind, OrganisationKind, RoutingMode
from referral.referrals.models import Referral, Status, new_id
from referral.referrals.workflow_models import ActionType, CaseAction, Offer
from referral.services_dir.models import ServiceReferral, ServiceReferralStatus
from referral.standards import step_statuses
from referral.standards.loader import STANDARD_BODIES, load_standards
from referral.standards.models import CaseTiming, Standard, StepStatus
from tests.standards.test_step_statuses import PARITY_STANDARD
from tests.factories import AreaFactory, OrganisationFactory, UnitFactory
from tests.referrals.helpers import minimal, submission

# Late evening, UTC, two days ago, and on through the next day (the tokens stay valid, being issued now):
# breach's month is counted on the service's calendar, a day ahead of UTC's for some hours.
START = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).replace(hour=21, minute=0, second=0, microsecond=0)
AGES = ("0-5", "12-14", "15-17", "18-25", "26-40", "61+")
RELATIONSHIPS = ("intimate_partner", "former_partner", "family", "stranger", None)
ANSWERS = ("penetration", "sexual_contact", "physical_assault", "forced_marriage", "denial_of_resources",
           "psychological_abuse")
# How ``standards.services.bulk_facts`` reads a case back: a submission on the shortcut must not.
READ_BACK = "referrals.first_accepted_at, referrals.incident_date"


def _snapshot():  # type: ignore[no-untyped-def]
    steps = db.session.execute(select(*(getattr(StepStatus, c) for c in step_statuses.STEP_COLUMNS))
                               .order_by(StepStatus.referral_id, StepStatus.step_code)).all()
    timings = db.session.execute(select(*(getattr(CaseTiming, c) for c in step_statuses.TIMING_COLUMNS))
                                 .order_by(CaseTiming.referral_id)).all()
    return steps, timings


def _random_body(rng: random.Random, area: str, now: dt.datetime) -> dict:
    body = submission(area)
    body["survivor"]["age_group"] = rng.choice(AGES)
    # Nobody speaks uz: no eligible officer, the case escalates.
    body["survivor"]["language"] = rng.choice(["ky", "ru"]) if rng.random() < 0.85 else "uz"
    body["incident"]["answers"] = {k: rng.random() < 0.15 for k in ANSWERS}
    body["incident"]["immediate_danger"] = rng.random() < 0.2
    days = rng.choice([None, 0, 1, 3, 6, 30])
    body["incident"]["date"] = None if days is None else (now - dt.timedelta(days=days)).date().isoformat()
    relationship = rng.choice(RELATIONSHIPS)
    if relationship is None:
        body.pop("perpetrator")
    else:
        body["perpetrator"]["relationship"] = relationship
        body["perpetrator"]["is_police_officer"] = rng.random() < 0.1
    body["consent"]["police"] = rng.random() < 0.85
    body["preferences"]["officer_gender"] = rng.choice(["any", "female"])
    return body


@pytest.mark.parametrize("seed", range(4))
def test_rows_judged_from_the_new_objects_are_what_judging_from_the_database_writes(
        client, runner, place, people, officers, monkeypatch, tmp_path, seed):
    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    if seed >= 2:
        # The parity standard judges what the shipped ones do not: the offer's time, child and GBV-type
        # conditions, a window from submission; in force in its country XX, made this test's area's.
        place["district"].parent = AreaFactory(code="XX", kind=AreaKind.country)
        path = tmp_path / "parity.yaml"
        path.write_text(yaml.safe_dump(PARITY_STANDARD))
        load_standards(db.session, [path])
        db.session.commit()
    # A health provider in the area: a clinical case gets a health suggestion, written with it.
    OrganisationFactory(kind=OrganisationKind.provider, areas=[place["district"]], service_types=["health"])
    rng = random.Random(seed)
    place["unit"].routing_mode = RoutingMode.direct if seed % 2 else RoutingMode.pool
    db.session.commit()
    shortcut: list[str] = []
    original = step_statuses.written
    monkeypatch.setattr(step_statuses, "written", lambda session, case_id: (shortcut.append(case_id),
                                                                            original(session, case_id)))
    read_back: list[str] = []
    note = lambda *a: read_back.append(a[2]) if READ_BACK in a[2] else None  # noqa: E731
    ids = []
    with time_machine.travel(START, tick=False) as traveller:
        for n in range(24):
            now = START + dt.timedelta(minutes=rng.randint(1, 60) * n)
            traveller.move_to(now)
            event.listen(db.engine, "before_cursor_execute", note)
            try:
                created = client.post("/api/v1/referrals", json=_random_body(rng, place["district"].code, now),
                                      headers=people["focal"][1])
            finally:
                event.remove(db.engine, "before_cursor_execute", note)
            assert created.status_code == 201, created.get_json()
            ids.append(created.get_json()["id"])
    db.session.expire_all()
    statuses = {c.id: c.status for c in db.session.scalars(select(Referral).where(Referral.id.in_(ids)))}
    # Both ways were taken: offered cases (clinical ones too) on the shortcut, with no reading back;
    # escalated and services-only cases (flushed on the way) judged from the database at commit, each read
    # back once.
    assert shortcut and set(shortcut) <= {i for i in ids if statuses[i] is Status.offered}
    assert len(shortcut) < len(ids) and len(read_back) == len(ids) - len(shortcut)
    assert {Status.escalated, Status.services_only} & set(statuses.values())
    # Clinical cases too: their health suggestion (a service referral not sent, no fact) goes in with them.
    suggested = set(db.session.scalars(select(ServiceReferral.referral_id)
                                       .where(ServiceReferral.status == ServiceReferralStatus.suggested)))
    assert suggested & set(shortcut), (len(suggested), len(shortcut))
    parity = db.session.scalar(select(Standard.id).where(Standard.code == PARITY_STANDARD["code"]))
    assert {c.standard_id for c in db.session.scalars(select(Referral).where(Referral.id.in_(ids)))} == \
        ({parity} if seed >= 2 else {db.session.get(Referral, ids[0]).standard_id})
    stored = _snapshot()
    assert {row.referral_id for row in stored[0]} >= set(shortcut)
    step_statuses.rebuild(db.session)
    db.session.flush()
    assert _snapshot() == stored


@pytest.fixture()
def case(client, place, people, officers, runner):
    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    response = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=people["focal"][1])
    assert response.status_code == 201, response.get_json()
    return db.session.get(Referral, response.get_json()["id"])


def _copy(case: Referral) -> Referral:
    return Referral(**{c.key: getattr(case, c.key) for c in Referral.__table__.columns
                       if c.key not in ("id", "reference")}, id=new_id(), reference="R-2345-6700")


def _remember_standard(case: Referral) -> None:
    from referral.standards.models import Standard

    standard = db.session.get(Standard, case.standard_id)
    db.session.info.setdefault(STANDARD_BODIES, {})[standard.id] = standard.body


@pytest.mark.parametrize("why", ["persistent", "action", "answered offer", "sent service referral",
                                 "no standard body", "default", "offer of unknown case", "unit as an object",
                                 "a deletion pending"])
def test_the_shortcut_steps_aside_where_it_cannot_be_sure(case, officers, why):
    officer_id = officers[0][0].id
    other_unit = UnitFactory()
    provider = OrganisationFactory(kind=OrganisationKind.provider, service_types=["health"])
    db.session.flush()
    provider_id, earlier_offer = provider.id, db.session.scalars(select(Offer).where(Offer.referral_id == case.id)).first()
    _remember_standard(case)  # first: reading the standard would flush the new objects
    copy = _copy(case)
    db.session.add(copy)
    # Nothing may flush the new case on the way (a query's autoflush would): it is pending until written.
    with db.session.no_autoflush:
        assert step_statuses.rows_of_new_case(db.session, copy) is not None  # the case alone: judged so
        if why == "persistent":
            db.session.flush()
        elif why == "action":
            db.session.add(CaseAction(referral_id=copy.id, actor_id=officer_id, type=ActionType.note,
                                      created_at=copy.created_at))
        elif why == "answered offer":
            db.session.add(Offer(referral_id=copy.id, officer_id=officer_id, offered_at=copy.created_at,
                                 deadline=copy.created_at, responded_at=copy.created_at))
        elif why == "sent service referral":
            db.session.add(ServiceReferral(referral_id=copy.id, provider_id=provider_id, service_type="health",
                                           share="[]", status=ServiceReferralStatus.pending))  # sent
        elif why == "unit as an object":
            copy.unit = other_unit  # its key beside it still the old unit's until written
        elif why == "a deletion pending":
            db.session.delete(earlier_offer)
        elif why == "no standard body":
            db.session.info[STANDARD_BODIES].clear()
        elif why == "default":
            copy.status = None  # insert_objects would write the column's default: judged after, from the row
        else:
            db.session.add(Offer(referral=copy, officer_id=officer_id, offered_at=copy.created_at,
                                 deadline=copy.created_at))  # its case id is set only when it is written
        assert inspect(copy).persistent if why == "persistent" else inspect(copy).pending
        assert step_statuses.rows_of_new_case(db.session, copy) is None
    db.session.rollback()


def test_a_new_case_s_rows_written_with_it_are_judged_again_if_it_changes_before_commit(case, officers):
    """The rows went in with the case; a change to it in the same transaction replaces them at commit."""
    (officer, _h), _second = officers
    _remember_standard(case)
    copy = _copy(case)
    offer = Offer(referral_id=copy.id, officer_id=officer.id, offered_at=copy.created_at + dt.timedelta(minutes=5),
                  deadline=copy.created_at + dt.timedelta(hours=1))
    db.session.add_all([copy, offer])
    rows = step_statuses.rows_of_new_case(db.session, copy)
    assert rows is not None and rows[0][2], "the copied case has steps to judge"
    assert insert_objects(db.session, [copy, offer], rows=rows)
    step_statuses.written(db.session, copy.id)
    db.session.flush()
    assert db.session.scalar(select(func.count()).select_from(StepStatus)
                             .where(StepStatus.referral_id == copy.id)) == len(rows[0][2])
    copy.status = Status.withdrawn  # judged otherwise: its clocks stop
    copy.closed_at = copy.created_at + dt.timedelta(hours=2)
    db.session.commit()
    stored = _snapshot()
    step_statuses.rebuild(db.session)
    db.session.commit()
    assert _snapshot() == stored
    judged_again = sorted(tuple(row) for row in stored[0] if row.referral_id == copy.id)
    assert judged_again and judged_again != sorted(rows[0][2])  # not the rows written with it
