"""psycopg cursors that build a result's column descriptions only on demand (referral/pgcursor.py):
they must describe every result exactly as psycopg's own cursor does, and a request must not build them."""
from __future__ import annotations

import pytest

from referral.extensions import db

STATEMENTS = [
    "SELECT 1 AS one, 'x'::varchar(42) AS v, 12.5::numeric(10, 2) AS n, now() AS t, ARRAY[1, 2] AS a, "
    "NULL::bytea AS b, '{}'::jsonb AS j, true AS f",
    "SELECT 1 WHERE false",  # described, no rows
    "SELECT",  # tuples, but no fields: psycopg describes it as []
    "INSERT INTO lazy_probe (k) VALUES ('a')",  # no result: None
    "INSERT INTO lazy_probe (k) VALUES ('b') RETURNING id, k",
    "UPDATE lazy_probe SET k = 'c' WHERE false",
    "SELECT k, count(*) FROM lazy_probe GROUP BY k",
]


@pytest.fixture()
def raw(app):  # type: ignore[no-untyped-def]
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: psycopg's cursors")
    connection = db.engine.raw_connection()
    try:
        yield connection.driver_connection
    finally:
        connection.rollback()
        connection.close()


def _described(description):  # type: ignore[no-untyped-def]
    if description is None:
        return None
    return [(tuple(column), column.type_display) for column in description]


def test_the_engine_s_connections_use_the_lazy_cursor(raw):
    from referral.pgcursor import LazyDescription, LazyDescriptionCursor

    cursor = raw.cursor()
    assert isinstance(cursor, LazyDescriptionCursor)
    cursor.execute("SELECT 1 AS one")
    assert isinstance(cursor.description, LazyDescription)


def test_every_result_is_described_as_psycopg_describes_it(raw):
    import psycopg

    from referral.pgcursor import LazyDescriptionCursor

    raw.execute("CREATE TEMPORARY TABLE lazy_probe (id serial PRIMARY KEY, k text)")
    for sql in STATEMENTS:
        plain, lazy = psycopg.Cursor(raw), LazyDescriptionCursor(raw)
        plain.execute(sql)
        lazy.execute(sql)
        expected, got = plain.description, lazy.description
        assert (got is None) == (expected is None), sql
        if expected is not None:
            assert len(got) == len(expected) and bool(got) == bool(expected), sql
            assert _described(got) == _described(expected), sql
            assert [c.name for c in got[1:]] == [c.name for c in expected[1:]], sql  # slices, as SQLAlchemy takes
            if len(expected):
                assert got[0] is got[0] and list(got)[0] is got[0]  # built once, then kept


def test_a_description_keeps_describing_its_own_statement(raw):
    from referral.pgcursor import LazyDescriptionCursor

    cursor = LazyDescriptionCursor(raw)
    cursor.execute("SELECT 1 AS first, 2 AS second")
    first = cursor.description
    cursor.execute("SELECT 'x' AS other")
    assert [c.name for c in first] == ["first", "second"]
    assert [c.name for c in cursor.description] == ["other"]


def test_a_submission_and_a_full_read_build_no_column_descriptions(raw, submit_and_read, monkeypatch):
    import psycopg
    from sqlalchemy import event

    submit_and_read()  # once before: each statement's result metadata is cached from its first run
    built: list[tuple[str, int]] = []
    running: list[str] = [""]
    original = psycopg.Column.__init__

    def counted(column, cursor, index):  # type: ignore[no-untyped-def]
        built.append((running[0], index))
        original(column, cursor, index)

    def note(_conn, _cursor, statement, *_rest):  # type: ignore[no-untyped-def]
        running[0] = statement

    # On the class itself: psycopg's own cursor builds its columns through its private module's name.
    monkeypatch.setattr(psycopg.Column, "__init__", counted)
    event.listen(db.engine, "before_cursor_execute", note)
    try:
        submit_and_read()
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    # Only the INSERT of the new case and what comes with it, run as SQL compiled once (referral.db), has
    # no cached result metadata: its one row of new keys is described (the offer's and the message's ids).
    assert {statement[:16] for statement, _index in built} <= {"WITH inserted_0 "} and len(built) <= 3, built
