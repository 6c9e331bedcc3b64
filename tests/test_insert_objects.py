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


def test_rows_go_in_their_tables_foreign_key_order(case, people):
    """A case and its offers in any order, the offer's case given as an object or as its key: the case's
    row goes first, as a flush orders them."""
    supervisor, _headers = people["supervisor"]
    copy = Referral(**{c.key: getattr(case, c.key) for c in Referral.__table__.columns
                       if c.key not in ("id", "reference")}, id=new_id(), reference="R-2345-6789")
    by_object = Offer(referral=copy, officer_id=supervisor.id, offered_at=NOW, deadline=NOW)
    by_key = Offer(referral_id=copy.id, officer_id=supervisor.id, offered_at=NOW, deadline=NOW)
    db.session.add_all([by_object, by_key, copy])
    assert insert_objects(db.session, [by_object, by_key, copy])
    assert by_object.referral_id == copy.id and inspect(by_object).persistent and inspect(by_key).persistent
    assert set(db.session.scalars(select(Offer.referral_id).where(Offer.id.in_([by_object.id, by_key.id])))) \
        == {copy.id}


def test_a_parent_not_written_yet_leaves_its_child_to_the_flush(case):
    """A child whose parent is pending and not in the batch (a flush writes them in order), and a parent
    holding its children (a collection): nothing written; the flush then writes both."""
    from referral.reference.models import Area, AreaKind

    district = Area(code="T-NEW-DISTRICT", name="d", kind=AreaKind.district, parent_id=case.area.parent_id)
    village = Area(code="T-NEW-VILLAGE", name="v", kind=AreaKind.community, parent=district)
    count = db.session.scalar(select(func.count()).select_from(Area))
    db.session.add_all([village, district])
    with db.session.no_autoflush:
        assert not insert_objects(db.session, [village])
        assert not insert_objects(db.session, [district, village])  # district.children holds the village
        assert db.session.scalar(select(func.count()).select_from(Area)) == count
        assert inspect(village).pending and inspect(district).pending
    db.session.flush()
    assert village.parent_id == district.id is not None


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


def test_a_child_of_a_new_serial_parent_gets_its_key(case, people):
    """A parent whose key the database gives (serial) and its child in one batch: the child's key is known
    only once the parent is written (on PostgreSQL not in the one statement the others share)."""
    from referral.reference.models import Area, AreaKind

    area = Area(code="T-NEW-AREA", name="A new district", kind=AreaKind.district, parent_id=case.area.parent_id)
    copy = Referral(**{c.key: getattr(case, c.key) for c in Referral.__table__.columns
                       if c.key not in ("id", "reference", "area_id")}, id=new_id(), reference="R-2345-6786",
                    area=area)
    message = _message()
    db.session.add_all([area, copy, message])
    assert insert_objects(db.session, [area, copy, message])
    assert area.id is not None and copy.area_id == area.id and message.id is not None
    assert db.session.scalar(select(Referral.area_id).where(Referral.id == copy.id)) == area.id


def test_several_new_rows_in_one_batch_each_get_their_own_key(case, people):
    supervisor, _headers = people["supervisor"]
    offers = [Offer(referral=case, officer_id=supervisor.id, offered_at=NOW + dt.timedelta(minutes=n),
                    deadline=NOW) for n in range(3)]
    messages = [_message(template="new_offer") for _ in range(2)]
    db.session.add_all(offers + messages)
    assert insert_objects(db.session, offers + messages)
    assert len({o.id for o in offers}) == 3 and len({m.id for m in messages}) == 2
    for offer in offers:  # each key is its own row's
        assert db.session.scalar(select(Offer.offered_at).where(Offer.id == offer.id)) == offer.offered_at
    for message in messages:
        assert db.session.scalar(select(OutboxMessage.key).where(OutboxMessage.id == message.id)) == message.key


def test_as_a_flush_does_with_what_the_caller_gave(case, people):
    """A None where the column has a Python default gets the default; an expired parent's key is loaded;
    an object listed twice is written once."""
    from referral.referrals.workflow_models import Alert, AlertKind

    message = _message(attempts=None)
    db.session.add(message)
    assert insert_objects(db.session, [message, message])
    assert message.attempts == 0
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.key == message.key)) \
        == 1
    db.session.commit()  # the case is expired now: its key is not in memory
    assert "id" not in inspect(case).dict
    alert = Alert(kind=AlertKind.police_suspect, referral=case, created_at=NOW)
    db.session.add(alert)
    assert insert_objects(db.session, [alert])
    assert db.session.scalar(select(Alert.referral_id).where(Alert.id == alert.id)) == case.id


def test_keys_and_collections_are_left_to_the_flush(case, people, place):
    """A serial key set by hand, a collection (rows of another table) and a primary key that is a foreign
    key (not serial): the flush's work; insert_objects writes nothing, and the flush does it right."""
    from referral.reference.models import Organisation, OrganisationKind, organisation_areas
    from referral.standards.models import Certification, CertificationReminder, Course

    supervisor, _headers = people["supervisor"]
    offer = Offer(id=987654, referral=case, officer_id=supervisor.id, offered_at=NOW, deadline=NOW)
    group = Organisation(code="T-ORG-NEW", name="A new group", kind=OrganisationKind.womens_group,
                         areas=[place["district"]])
    for obj in (offer, group):
        db.session.add(obj)
        assert not insert_objects(db.session, [obj]) and inspect(obj).pending
    db.session.flush()
    assert db.session.get(Offer, 987654) is offer
    assert db.session.scalar(select(func.count()).select_from(organisation_areas)
                             .where(organisation_areas.c.organisation_id == group.id)) == 1
    course = Course(code="T-COURSE", name="c", validity_months=12)
    db.session.add(course)
    db.session.flush()
    certificates = [Certification(user_id=supervisor.id, course_id=course.id, completed_on=dt.date(2026, 1, day),
                                  expires_on=dt.date(2027, 1, 1)) for day in (1, 2)]
    db.session.add_all(certificates)
    db.session.flush()
    reminder = CertificationReminder(certification_id=certificates[1].id, sent_at=NOW)
    db.session.add(reminder)
    assert insert_objects(db.session, [reminder])  # its key is given: written as given
    assert db.session.scalars(select(CertificationReminder.certification_id)
                              .where(CertificationReminder.certification_id.in_([c.id for c in certificates]))
                              ).all() == [certificates[1].id]


