"""referral.rowload: objects made from plain rows must be what the ORM's loading gives — the same values,
persistent in the session, clean — and behave as ORM-loaded objects do afterwards: a change flushes as an
UPDATE of that column, a lazy relationship loads, an expiry reloads, a rollback expires; an object already
in the session is answered as the ORM answers it (what it holds unchanged, what expired filled from the
row); mappers whose loading only the ORM does right are refused."""
from __future__ import annotations

import pytest
from sqlalchemy import JSON, Column, ForeignKey, Integer, String, event, inspect, select
from sqlalchemy.ext.mutable import MutableDict
from sqlalchemy.orm import DeclarativeBase, deferred, relationship, scoped_session

from referral import rowload
from referral.accounts.auth import issue_token, resolve_session, resolve_token, start_session
from referral.accounts.models import ApiToken, User, UserSession
from referral.extensions import db
from referral.reference.models import Area, Unit
from referral.referrals.models import Referral
from referral.standards.models import Standard
from tests.referrals.helpers import minimal


def _plain(session, model, key):  # type: ignore[no-untyped-def]
    """``model``'s row ``key`` through rowload, in ``session`` (the real Session, not the scoped proxy)."""
    mapper = inspect(model)
    statement = select(*rowload.columns_of(model)).where(mapper.primary_key[0] == key)
    return rowload.load(session, model, rowload.execute(session, statement, {}).one())


def _column_values(obj):  # type: ignore[no-untyped-def]
    return {attr.key: inspect(obj).dict[attr.key] for attr in inspect(obj).mapper.column_attrs}


@pytest.fixture()
def world(client, place, people, runner):  # type: ignore[no-untyped-def]
    """A case filed through the API, under the shipped standards, by a focal point with a token and a web
    session."""
    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    focal, headers = people["focal"]
    response = client.post("/api/v1/referrals", json=minimal(place["district"].code), headers=headers)
    assert response.status_code == 201, response.get_json()
    case_id = response.get_json()["id"]
    start_session(focal)
    db.session.commit()
    session = db.session()
    return {"case": case_id, "user": focal.id, "unit": place["unit"].id, "area": place["district"].id,
            "standard": session.get(Referral, case_id).standard_id, "session": session}


@pytest.mark.parametrize("model", [Referral, User, ApiToken, UserSession, Area, Unit, Standard])
def test_an_object_is_what_the_orm_loads_persistent_and_clean(world, model):
    session = world["session"]
    key = {Referral: world["case"], User: world["user"], Area: world["area"], Unit: world["unit"],
           Standard: world["standard"]}.get(model)
    if model in (ApiToken, UserSession):
        key = session.scalar(select(model.id).where(model.user_id == world["user"]).limit(1))
    assert key is not None
    session.expunge_all()
    orm = session.get(model, key)
    expected, orm_state = _column_values(orm), inspect(orm)
    expected_unloaded = set(orm_state.unloaded)
    session.expunge_all()

    obj = _plain(session, model, key)
    state = inspect(obj)
    assert type(obj) is model and _column_values(obj) == expected
    assert state.persistent and state.session is session and state.key == orm_state.key
    assert session.identity_map[state.key] is obj
    assert not state.modified and not state.expired and not state.committed_state and obj not in session.dirty
    assert set(state.unloaded) == expected_unloaded  # its relationships, left to load as the ORM leaves them


