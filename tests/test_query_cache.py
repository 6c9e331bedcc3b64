"""psycopg parses a statement's placeholders once when the statement fits its cache
(referral.extensions.widen_query_cache). The hottest statements are longer than psycopg's own limits: a
submission's one INSERT of case, offer and message, and a full read's combined timeline. Neither may be
parsed again on every request."""
from __future__ import annotations

import pytest
from sqlalchemy import event

from referral.extensions import QUERY_CACHE_LIMITS, db


@pytest.fixture()
def postgresql(app):  # type: ignore[no-untyped-def]
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: psycopg's query cache")
    from psycopg import _queries

    return _queries


def test_the_limits_are_raised_and_never_lowered(postgresql):
    for name, value in QUERY_CACHE_LIMITS.items():
        assert getattr(postgresql, name) >= value


def test_a_submission_and_a_full_read_parse_no_statement_again(postgresql, submit_and_read, monkeypatch):
    # Once before: a token's first use records it (a change in the session, which a submission then
    # leaves to the unit of work's flush instead of its one INSERT).
    submit_and_read()
    # The cached parser keeps a reference of its own to the function: only statements past the limits
    # reach this one.
    parsed_again: list[bytes] = []
    original = postgresql._query2pg_nocache
    monkeypatch.setattr(postgresql, "_query2pg_nocache",
                        lambda query, encoding: parsed_again.append(query) or original(query, encoding))
    seen: list[str] = []
    note = lambda *a: seen.append(a[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", note)
    try:
        submit_and_read()
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    # The two long statements did run: the INSERT of case, offer and message, and the timeline's UNION.
    assert any("inserted_0" in s and len(s) > 2048 for s in seen), [s[:60] for s in seen]
    assert any("row_number() OVER" in s and len(s) > 4096 for s in seen), [s[:60] for s in seen]
    assert parsed_again == []
