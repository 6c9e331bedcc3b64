"""The schema comes from the migrations, and the models agree with it."""
import datetime as dt
import importlib.util
from pathlib import Path

import time_machine
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text, update

from referral.extensions import db
from referral.referrals.models import Referral, Status
from referral.referrals.workflow_models import Offer, OfferStatus
from referral.standards.models import Certification
from tests.referrals.helpers import minimal

HOUR = dt.timedelta(hours=1)


def test_models_and_migrations_agree(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_test_database_was_built_by_the_migrations(app):
    tables = set(inspect(db.engine).get_table_names())
    assert "alembic_version" in tables
    assert {"users", "areas", "units", "organisations", "courses", "certifications"} <= tables


# -- migration 0017: offers' released_at, filled in for offers from before it --------------------------

def _backfill_0017():
    """Forget every release, as before the column existed, and run the migration's own statements."""
    spec = importlib.util.spec_from_file_location(
        "m0017", Path(__file__).resolve().parent.parent / "migrations/versions/0017_offer_released_at.py")
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    db.session.execute(update(Offer).values(released_at=None))
    for statement in migration.BACKFILL:
        db.session.execute(text(statement))
    db.session.expire_all()


def _t0():
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).replace(microsecond=0)  # the tokens are valid


def _new_case(client, place, people):
    case_id = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                          headers=people["focal"][1]).get_json()["id"]
    return case_id, db.session.scalar(select(Offer.officer_id).where(Offer.referral_id == case_id))


def _hand_back(client, people, headers, case_id, a, b, t0, traveller):
    """A accepts at 1 h, is reassigned to B at 2 h, B accepts at 3 h, the case goes back to A at 4 h, who
    accepts at 5 h."""
    for step, (officer, verb) in enumerate([(a, "accept"), (b, "reassign"), (b, "accept"), (a, "reassign"),
                                            (a, "accept")], start=1):
        traveller.move_to(t0 + step * HOUR)
        if verb == "accept":
            resp = client.post(f"/api/v1/referrals/{case_id}/accept", headers=headers[officer])
        else:
            resp = client.post(f"/api/v1/referrals/{case_id}/reassign", json={"officer_id": officer},
                               headers=people["supervisor"][1])
        assert resp.status_code == 200, (step, resp.get_json())


def _spans(case_id):
    return [(o.officer_id, o.responded_at, o.released_at) for o in db.session.scalars(
        select(Offer).where(Offer.referral_id == case_id, Offer.responded_at.is_not(None))
        .order_by(Offer.responded_at, Offer.id))]


def test_migration_0017_fills_in_when_earlier_holders_let_go(client, place, people, officers):
    """A holder reassigned away let go when the case was next offered, one whose case left the police when
    it was closed; the current holder and a case's only holder keep none."""
    t0, headers = _t0(), {user.id: h for user, h in officers}
    cases = []
    with time_machine.travel(t0, tick=False) as traveller:
        for _ in range(3):
            traveller.move_to(t0)
            case_id, offered = _new_case(client, place, people)
            traveller.move_to(t0 + HOUR)
            assert client.post(f"/api/v1/referrals/{case_id}/accept", headers=headers[offered]).status_code == 200
            cases.append((case_id, offered, next(i for i in headers if i != offered)))
        moved_id, moved_from, moved_to = cases[0]
        traveller.move_to(t0 + 3 * HOUR)
        assert client.post(f"/api/v1/referrals/{moved_id}/reassign", json={"officer_id": moved_to},
                           headers=people["supervisor"][1]).status_code == 200
        traveller.move_to(t0 + 4 * HOUR)
        assert client.post(f"/api/v1/referrals/{moved_id}/accept", headers=headers[moved_to]).status_code == 200
    left = db.session.get(Referral, cases[1][0])
    left.status, left.assigned_officer_id, left.closed_at = Status.services_only, None, t0 + 5 * HOUR
    db.session.flush()
    _backfill_0017()
    assert _spans(moved_id) == [(moved_from, t0 + HOUR, t0 + 3 * HOUR),  # when the case was next offered
                                (moved_to, t0 + 4 * HOUR, None)]
    assert _spans(cases[1][0]) == [(cases[1][1], t0 + HOUR, t0 + 5 * HOUR)]  # when the case left the police
    assert _spans(cases[2][0]) == [(cases[2][1], t0 + HOUR, None)]


def test_migration_0017_fills_in_recusals_and_an_officer_given_the_case_back(client, place, people, officers):
    """A recusal flipped its offer to declined: the officer's own audit event says when the hold ended. An
    officer reassigned away and later given the case back held it twice: the first hold ends when the case
    was next offered, not when they took it again."""
    t0, headers = _t0(), {user.id: h for user, h in officers}
    with time_machine.travel(t0, tick=False) as traveller:
        back, a = _new_case(client, place, people)
        b = next(i for i in headers if i != a)
        _hand_back(client, people, headers, back, a, b, t0, traveller)
        traveller.move_to(t0 + 10 * HOUR)
        recused, c = _new_case(client, place, people)
        traveller.move_to(t0 + 11 * HOUR)
        assert client.post(f"/api/v1/referrals/{recused}/accept", headers=headers[c]).status_code == 200
        traveller.move_to(t0 + 13 * HOUR)
        assert client.post(f"/api/v1/referrals/{recused}/recuse", json={"reason": "conflict_of_interest"},
                           headers=headers[c]).status_code == 204
    _backfill_0017()
    assert _spans(back) == [(a, t0 + HOUR, t0 + 2 * HOUR), (b, t0 + 3 * HOUR, t0 + 4 * HOUR), (a, t0 + 5 * HOUR, None)]
    assert _spans(recused) == [(c, t0 + 11 * HOUR, t0 + 13 * HOUR)]


def test_migration_0017_ends_a_hold_at_a_recusal_that_flipped_an_earlier_offer(client, place, people, officers):
    """Before 0017 a recusal flipped whichever accepted offer of the officer it found first: for a case given
    back to them, often the earlier one, leaving the current hold 'accepted'. With nobody to re-offer it to,
    no later offer ends that hold: the officer's recusal event does."""
    t0, headers = _t0(), {user.id: h for user, h in officers}
    with time_machine.travel(t0, tick=False) as traveller:
        case_id, a = _new_case(client, place, people)
        b = next(i for i in headers if i != a)
        _hand_back(client, people, headers, case_id, a, b, t0, traveller)
        for cert in db.session.scalars(select(Certification).where(Certification.user_id == b)):
            cert.expires_on = cert.completed_on  # nobody left to offer the case to
        db.session.flush()
        traveller.move_to(t0 + 8 * HOUR)
        assert client.post(f"/api/v1/referrals/{case_id}/recuse", json={"reason": "conflict_of_interest"},
                           headers=headers[a]).status_code == 204
    assert db.session.scalar(select(Offer.id).where(Offer.referral_id == case_id,
                                                    Offer.offered_at > t0 + 7 * HOUR)) is None  # escalated
    first, second = db.session.scalars(select(Offer).where(Offer.referral_id == case_id, Offer.officer_id == a)
                                       .order_by(Offer.responded_at)).all()
    first.status, second.status = OfferStatus.declined, OfferStatus.accepted  # what the old recusal left
    db.session.flush()
    second_id = second.id
    _backfill_0017()
    assert db.session.get(Offer, second_id).released_at == t0 + 8 * HOUR
