"""Races that must have one right answer: accepts, deadline ticks, logins, verify during appends.

Runs on a database with real commits (``committed_app``); on PostgreSQL the
row locks are exercised, on SQLite the IMMEDIATE transactions.
"""
from __future__ import annotations

import datetime as dt
import threading

import pyotp
import pytest
from sqlalchemy import func, select

from referral.accounts.models import User
from referral.accounts.services import NewUser, create_user
from referral.audit.service import record, verify
from referral.extensions import db
from referral.reference.models import Area, AreaKind, Organisation, OrganisationKind, RoutingMode, Unit
from referral.referrals.models import Referral
from referral.referrals.workflow import sla_tick
from referral.referrals.workflow_models import Offer, OfferStatus, ProtectionOrder
from referral.standards.models import Certification, Course, CourseRequirement
from tests.referrals.helpers import minimal

PASSWORD = "concurrency passphrase"
N_OFFICERS = 8


def run_threads(target, count):
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def wrap(i):
        barrier.wait()
        results[i] = target(i)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


@pytest.fixture(scope="module")
def world(committed_app):
    app = committed_app
    with app.app_context():
        area = Area(code="CX-D", name="Race district", kind=AreaKind.district)
        unit = Unit(code="CX-U", name="Race unit", areas=[area], routing_mode=RoutingMode.pool)
        course = Course(code="CX-CORE", name="Core", validity_months=24, required_for=CourseRequirement.all)
        child = Course(code="CX-CHILD", name="Child", validity_months=24, required_for=CourseRequirement.child)
        db.session.add_all([area, unit, course, child, Organisation(
            code="CX-WG", name="Race group", kind=OrganisationKind.womens_group, areas=[area])])
        db.session.flush()
        create_user(None, NewUser(email="fp@race.example", name="FP", role="focal_point", password=PASSWORD,
                                  org="CX-WG"))
        officers = []
        for i in range(N_OFFICERS):
            user, secret = create_user(None, NewUser(email=f"o{i}@race.example", name=f"O{i}", role="officer",
                                                     password=PASSWORD, unit="CX-U"))
            for c in (course, child):
                db.session.add(Certification(user_id=user.id, course_id=c.id, completed_on=dt.date(2026, 1, 1),
                                             expires_on=dt.date(2028, 1, 1)))
            officers.append((user.email, secret))
        db.session.commit()
    client = app.test_client()
    tokens = {}
    for email, secret in [("fp@race.example", None)] + officers:
        body = {"email": email, "password": PASSWORD}
        if secret:
            body["otp"] = pyotp.TOTP(secret).now()
        resp = client.post("/api/v1/auth/tokens", json=body)
        assert resp.status_code == 201, resp.get_json()
        tokens[email] = {"Authorization": f"Bearer {resp.get_json()['token']}"}
    return {"app": app, "tokens": tokens, "officers": [e for e, _ in officers], "secrets": dict(officers)}


def submit(world):
    client = world["app"].test_client()
    resp = client.post("/api/v1/referrals", json=minimal("CX-D"), headers=world["tokens"]["fp@race.example"])
    assert resp.status_code == 201 and resp.get_json()["status"] == "offered"
    return resp.get_json()["id"]


def test_many_officers_accepting_one_pool_case_make_exactly_one_winner(world):
    case_id = submit(world)

    def accept(i):
        client = world["app"].test_client()
        return client.post(f"/api/v1/referrals/{case_id}/accept",
                           headers=world["tokens"][world["officers"][i]]).status_code

    codes = run_threads(accept, N_OFFICERS)
    assert sorted(codes) == [200] + [409] * (N_OFFICERS - 1)
    with world["app"].app_context():
        offers = db.session.scalars(select(Offer).where(Offer.referral_id == case_id)).all()
        assert sorted(o.status.value for o in offers) == ["accepted"] + ["cancelled"] * (N_OFFICERS - 1)
        assert db.session.get(Referral, case_id).assigned_officer_id is not None
        assert verify(db.session).ok
        db.session.remove()


def test_racing_ticks_and_accepts_never_double_escalate(world):
    case_id = submit(world)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)

    def act(i):
        if i < 3:
            with world["app"].app_context():
                stats = sla_tick(db.session, now=later)
                db.session.remove()
                return stats
        client = world["app"].test_client()
        return client.post(f"/api/v1/referrals/{case_id}/accept",
                           headers=world["tokens"][world["officers"][i]]).status_code

    results = run_threads(act, 6)
    ticks, accepts = results[:3], results[3:]
    with world["app"].app_context():
        offers = db.session.scalars(select(Offer).where(Offer.referral_id == case_id)).all()
        referral = db.session.get(Referral, case_id)
        breaches = sum(t["breaches"] for t in ticks)
        if 200 in accepts:  # an accept won before any tick locked the case
            assert accepts.count(200) == 1 and breaches == 0
            assert referral.status.value == "accepted"
        else:  # a tick won: every offer lapsed exactly once, none twice
            assert breaches == N_OFFICERS
            assert sum(1 for o in offers if o.status is OfferStatus.expired) == N_OFFICERS
            assert referral.status.value == "escalated"
        assert verify(db.session).ok
        db.session.remove()