def test_a_database_error_rolls_the_batch_back_as_a_failed_flush_does(case):
    """Nothing of a batch outlives an error in it: the first message's row is not left written."""
    from sqlalchemy.exc import IntegrityError

    db.session.commit()
    count = db.session.scalar(select(func.count()).select_from(OutboxMessage))
    first, clash, twin = _message(), _message(), _message()
    twin.key = clash.key  # the key is unique
    db.session.add_all([first, clash, twin])
    with pytest.raises(IntegrityError):
        insert_objects(db.session, [first, clash, twin])
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == count
    assert not inspect(first).persistent


# -- plain rows written with the objects (``rows=``) ------------------------------------------------------

def _consents(case, recorded_by_id):  # type: ignore[no-untyped-def]
    """The case's consents this user recorded at NOW or just after (not the submission's own)."""
    from referral.services_dir.models import Consent

    return db.session.execute(select(Consent.referral_id, Consent.scope, Consent.granted, Consent.given_by,
                                     Consent.recorded_by_id, Consent.recorded_at)
                              .where(Consent.referral_id == case.id, Consent.recorded_by_id == recorded_by_id,
                                     Consent.recorded_at.between(NOW, NOW + dt.timedelta(seconds=1)))
                              .order_by(Consent.scope, Consent.id)).all()


def test_plain_rows_go_in_with_the_objects_as_insert_rows_writes_them(case, people):
    """Values as the columns store them (an enum's value, an aware time in any zone); on PostgreSQL in the
    one statement with the objects."""
    from referral.db import insert_rows
    from referral.services_dir.consent import CONSENT_COLUMNS
    from referral.services_dir.models import Consent

    focal, _h = people["focal"]
    supervisor, _h = people["supervisor"]
    east = dt.timezone(dt.timedelta(hours=6))
    rows = [(case.id, "police", True, "survivor", supervisor.id, NOW.astimezone(east)),
            (case.id, "statistics", False, "caregiver", supervisor.id, NOW + dt.timedelta(microseconds=7)),
            (case.id, "sms_contact", True, "survivor", supervisor.id, NOW)]
    message = _message()
    db.session.add(message)
    with Statements() as sql:
        assert insert_objects(db.session, [message], rows=[(Consent.__table__, CONSENT_COLUMNS, rows)])
    if db.engine.dialect.name == "postgresql":
        assert len(sql.seen) == 1 and "INSERT INTO consents" in sql.seen[0]
    assert inspect(message).persistent and message.id is not None
    ours = _consents(case, supervisor.id)
    insert_rows(db.session, Consent.__table__, CONSENT_COLUMNS,
                [(r[0], r[1], r[2], r[3], focal.id, r[5]) for r in rows])
    theirs = [(*r[:4], supervisor.id, r[5]) for r in _consents(case, focal.id)]
    assert [tuple(r) for r in ours] == theirs and len(ours) == 3
    assert {r.recorded_at for r in ours} == {NOW, NOW + dt.timedelta(microseconds=7)}


def test_plain_rows_alone_are_written(case, people):
    from referral.services_dir.consent import CONSENT_COLUMNS
    from referral.services_dir.models import Consent

    supervisor, _h = people["supervisor"]
    assert insert_objects(db.session, [], rows=[(Consent.__table__, CONSENT_COLUMNS,
                                                 [(case.id, "police", False, "survivor", supervisor.id, NOW)])])
    assert [tuple(r) for r in _consents(case, supervisor.id)] == [(case.id, "police", False, "survivor",
                                                                   supervisor.id, NOW)]


def test_plain_rows_are_not_written_when_the_objects_are_left_to_the_flush(case, people):
    from referral.services_dir.consent import CONSENT_COLUMNS
    from referral.services_dir.models import Consent

    supervisor, _h = people["supervisor"]
    case.officer_gender = "female" if case.officer_gender != "female" else "any"  # a change: only a flush orders it
    message = _message()
    db.session.add(message)
    with db.session.no_autoflush:
        assert not insert_objects(db.session, [message], rows=[
            (Consent.__table__, CONSENT_COLUMNS, [(case.id, "police", False, "survivor", supervisor.id, NOW)])])
        assert inspect(message).pending
        assert _consents(case, supervisor.id) == []
    db.session.rollback()


def test_an_error_in_the_plain_rows_rolls_the_objects_back_too(case, people):
    from sqlalchemy.exc import IntegrityError

    from referral.services_dir.consent import CONSENT_COLUMNS
    from referral.services_dir.models import Consent

    supervisor, _h = people["supervisor"]
    db.session.commit()
    supervisor_id = supervisor.id  # read now: loading it later would flush the message first
    count = db.session.scalar(select(func.count()).select_from(OutboxMessage))
    message = _message()
    db.session.add(message)
    with pytest.raises(IntegrityError):  # no such case: the foreign key refuses the consent
        insert_objects(db.session, [message], rows=[
            (Consent.__table__, CONSENT_COLUMNS, [(new_id(), "police", False, "survivor", supervisor_id, NOW)])])
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == count
    assert not inspect(message).persistent
