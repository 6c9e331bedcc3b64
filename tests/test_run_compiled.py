"""referral.db.compiled_once / run_compiled: a statement built once is compiled once and run past
SQLAlchemy's per-execution cache-key walk, with its parameters converted as SQLAlchemy converts them, or
refused where running it so would differ. The audit append every request makes runs this way."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Integer, bindparam, column, select, table, text
from sqlalchemy.dialects import postgresql, sqlite

from referral.audit.models import AuditEvent
from referral.audit.service import record
from referral.db import UTCDateTime, compiled_once, run_compiled
from referral.extensions import db

BISHKEK = dt.timezone(dt.timedelta(hours=6))


@pytest.fixture()
def pg(db_session):  # type: ignore[no-untyped-def]
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: the statements run this way are PostgreSQL's")
    return db_session


def test_the_sql_is_compiled_once_and_only_converting_parameters_get_a_processor():
    statement = text("SELECT CAST(:ts AS timestamptz), :n").bindparams(bindparam("ts", type_=UTCDateTime()))
    sql, processors = compiled_once(statement, postgresql.psycopg.dialect())
    assert compiled_once(statement, postgresql.psycopg.dialect())[0] == sql
    assert "%(ts)s" in sql and "%(n)s" in sql
    assert [name for name, _process in processors] == ["ts"]
    converted = processors[0][1](dt.datetime(2026, 11, 29, 14, 0, tzinfo=BISHKEK))
    assert converted == dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC) and converted.tzinfo is dt.UTC


def test_a_statement_it_would_run_differently_is_refused():
    # Positional placeholders (SQLite's): parameters are passed by name here.
    with pytest.raises(ValueError, match="renamed"):
        compiled_once(text("SELECT :a"), sqlite.dialect())
    # A name SQLAlchemy escapes in the SQL it writes.
    with pytest.raises(ValueError, match="renamed"):
        compiled_once(select(bindparam("a b")), postgresql.psycopg.dialect())
    # A returned column whose values SQLAlchemy would convert on the way out.
    stamped = table("t", column("at", UTCDateTime()), column("n", Integer()))
    with pytest.raises(ValueError, match="converting"):
        compiled_once(select(stamped.c.at), postgresql.psycopg.dialect())
    compiled_once(select(stamped.c.n), postgresql.psycopg.dialect())  # an integer comes back as it is


def test_run_converts_the_parameters_as_an_execution_does(pg):
    statement = text("SELECT CAST(:ts AS timestamptz) = CAST(:utc AS timestamptz)").bindparams(
        bindparam("ts", type_=UTCDateTime()))
    local = dt.datetime(2026, 11, 29, 14, 0, tzinfo=BISHKEK)
    same = run_compiled(pg.connection(), statement, {"ts": local, "utc": "2026-11-29 08:00:00+00"}).scalar()
    assert same is True
    with pytest.raises(ValueError, match="naive"):  # UTCDateTime refuses a naive time, as on any execution
        run_compiled(pg.connection(), statement, {"ts": dt.datetime(2026, 11, 29, 14, 0), "utc": None})


def test_the_audit_append_stores_each_event_as_given(pg, make_user):
    before = pg.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0
    user = make_user(role="officer")
    user_id = user.id
    at = dt.datetime(2026, 11, 29, 14, 0, 0, 123456, tzinfo=BISHKEK)
    record(pg, user, "referral.read", object_type="referral", object_id="c1", reason="why", fields=["a", "b"],
           now=at)
    record(pg, None, "auth.login", outcome="denied", now=at + dt.timedelta(seconds=1))
    pg.commit()
    rows = pg.scalars(select(AuditEvent).where(AuditEvent.seq > before).order_by(AuditEvent.seq)).all()
    assert [(r.action, r.actor_id, r.actor_role, r.object_id, r.outcome, r.reason) for r in rows] == [
        ("referral.read", user_id, "officer", "c1", "allowed", "why"),
        ("auth.login", None, None, None, "denied", None)]
    assert rows[0].ts == at and rows[0].ts.utcoffset() == dt.timedelta(0)
    assert rows[1].ts == at + dt.timedelta(seconds=1)
    assert rows[1].prev_hash == rows[0].hash


def test_an_event_with_a_naive_time_is_refused_and_the_action_with_it(pg, make_user):
    user = make_user(role="officer")
    before = pg.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0
    record(pg, user, "referral.read", now=dt.datetime(2026, 11, 29, 14, 0))
    with pytest.raises(ValueError, match="naive"):
        pg.commit()
    pg.rollback()
    assert pg.scalar(select(AuditEvent.seq).where(AuditEvent.seq > before)) is None