def test_parallel_wrong_passwords_all_count_towards_the_lockout(world):
    email = world["officers"][-1]

    def attempt(i):
        return world["app"].test_client().post("/api/v1/auth/tokens", json={
            "email": email, "password": "wrong password!", "otp": "000000"}).status_code

    assert set(run_threads(attempt, 12)) == {401}
    with world["app"].app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        assert user.locked_until is not None
        db.session.remove()


def test_one_totp_code_signs_in_once_however_many_try_at_once(world):
    email = world["officers"][0]
    code = pyotp.TOTP(world["secrets"][email]).now()
    with world["app"].app_context():  # a fresh step: earlier tests may have used the current one
        user = db.session.scalar(select(User).where(User.email == email))
        user.totp_last_counter = None
        db.session.commit()
        db.session.remove()

    def attempt(i):
        return world["app"].test_client().post("/api/v1/auth/tokens", json={
            "email": email, "password": PASSWORD, "otp": code}).status_code

    codes = run_threads(attempt, 6)
    assert codes.count(201) == 1 and codes.count(401) == 5


def test_verify_during_appends_never_reports_false_tampering(world):
    app = world["app"]

    def work(i):
        with app.app_context():
            try:
                if i == 0:
                    return [verify(db.session).ok for _ in range(15)]
                for n in range(40):
                    record(db.session, None, "test.append", object_id=f"{i}-{n}")
                    db.session.commit()
                return None
            finally:
                db.session.remove()

    results = run_threads(work, 4)
    assert all(results[0])


def test_racing_ticks_raise_each_reminder_once_and_never_crash(world):
    from referral.standards.models import CertificationReminder

    app = world["app"]
    case_id = submit(world)  # before this test's own session writes (SQLite allows one writer)
    with app.app_context():
        officer = db.session.scalar(select(User).where(User.email == world["officers"][1]))
        course = db.session.scalar(select(Course).where(Course.code == "CX-CORE"))
        soon = dt.date.today() + dt.timedelta(days=10)
        cert = Certification(user_id=officer.id, course_id=course.id, completed_on=dt.date(2025, 1, 1),
                             expires_on=soon)
        db.session.add(cert)
        # A protection order on a case, expiring tomorrow: one reminder, whoever ticks.
        db.session.add(ProtectionOrder(referral_id=case_id, issued_on=dt.date.today(), recorded_by_id=officer.id,
                                       expires_on=dt.date.today() + dt.timedelta(days=1)))
        db.session.commit()
        cert_id = cert.id
        db.session.remove()

    def tick(i):
        with app.app_context():
            try:
                return sla_tick(db.session, now=dt.datetime.now(dt.UTC))
            finally:
                db.session.remove()

    results = run_threads(tick, 4)
    assert sum(r["certificate_reminders"] for r in results) == 1
    assert sum(r["protection_order_reminders"] for r in results) == 1
    with app.app_context():
        assert db.session.scalar(select(CertificationReminder).where(
            CertificationReminder.certification_id == cert_id)) is not None
        db.session.remove()


def test_one_submission_sent_many_times_at_once_files_one_case(world):
    """A focal point's phone resends while the first copy is still being filed: every copy is answered with
    the one case (the unique key refuses the later copies' rows; they answer the case the first filed)."""
    from referral.referrals.models import SubmissionKey

    body = minimal("CX-D")
    body["incident"]["answers"]["physical_assault"] = True
    headers = {**world["tokens"]["fp@race.example"], "Idempotency-Key": "race-key-0123456789"}

    def send(_i):
        resp = world["app"].test_client().post("/api/v1/referrals", json=body, headers=headers)
        return resp.status_code, (resp.get_json() or {}).get("id")

    answers = run_threads(send, 6)
    assert {status for status, _ in answers} == {201}, answers
    ids = {case_id for _, case_id in answers}
    assert len(ids) == 1
    with world["app"].app_context():
        keyed = db.session.scalars(select(SubmissionKey).where(SubmissionKey.referral_id.in_(ids))).all()
        assert len(keyed) == 1
        assert db.session.scalar(select(func.count()).select_from(Referral).where(Referral.id.in_(ids))) == 1
        assert verify(db.session).ok
        db.session.remove()
