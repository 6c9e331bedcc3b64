"""The bench's secure floors (bench/bare_app.py) do what ``make bench`` says they do: every call that
discloses or writes appends exactly one chained audit row, in three statements or in one; a call refused
(unknown token, no such row) writes neither row nor event; the full case read's floor (session 16), as
Amanat does, writes a denied event for a case its reader may not see. A floor that skipped its audit row
would be measured faster than any compliant version could be, and the report would mislead (issue 10)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest
from sqlalchemy import text

from bench import bare_app  # before BENCH_DATABASE_URL is set: no app of its own at import
from tests.conftest import fresh_database

pytestmark = pytest.mark.postgres

def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


TOKEN = _as(bare_app.TOKEN)
WRONG = _as("not-the-token")


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
                app.extensions["full_read_engine"].dispose()


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


# -- the full case read's floor (session 16) ------------------------------------------------------------

def _full_events(app, db) -> list[tuple[int, str, int, str, list[str]]]:  # type: ignore[no-untyped-def]
    """(actor, role, case, outcome, fields disclosed) of every chained event, the chain checked."""
    return [(b["actor"], b["role"], b["object"], b["outcome"], b["fields"]) for _seq, b, _hash in _events(app, db)]


DISCLOSED_1 = ["survivor.name", "survivor.address", "survivor.safe_contact.notes", "incident.narrative",
               "perpetrator.name", "perpetrator.details"]  # case 1 has no phone


def test_the_full_read_floor_answers_the_case_and_appends_one_chained_event(bare):  # type: ignore[no-untyped-def]
    app, db = bare
    answer = app.test_client().get("/secure/full/cases/1", headers=TOKEN)
    assert answer.status_code == 200
    case = answer.get_json()
    assert case["reference"] == "R-BARE-0001" and case["status"] == "offered"
    assert dt.datetime.fromisoformat(case["accept_by"]) == dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)
    assert case["survivor"]["name"] == "Synthetic survivor_name of case 1" and case["survivor"]["phone"] is None
    assert case["incident"]["narrative"] == "Synthetic narrative of case 1"
    assert case["perpetrator"]["details"] == "Synthetic perpetrator_details of case 1"
    assert len(case["consents"]) == 9 and case["consents"]["police"]["active"] is True
    assert case["consents"]["services:legal"]["active"] is False
    assert case["matches"] == {"same_perpetrator": [], "same_phone": []}
    assert case["actions"] == case["notes"] == case["protection_orders"] == case["service_referrals"] == []
    assert _full_events(app, db) == [(1, "supervisor", 1, "allowed", DISCLOSED_1)]


def test_the_full_read_floor_reads_the_timeline_and_matches_only_what_the_reader_may_see(bare):  # type: ignore[no-untyped-def]
    # Cases 2-5 share a perpetrator and a phone: 3 is unit 1's (accepted by officer 3), 4 unit 2's, 5 is
    # unit 1's but services-only.
    app, db = bare
    client = app.test_client()
    case = client.get("/secure/full/cases/2", headers=TOKEN).get_json()
    assert case["matches"] == {"same_perpetrator": ["R-BARE-0003"], "same_phone": ["R-BARE-0003"]}
    assert [[entry["kind"] for entry in case[name]] for name in ("actions", "notes", "protection_orders",
                                                                  "service_referrals")] == [
        ["contact_made"], ["note"], ["temporary"], ["health"]]
    assert case["survivor"]["phone"] == "Synthetic survivor_phone of case 2"
    other = client.get("/secure/full/cases/4", headers=_as(bare_app.OTHER_TOKEN)).get_json()
    assert other["matches"] == {"same_perpetrator": [], "same_phone": []}
    assert [(actor, case_id, outcome) for actor, _role, case_id, outcome, _f in _full_events(app, db)] == [
        (1, 2, "allowed"), (2, 4, "allowed")]


def test_the_full_read_floor_shows_content_by_amanats_rule_for_officers_and_oversight(bare):  # type: ignore[no-untyped-def]
    # The content view only: Amanat answers an officer's read of a case offered to them with the offer's
    # summary, which the floor does not model (404, denied).
    app, db = bare
    client = app.test_client()
    officer, oversight = _as(bare_app.OFFICER_TOKEN), _as(bare_app.OVERSIGHT_TOKEN)
    assert client.get("/secure/full/cases/3", headers=officer).status_code == 200  # assigned, accepted
    assert client.get("/secure/full/cases/2", headers=officer).status_code == 404  # offered to them at most
    assert client.get("/secure/full/cases/2", headers=oversight).status_code == 200  # under break-glass
    assert client.get("/secure/full/cases/3", headers=oversight).status_code == 404  # without it
    assert [(role, case_id, outcome) for _a, role, case_id, outcome, _f in _full_events(app, db)] == [
        ("officer", 3, "allowed"), ("officer", 2, "denied"), ("oversight", 2, "allowed"), ("oversight", 3, "denied")]


def test_the_full_read_floor_answers_404_with_a_denied_event_and_401_without_one(bare):  # type: ignore[no-untyped-def]
    app, db = bare
    client = app.test_client()
    assert client.get("/secure/full/cases/1", headers=_as(bare_app.OTHER_TOKEN)).status_code == 404  # another unit's
    assert client.get("/secure/full/cases/99", headers=TOKEN).status_code == 404
    assert client.get("/secure/full/cases/5", headers=TOKEN).status_code == 404  # services-only, in their unit
    for token in ("not-the-token", bare_app.EXPIRED_TOKEN, bare_app.REVOKED_TOKEN, bare_app.DEACTIVATED_TOKEN):
        assert client.get("/secure/full/cases/1", headers=_as(token)).status_code == 401
    assert _full_events(app, db) == [(2, "supervisor", 1, "denied", []), (1, "supervisor", 99, "denied", []),
                                     (1, "supervisor", 5, "denied", [])]


def test_the_full_read_floor_discloses_nothing_when_its_event_cannot_be_written(bare):  # type: ignore[no-untyped-def]
    # One statement in autocommit: the event fails, the statement fails, and nothing is answered.
    app, db = bare
    with app.app_context():
        db.session.execute(text("ALTER TABLE bare_audit ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"))
        db.session.commit()
    answer = app.test_client().get("/secure/full/cases/1", headers=TOKEN)
    assert answer.status_code == 500 and b"Synthetic" not in answer.data
    with app.app_context():
        head = db.session.execute(text("SELECT seq FROM bare_audit_head")).scalar()
        db.session.rollback()
    assert head == 0  # the head's advance went with the failed statement


def test_the_full_read_floors_events_carry_no_case_text(bare):  # type: ignore[no-untyped-def]
    app, db = bare
    client = app.test_client()
    for case_id in (1, 2):
        assert b"Synthetic" in client.get(f"/secure/full/cases/{case_id}", headers=TOKEN).data
    with app.app_context():
        events = db.session.execute(text("SELECT body FROM bare_audit")).scalars().all()
        db.session.rollback()
    assert len(events) == 2 and not any(b"Synthetic" in bytes(body) for body in events)
