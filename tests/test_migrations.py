"""The schema comes from the migrations, and the models agree with it."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from referral.extensions import db


def test_models_and_migrations_agree(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_test_database_was_built_by_the_migrations(app):
    tables = set(inspect(db.engine).get_table_names())
    assert "alembic_version" in tables
    assert {"users", "areas", "units", "organisations", "courses", "certifications"} <= tables


def test_migration_0017_fills_in_when_earlier_holders_let_go(client, place, people, officers):
    """Offers from before ``released_at`` existed: a holder reassigned away let go when the case was next
    offered, one whose case left the police when it was closed; the current holder and a case's only
    holder keep none. The migration's own statement, on this database."""
    import datetime as dt
    import importlib.util
    from pathlib import Path

    import time_machine
    from sqlalchemy import select, text, update

    from referral.referrals.models import Referral, Status
    from referral.referrals.workflow_models import Offer, OfferStatus
    from tests.referrals.helpers import minimal

    spec = importlib.util.spec_from_file_location(
        "m0017", Path(__file__).resolve().parent.parent / "migrations/versions/0017_offer_released_at.py")
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    t0 = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).replace(microsecond=0)
    hour = dt.timedelta(hours=1)
    focal_h, sup_h = people["focal"][1], people["supervisor"][1]
    (first, first_h), (second, second_h) = officers
    cases = []
    with time_machine.travel(t0, tick=False) as traveller:
        for _ in range(3):
            case_id = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                                  headers=focal_h).get_json()["id"]
            traveller.move_to(t0 + hour)
            offered = db.session.scalar(select(Offer.officer_id).where(Offer.referral_id == case_id))
            holder_h, other = (first_h, second) if offered == first.id else (second_h, first)
            assert client.post(f"/api/v1/referrals/{case_id}/accept", headers=holder_h).status_code == 200
            cases.append((case_id, offered, other))
            traveller.move_to(t0)
        moved_id, moved_from, moved_to = cases[0]
        traveller.move_to(t0 + 3 * hour)
        assert client.post(f"/api/v1/referrals/{moved_id}/reassign", json={"officer_id": moved_to.id},
                           headers=sup_h).status_code == 200
        traveller.move_to(t0 + 4 * hour)
        to_h = first_h if moved_to.id == first.id else second_h
        assert client.post(f"/api/v1/referrals/{moved_id}/accept", headers=to_h).status_code == 200
    left_id = cases[1][0]
    left = db.session.get(Referral, left_id)
    left.status, left.assigned_officer_id, left.closed_at = Status.services_only, None, t0 + 5 * hour
    db.session.flush()
    db.session.execute(update(Offer).values(released_at=None))  # as before the column existed
    for statement in migration.BACKFILL:
        db.session.execute(text(statement))
    db.session.expire_all()

    def released(case_id, officer_id):
        return db.session.scalar(select(Offer.released_at).where(
            Offer.referral_id == case_id, Offer.officer_id == officer_id, Offer.status == OfferStatus.accepted))

    assert released(moved_id, moved_from) == t0 + 3 * hour  # when the case was offered to the next officer
    assert released(moved_id, moved_to.id) is None
    assert released(left_id, cases[1][1]) == t0 + 5 * hour  # when the case left the police
    assert released(cases[2][0], cases[2][1]) is None


def test_migration_0017_fills_in_recusals_and_an_officer_given_the_case_back(client, place, people, officers):
    """A recusal flipped its offer to declined: the officer's own audit event says when the hold ended. An
    officer reassigned away and later given the case back held it twice: the first hold ends when the case
    was next offered, not when they took it again."""
    import datetime as dt
    import importlib.util
    from pathlib import Path

    import time_machine
    from sqlalchemy import select, text, update

    from referral.referrals.workflow_models import Offer
    from tests.referrals.helpers import minimal

    spec = importlib.util.spec_from_file_location(
        "m0017", Path(__file__).resolve().parent.parent / "migrations/versions/0017_offer_released_at.py")
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    t0 = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).replace(microsecond=0)
    hour = dt.timedelta(hours=1)
    focal_h, sup_h = people["focal"][1], people["supervisor"][1]
    headers = {user.id: h for user, h in officers}
    ids = list(headers)
    with time_machine.travel(t0, tick=False) as traveller:
        back = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=focal_h).get_json()["id"]
        a = db.session.scalar(select(Offer.officer_id).where(Offer.referral_id == back))
        b = ids[1] if a == ids[0] else ids[0]
        for step, (officer, verb) in enumerate([(a, "accept"), (b, "reassign"), (b, "accept"), (a, "reassign"),
                                                (a, "accept")], start=1):
            traveller.move_to(t0 + step * hour)
            if verb == "accept":
                resp = client.post(f"/api/v1/referrals/{back}/accept", headers=headers[officer])
            else:
                resp = client.post(f"/api/v1/referrals/{back}/reassign", json={"officer_id": officer}, headers=sup_h)
            assert resp.status_code == 200, (step, resp.get_json())
        traveller.move_to(t0 + 10 * hour)
        recused = client.post("/api/v1/referrals", json=minimal(place["district"].code),
                              headers=focal_h).get_json()["id"]
        c = db.session.scalar(select(Offer.officer_id).where(Offer.referral_id == recused))
        traveller.move_to(t0 + 11 * hour)
        assert client.post(f"/api/v1/referrals/{recused}/accept", headers=headers[c]).status_code == 200
        traveller.move_to(t0 + 13 * hour)
        assert client.post(f"/api/v1/referrals/{recused}/recuse", json={"reason": "conflict_of_interest"},
                           headers=headers[c]).status_code == 204
    db.session.execute(update(Offer).values(released_at=None))  # as before the column existed
    for statement in migration.BACKFILL:
        db.session.execute(text(statement))
    db.session.expire_all()

    def spans(case_id):
        return [(o.officer_id, o.responded_at, o.released_at) for o in db.session.scalars(
            select(Offer).where(Offer.referral_id == case_id, Offer.responded_at.is_not(None))
            .order_by(Offer.responded_at, Offer.id))]

    assert spans(back) == [(a, t0 + hour, t0 + 2 * hour), (b, t0 + 3 * hour, t0 + 4 * hour), (a, t0 + 5 * hour, None)]
    assert spans(recused) == [(c, t0 + 11 * hour, t0 + 13 * hour)]