def test_a_change_flushes_as_an_update_of_that_column_and_lazy_loads_work(world):
    session = world["session"]
    session.expunge_all()
    case = _plain(session, Referral, world["case"])
    assert case.area.id == world["area"] and case.unit.id == world["unit"]  # many-to-one, loaded lazily
    assert case.notes == []  # a collection too
    seen: list[str] = []
    listen = lambda *a: seen.append(a[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        case.outcome = "CanaryOutcome"
        session.flush()
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    updates = [s for s in seen if s.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1 and "referrals" in updates[0] and "outcome" in updates[0]
    assert "reference" not in updates[0]  # only what changed
    session.expire(case)
    assert case.outcome == "CanaryOutcome"  # reloaded from the database
    session.expunge_all()
    assert session.get(Referral, world["case"]).outcome == "CanaryOutcome"


def test_an_object_already_in_the_session_is_answered_as_it_is(world):
    session = world["session"]
    session.expunge_all()
    user = session.get(User, world["user"])
    user.name = "Changed, not flushed"
    with session.no_autoflush:
        row = rowload.execute(session, select(*rowload.columns_of(User)).where(User.id == world["user"]), {}).one()
    assert rowload.load(session, User, row) is user and user.name == "Changed, not flushed"
    assert user in session.dirty


def test_an_object_expired_in_the_session_is_filled_from_the_row_as_the_orm_fills_it(world):
    session = world["session"]
    session.expunge_all()
    case = session.get(Referral, world["case"])
    expected = _column_values(case)
    session.expire(case)
    partly = session.get(User, world["user"])
    session.expire(partly, ["name", "email"])
    partly.active = partly.active  # loaded and set: stays as it is
    seen: list[str] = []
    listen = lambda *a: seen.append(a[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        again = _plain(session, Referral, world["case"])
        user = _plain(session, User, world["user"])
        assert again is case and _column_values(case) == expected  # read without another query
        assert user is partly and user.name and user.email
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert len(seen) == 2, seen  # the two statements of _plain, no refresh after them
    assert not inspect(case).expired and not inspect(case).expired_attributes & set(expected)
    assert not inspect(user).expired_attributes & {"name", "email"}


def test_a_query_flushes_first_unless_autoflush_is_off(world):
    session = world["session"]
    session.expunge_all()
    user = session.get(User, world["user"])
    user.name = "Flushed before the query"
    statement = select(*rowload.columns_of(User)).where(User.name == "Flushed before the query")
    with session.no_autoflush:
        assert rowload.execute(session, statement, {}).first() is None
    assert rowload.execute(session, statement, {}).first() is not None


def test_an_outer_join_that_found_nothing_is_no_object(place, db_session):
    import datetime as dt

    from referral.referrals import routing

    session = db.session()
    # No standard loaded: none in force. The village has no unit of its own; the district's unit covers it.
    where = routing.place(session, place["village"].code, on=dt.date(2026, 11, 29))
    assert where is not None and where.standard is None
    assert where.cover[place["village"].id] == []
    assert [u.id for u in where.cover[place["district"].id]] == [place["unit"].id]
    assert [a.id for a in where.area.lineage()] == [place["village"].id, place["district"].id]
    assert routing.covering_unit(where) is place["unit"]


def test_a_rollback_expires_them_as_it_expires_what_the_orm_loaded(world):
    session = world["session"]
    session.expunge_all()
    savepoint = session.begin_nested()
    case = _plain(session, Referral, world["case"])
    before = case.outcome
    case.outcome = "CanaryRolledBack"
    session.flush()
    savepoint.rollback()
    assert "outcome" not in inspect(case).dict  # expired, as the rollback expires what changed in it
    assert case.outcome == before  # and read again


def test_the_token_and_its_user_come_through_the_scoped_session(app, make_user):
    user = make_user(role="officer")
    raw, _token = issue_token(user)
    db.session.commit()
    user_id = user.id
    db.session.expunge_all()
    assert isinstance(db.session, scoped_session)
    with app.test_request_context("/"):
        token = resolve_token(raw)
    assert token is not None and token.user.id == user_id and inspect(token.user).persistent
    assert token.user not in db.session.dirty and not inspect(token.user).modified  # the user loaded clean


@pytest.mark.parametrize("expunged", [True, False])
def test_a_token_or_a_web_session_comes_with_its_user_in_one_statement(app, make_user, expunged):
    user = make_user(role="supervisor")
    raw_token, _token = issue_token(user)
    raw_session = start_session(user)
    db.session.commit()  # what it created stays in the session, expired, unless expunged
    user_id = user.id
    for resolve, raw in ((resolve_token, raw_token), (resolve_session, raw_session)):
        if expunged:
            db.session.expunge_all()
        seen: list[str] = []
        listen = lambda *a: seen.append(a[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            with app.test_request_context("/"):
                row = resolve(raw)
                assert row is not None and row.user.id == user_id and row.user.active
                assert row.user is db.session.get(User, user_id)  # the session's one object for the user
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)
        assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 1, seen


class _Other(DeclarativeBase):
    pass


class _WithDeferred(_Other):
    __tablename__ = "with_deferred"
    id = Column(Integer, primary_key=True)
    big = deferred(Column(String(10)))


class _Parent(_Other):
    __tablename__ = "parents"
    id = Column(Integer, primary_key=True)
    kind = Column(String(10))
    __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "parent"}


class _Child(_Parent):
    __tablename__ = "children"
    id = Column(Integer, ForeignKey("parents.id"), primary_key=True)
    __mapper_args__ = {"polymorphic_identity": "child"}


class _Listened(_Other):
    __tablename__ = "listened"
    id = Column(Integer, primary_key=True)


@event.listens_for(_Listened, "load")
def _on_load(target, context):  # type: ignore[no-untyped-def]
    pass


class _Versioned(_Other):
    __tablename__ = "versioned"
    id = Column(Integer, primary_key=True)
    version = Column(Integer, nullable=False)
    __mapper_args__ = {"version_id_col": version}


class _Mutable(_Other):
    __tablename__ = "mutable"
    id = Column(Integer, primary_key=True)
    data = Column(MutableDict.as_mutable(JSON))


class _Eager(_Other):
    __tablename__ = "eager"
    id = Column(Integer, primary_key=True)
    listened_id = Column(Integer, ForeignKey("listened.id"))
    listened = relationship(_Listened, lazy="joined")


@pytest.mark.parametrize("model", [_WithDeferred, _Parent, _Child, _Listened, _Versioned, _Mutable, _Eager])
def test_what_only_the_orm_loads_right_is_refused(model):
    with pytest.raises(TypeError):
        rowload.columns_of(model)
