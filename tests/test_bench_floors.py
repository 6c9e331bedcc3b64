"""The bench's secure floors (bench/bare_app.py) do what ``make bench`` says they do: every call that
discloses or writes appends exactly one chained audit row, in three statements or in one; a call refused
(unknown token, no such row) writes neither row nor event. A floor that skipped its audit row would be
measured faster than any compliant version could be, and the report would mislead (issue 10)."""
from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import text

from bench import bare_app  # before BENCH_DATABASE_URL is set: no app of its own at import
from tests.conftest import fresh_database

pytestmark = pytest.mark.postgres

TOKEN = {"Authorization": "Bearer bench-token"}
WRONG = {"Authorization": "Bearer not-the-token"}


@pytest.fixture()
def bare(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    with fresh_database("benchfloor", tmp_path) as url:
        monkeypatch.setenv("BENCH_DATABASE_URL", url)
        app = None
        try:
            app = bare_app.create_app()
            yield app, bare_app.db
        finally:
            if app is not None:
                with app.app_context():
                    bare_app.db.session.remove()
                    bare_app.db.engine.dispose()


def _events(app, db) -> list[tuple[int, dict, bytes]]:  # type: ignore[no-untyped-def]
    """(seq, body, hash) of every audit row, checking each link: sha256(previous hash, seq, body)."""
    with app.app_context():
        rows = db.session.execute(text("SELECT seq, body, hash FROM bare_audit ORDER BY seq")).all()
        head = db.session.execute(text("SELECT seq, hash FROM bare_audit_head")).one()
        db.session.rollback()
    previous = b"\x00"
    for expected, (seq, body, digest) in enumerate(rows, start=1):
        assert seq == expected
        assert bytes(digest) == hashlib.sha256(previous + seq.to_bytes(8, "big") + bytes(body)).digest()
        previous = bytes(digest)
    assert (head.seq, bytes(head.hash)) == (len(rows), previous)
    return [(seq, json.loads(bytes(body)), bytes(digest)) for seq, body, digest in rows]


def _rows(app, db) -> int:  # type: ignore[no-untyped-def]
    with app.app_context():
        count = db.session.scalar(text("SELECT count(*) FROM bare_sealed_rows"))
        db.session.rollback()
    return count


@pytest.mark.parametrize("prefix", ["/secure", "/secure/one"])
def test_each_write_and_read_appends_one_chained_event(bare, prefix):  # type: ignore[no-untyped-def]
    app, db = bare
    client = app.test_client()
    created = client.post(f"{prefix}/insert", data=b'{"story": "synthetic"}', headers=TOKEN)
    assert created.status_code == 201
    row = created.get_json()["id"]
    read = client.get(f"{prefix}/rows/{row}", headers=TOKEN)
    assert read.status_code == 200
    assert read.get_json() == {"id": row, "kind": "referral", "body": '{"story": "synthetic"}'}
    assert [body for _seq, body, _hash in _events(app, db)] == [
        {"actor": 1, "action": "create", "row": row}, {"actor": 1, "action": "read", "row": row}]


@pytest.mark.parametrize("prefix", ["/secure", "/secure/one"])
def test_a_refused_call_writes_neither_row_nor_event(bare, prefix):  # type: ignore[no-untyped-def]
    app, db = bare
    client = app.test_client()
    assert client.post(f"{prefix}/insert", data=b"{}", headers=WRONG).status_code == 401
    assert _rows(app, db) == 0 and _events(app, db) == []
    row = client.post(f"{prefix}/insert", data=b"{}", headers=TOKEN).get_json()["id"]
    assert client.get(f"{prefix}/rows/{row}", headers=WRONG).status_code == 401
    assert client.get(f"{prefix}/rows/{row + 1}", headers=TOKEN).status_code == 404
    assert [body["action"] for _seq, body, _hash in _events(app, db)] == ["create"]
    assert _rows(app, db) == 1


def test_the_sealed_body_is_not_stored_in_plaintext(bare):  # type: ignore[no-untyped-def]
    app, db = bare
    client = app.test_client()
    client.post("/secure/one/insert", data=b'{"story": "synthetic-marker"}', headers=TOKEN)
    with app.app_context():
        stored = db.session.execute(text("SELECT wrapped_key, body FROM bare_sealed_rows")).one()
        db.session.rollback()
    assert b"synthetic-marker" not in bytes(stored.body) and len(bytes(stored.wrapped_key)) == 12 + 32 + 16


@pytest.mark.parametrize("prefix", ["/secure", "/secure/one"])
def test_a_write_whose_audit_row_fails_is_not_kept(bare, prefix):  # type: ignore[no-untyped-def]
    # The audit row is written in the action's own transaction: when it cannot be written, neither is the row.
    app, db = bare
    with app.app_context():
        db.session.execute(text("ALTER TABLE bare_audit ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"))
        db.session.commit()
    client = app.test_client()
    assert client.post(f"{prefix}/insert", data=b'{"story": "synthetic"}', headers=TOKEN).status_code == 500
    assert _rows(app, db) == 0
