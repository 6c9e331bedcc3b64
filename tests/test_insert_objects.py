"""referral.db.insert_objects: new objects written by plain INSERTs, past the unit of work, must end as a
flush leaves them (the same rows, persistent, clean, nothing left to load), or not be written at all."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, func, inspect, select

from referral.db import insert_objects
from referral.extensions import db
from referral.notify.models import OutboxMessage
from referral.referrals.models import Referral, new_id
from referral.referrals.workflow_models import Offer, OfferStatus
from referral.standards.models import StepStatus
from tests.referrals.helpers import minimal

NOW = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.timezone.utc)


@pytest.fixture()
def case(client, place, people, runner):
    """A case filed through the API under the standards in config/ (the fallback covers every area)."""
    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    _focal, headers = people["focal"]
    response = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=headers)
    assert response.status_code == 201, response.get_json()
    return db.session.get(Referral, response.get_json()["id"])


class Statements:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __enter__(self) -> "Statements":
        event.listen(db.session.get_bind(), "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(db.session.get_bind(), "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        self.seen.append(statement)


def _row(table, id_value):  # type: ignore[no-untyped-def]
    return db.session.execute(select(table).where(table.c.id == id_value)).one()._asdict()


def _message(**overrides):  # type: ignore[no-untyped-def]
    values = dict(key=new_id(), channel="sms", address="+996700000001", template="new_offer", language="ky",
                  params='{"reference": "R-2345-6789"}', next_attempt_at=NOW)
    return OutboxMessage(**{**values, **overrides})


def test_written_objects_are_the_rows_a_flush_writes_and_stay_as_a_flush_leaves_them(case, people):
    supervisor, _headers = people["supervisor"]
    by_insert = [Offer(referral=case, officer_id=supervisor.id, offered_at=NOW, deadline=NOW), _message()]
    by_flush = [Offer(referral=case, officer_id=supervisor.id, offered_at=NOW, deadline=NOW), _message()]
    db.session.add_all(by_insert)
    assert insert_objects(db.session, by_insert)
    assert not db.session.new
    db.session.add_all(by_flush)
    db.session.flush()
    for written, flushed in zip(by_insert, by_flush):
        state = inspect(written)
        assert state.persistent and not state.modified and not state.expired_attributes
        assert written.id is not None and written.id != flushed.id
        table = type(written).__table__
        ours, theirs = _row(table, written.id), _row(table, flushed.id)
        for skipped in ("id", "key"):
            ours.pop(skipped, None), theirs.pop(skipped, None)
        if "created_at" in ours:  # the Python default, filled in as a flush does: now, not NULL
            assert ours.pop("created_at") is not None and theirs.pop("created_at") is not None
        assert ours == theirs
    # The parent given as an object became the key; the defaults were filled in; nothing is read back.
    offer, message = by_insert
    with Statements() as sql:
        assert (offer.referral_id, offer.status, offer.reason) == (case.id, OfferStatus.open, None)
        assert (message.attempts, message.status.value, message.sent_at) == (0, "pending", None)
        assert db.session.get(Offer, offer.id) is offer
    assert sql.seen == []


def test_a_parent_pending_must_come_first(case, people):
    supervisor, _headers = people["supervisor"]
    copy = Referral(**{c.key: getattr(case, c.key) for c in Referral.__table__.columns
                       if c.key not in ("id", "reference")}, id=new_id(), reference="R-2345-6789")
    offer = Offer(referral=copy, officer_id=supervisor.id, offered_at=NOW, deadline=NOW)
    before = db.session.scalar(select(func.count()).select_from(Referral))
    db.session.add_all([copy, offer])
    with db.session.no_autoflush:
        assert not insert_objects(db.session, [offer, copy])  # the case after its offer: a flush orders them
        assert db.session.scalar(select(func.count()).select_from(Referral)) == before
        assert inspect(copy).pending and inspect(offer).pending
    assert insert_objects(db.session, [copy, offer])
    assert offer.referral_id == copy.id and inspect(offer).persistent
    assert db.session.scalar(select(Offer.referral_id).where(Offer.id == offer.id)) == copy.id


def test_a_new_case_written_so_is_judged_at_commit(case):
    """The unit of work is bypassed, not its listeners' work: a case written so gets its step rows."""
    copy = Referral(**{c.key: getattr(case, c.key) for c in Referral.__table__.columns
                       if c.key not in ("id", "reference")}, id=new_id(), reference="R-2345-6788")
    db.session.add(copy)
    assert insert_objects(db.session, [copy])
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(StepStatus).where(StepStatus.referral_id == copy.id)) \
        == db.session.scalar(select(func.count()).select_from(StepStatus).where(StepStatus.referral_id == case.id)) > 0


@pytest.mark.parametrize("why", ["dirty", "persistent", "expression", "no key"])
def test_what_only_a_flush_does_right_is_left_to_it(case, people, why):
    supervisor, _headers = people["supervisor"]
    count = db.session.scalar(select(func.count()).select_from(OutboxMessage))
    message = _message()
    objects = [message]
    if why == "dirty":  # a changed case: a flush would write it (and order it among the new rows)
        case.officer_gender = "female" if case.officer_gender != "female" else "male"
    elif why == "persistent":
        objects.append(case)
    elif why == "expression":
        message.next_attempt_at = func.now()
    elif why == "no key":
        objects.append(StepStatus(referral_id=case.id, standard_id=case.standard_id, status="open"))  # no step
    db.session.add_all(objects)
    with db.session.no_autoflush:
        assert not insert_objects(db.session, objects)
        assert inspect(message).pending
        assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == count
    db.session.rollback()


def test_a_rollback_undoes_them_as_it_undoes_a_flush(case, people):
    """Objects written so and then rolled back are transient again, their values kept (as after a flush),
    not persistent objects whose rows are gone."""
    supervisor, _headers = people["supervisor"]
    by_insert = Offer(referral=case, officer_id=supervisor.id, offered_at=NOW, deadline=NOW)
    by_flush = Offer(referral=case, officer_id=supervisor.id, offered_at=NOW, deadline=NOW)
    db.session.add(by_insert)
    assert insert_objects(db.session, [by_insert])
    db.session.add(by_flush)
    db.session.flush()
    db.session.rollback()
    for offer in (by_insert, by_flush):
        assert inspect(offer).transient and offer not in db.session
        assert offer.deadline == NOW
