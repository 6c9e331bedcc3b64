"""The bare stack Amanat is measured against: Flask + Flask-SQLAlchemy on PostgreSQL, no security.

One endpoint inserts the request body (about 2 KB) as a row, one reads a row
back as JSON. It lives in bench/ only and is never part of the product.

``/secure/...`` is the floor of any secure version of the same two calls, for
context in the report (not a goal): a bearer token looked up by its SHA-256, the
body sealed under a new per-row AES-256-GCM key wrapped by a key-encryption key,
and one hash-chained audit row appended in a single statement, committed with the
change. No validation, no routing, no permissions, no timeline. Two forms of it:
``/secure/insert`` and ``/secure/rows/<id>`` as a plain ORM version writes them
(the token, the row and the audit append as three statements), and
``/secure/one/...`` with all three in one statement (data-modifying CTEs):
BEGIN, the statement, COMMIT, as many round trips as the bare insert's and read's
own. Both append a bare minimum of an audit row (actor, action, row; no time,
role, outcome, source or indexes), so Amanat's own event costs somewhat more.

``/secure/full/cases/<id>`` (session 16) is the floor of a *full* case read as
Amanat's API answers it, rewritten outside the stack's rules: one statement in
autocommit (so no BEGIN or COMMIT: the statement is its own transaction, its
audit event with it) that checks the token (known, unexpired, unrevoked, its account active)
and the reader's right to the case's content by Amanat's rule, in SQL (the
offer summary an officer sees of a case offered to them and a focal point's
status view are not modelled: 404 here); reads the case's
plain columns, its nine consents, its actions, notes, protection orders and
service referrals, its open offer's deadline, and the other cases naming the
same perpetrator or phone that the reader may see; and appends one chained
event with most of Amanat's fields (time, actor, role, action, case, outcome,
source, request id, the fields disclosed; no reason or object type, and none of
the secondary indexes Amanat's audit table keeps), denied for a case the reader
may not see.
Then seven sealed fields opened under the case's key, unwrapped once, and the
answer built as plain dicts. No ORM objects, schemas, Flask-Login or hooks:
a rewrite of Amanat's read that keeps its answer (a smaller answer, fewer
framework layers or another worker setup are not measured).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, abort, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import LargeBinary, String, create_engine, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

KEK = AESGCM(b"k" * 32)
TOKEN = "bench-token"
# The full read's other readers (``_full_read_tables``): another unit's supervisor, an officer of unit 1,
# oversight with break-glass on one case; and the bench user's tokens that no longer work.
OTHER_TOKEN, OFFICER_TOKEN, OVERSIGHT_TOKEN = "bench-token-unit-2", "bench-token-officer", "bench-token-oversight"
EXPIRED_TOKEN, REVOKED_TOKEN = "bench-token-expired", "bench-token-revoked"
DEACTIVATED_TOKEN = "bench-token-deactivated"  # a live token of a unit-1 supervisor whose account was deactivated
_CHAIN = text(
    "WITH head AS (UPDATE bare_audit_head SET seq = seq + 1, hash = sha256(hash || int8send(seq + 1) || :body) "
    "WHERE id = 1 RETURNING seq, hash) INSERT INTO bare_audit (seq, body, hash) SELECT seq, :body, hash FROM head")

# The token, the row and the chained audit row in one statement each (``/secure/one/...``). The audit row
# goes in only when the token is known (and, for a read, the row exists); its body names the actor and row.
_EVENT = "convert_to('{{\"actor\":' || tok.user_id || ',\"action\":\"{action}\",\"row\":' || r.id || '}}', 'UTF8')"
_APPEND = (
    "head AS (UPDATE bare_audit_head SET seq = seq + 1, hash = sha256(hash || int8send(seq + 1) || ev.body) "
    "FROM ev WHERE id = 1 RETURNING seq, ev.body, hash), "
    "appended AS (INSERT INTO bare_audit (seq, body, hash) SELECT seq, body, hash FROM head) ")
_INSERT_ONE = text(
    "WITH tok AS (SELECT user_id FROM bare_tokens WHERE token_hash = :h), "
    "r AS (INSERT INTO bare_sealed_rows (kind, wrapped_key, body) SELECT 'referral', :wrapped_key, :body FROM tok "
    "RETURNING id), "
    f"ev AS (SELECT {_EVENT.format(action='create')} AS body FROM r, tok), " + _APPEND +
    "SELECT (SELECT user_id FROM tok), (SELECT id FROM r)")
_READ_ONE = text(
    "WITH tok AS (SELECT user_id FROM bare_tokens WHERE token_hash = :h), "
    "r AS (SELECT id, kind, wrapped_key, body FROM bare_sealed_rows WHERE id = :id AND EXISTS (SELECT FROM tok)), "
    f"ev AS (SELECT {_EVENT.format(action='read')} AS body FROM r, tok), " + _APPEND +
    "SELECT (SELECT user_id FROM tok), r.id, r.kind, r.wrapped_key, r.body FROM (SELECT) one LEFT JOIN r ON true")


# The full case read's floor (``/secure/full/cases/<id>``). ``c`` is the case only if the token's user may
# see its content, by Amanat's rule (referral.security.permissions.case_view: the unit's supervisor unless
# the case is services-only, the assigned officer once accepted, oversight under a live break-glass grant).
# Every read by a valid token appends one chained event: allowed with the fields disclosed, or denied.
SEALED = {"survivor_name": "survivor.name", "survivor_phone": "survivor.phone", "survivor_address": "survivor.address",
          "contact_notes": "survivor.safe_contact.notes", "narrative": "incident.narrative",
          "perpetrator_name": "perpetrator.name", "perpetrator_details": "perpetrator.details"}
PLAIN = ("reference", "status", "area", "unit_code", "age_group", "sex", "disability", "language", "gbv_type",
         "flags", "answers", "incident_date", "immediate_danger", "location_type", "relationship", "consent",
         "created_at", "assigned_officer_id", "outcome", "erased", "closure_pending", "safe_contact_method")
_MAY_READ = ("((tok.role = 'supervisor' AND tok.unit_id = {c}.unit_id AND {c}.status <> 'services_only') "
             "OR (tok.role = 'officer' AND {c}.assigned_officer_id = tok.user_id "
             "AND {c}.status IN ('accepted', 'in_progress', 'closed')) "
             "OR (tok.role = 'oversight' AND EXISTS (SELECT FROM bare_break_glass g WHERE g.user_id = tok.user_id "
             "AND g.case_id = {c}.id AND g.expires_at > now())))")
_TIMELINE = ("(SELECT coalesce(json_agg(json_build_object('at', at, 'kind', kind, 'detail', detail) ORDER BY at), "
             "'[]') FROM {table} WHERE case_id = (SELECT id FROM c)) AS {name}")
_DISCLOSED = "array_remove(ARRAY[" + ", ".join(
    f"CASE WHEN c.{column} IS NOT NULL THEN '{path}' END" for column, path in SEALED.items()) + "], NULL)"
_READ_FULL = text(
    "WITH tok AS (SELECT t.user_id, u.role, u.unit_id FROM bare_tokens t JOIN bare_users u ON u.id = t.user_id "
    "WHERE t.token_hash = :h AND t.revoked_at IS NULL AND t.expires_at > now() AND u.active), "
    f"c AS (SELECT bare_cases.* FROM bare_cases, tok WHERE bare_cases.id = :id AND {_MAY_READ.format(c='bare_cases')}), "
    "cons AS (SELECT json_object_agg(scope, json_build_object('active', granted, 'given_by', given_by, "
    "'recorded_at', recorded_at, 'expires_at', expires_at)) AS consents FROM bare_consents "
    "WHERE case_id = (SELECT id FROM c)), "
    "tl AS (SELECT " + ", ".join(_TIMELINE.format(table=f"bare_{name}", name=name) for name in (
        "actions", "notes", "protection_orders", "service_referrals")) +
    ", (SELECT min(deadline) FROM bare_offers WHERE case_id = (SELECT id FROM c) AND status = 'open') AS accept_by), "
    "same AS (SELECT array(SELECT o.reference FROM bare_cases o, tok, c WHERE o.perpetrator_bidx = c.perpetrator_bidx "
    f"AND o.id <> c.id AND {_MAY_READ.format(c='o')} ORDER BY o.id) AS perpetrator, "
    "array(SELECT o.reference FROM bare_cases o, tok, c WHERE o.phone_bidx = c.phone_bidx "
    f"AND o.id <> c.id AND {_MAY_READ.format(c='o')} ORDER BY o.id) AS phone), "
    "ev AS (SELECT convert_to(json_build_object('ts', now(), 'actor', tok.user_id, 'role', tok.role, "
    "'action', 'referral.read', 'object', CAST(:id AS int), "
    "'outcome', CASE WHEN c.id IS NULL THEN 'denied' ELSE 'allowed' END, "
    f"'ip', CAST(:ip AS text), 'request_id', CAST(:request_id AS text), 'fields', {_DISCLOSED})::text, 'UTF8') AS body "
    "FROM tok LEFT JOIN c ON true), " + _APPEND +
    "SELECT (SELECT user_id FROM tok) AS reader, c.id, c.wrapped_key, "
    + ", ".join(f"c.{name}" for name in (*SEALED, *PLAIN)) +
    ", cons.consents, tl.*, same.perpetrator, same.phone "
    "FROM (SELECT) one LEFT JOIN c ON true LEFT JOIN cons ON true LEFT JOIN tl ON true LEFT JOIN same ON true")


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class BareRow(db.Model):  # type: ignore[name-defined]
    __tablename__ = "bare_rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    body: Mapped[bytes] = mapped_column(LargeBinary)


class BareSealedRow(db.Model):  # type: ignore[name-defined]
    __tablename__ = "bare_sealed_rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[bytes] = mapped_column(LargeBinary)


def _authorised() -> int:
    user_id = db.session.execute(text("SELECT user_id FROM bare_tokens WHERE token_hash = :h"),
                                 {"h": _token_digest()}).scalar()
    if user_id is None:
        abort(401)
    return user_id


def _token_digest() -> bytes:
    return hashlib.sha256(request.headers.get("Authorization", "").removeprefix("Bearer ").encode()).digest()


def _wrap(key: bytes) -> bytes:
    """A row's or case's key wrapped by the KEK, its nonce in front."""
    nonce = os.urandom(12)
    return nonce + KEK.encrypt(nonce, key, None)


def _unwrap(wrapped_key: bytes) -> AESGCM:
    return AESGCM(KEK.decrypt(wrapped_key[:12], wrapped_key[12:], None))


def _seal(data: bytes) -> tuple[bytes, bytes]:
    """(the new row key wrapped by the KEK, ``data`` sealed under that key), each with its nonce in front."""
    key, nonce = os.urandom(32), os.urandom(12)
    return _wrap(key), nonce + AESGCM(key).encrypt(nonce, data, None)


def _open(wrapped_key: bytes, sealed: bytes) -> str:
    return _unwrap(wrapped_key).decrypt(sealed[:12], sealed[12:], None).decode()


def _case_answer(case: Any) -> dict[str, Any]:
    """The full read's answer, in the shape of Amanat's (plain dicts; no schema): the case key unwrapped
    once, each sealed field opened under it, bound to the case and the field as Amanat's are."""
    key = _unwrap(case["wrapped_key"])
    opened = {field: None if case[field] is None else key.decrypt(
        case[field][:12], case[field][12:], f"{case['id']}:{field}".encode()).decode() for field in SEALED}
    plain = {name: case[name].isoformat() if isinstance(case[name], dt.date) else case[name] for name in PLAIN}
    return {
        "id": case["id"], "reference": plain["reference"], "status": plain["status"], "area": plain["area"],
        "unit": plain["unit_code"], "age_group": plain["age_group"], "gbv_type": plain["gbv_type"],
        "flags": plain["flags"].split(",") if plain["flags"] else [], "created_at": plain["created_at"],
        "assigned_officer_id": plain["assigned_officer_id"], "outcome": plain["outcome"], "erased": plain["erased"],
        "closure_pending": plain["closure_pending"],
        "accept_by": case["accept_by"].isoformat() if case["accept_by"] else None,
        "incident": {"answers": json.loads(plain["answers"]), "date": plain["incident_date"],
                     "immediate_danger": plain["immediate_danger"], "location_type": plain["location_type"],
                     "narrative": opened["narrative"]},
        "survivor": {"name": opened["survivor_name"], "phone": opened["survivor_phone"],
                     "address": opened["survivor_address"], "age_group": plain["age_group"], "sex": plain["sex"],
                     "disability": plain["disability"], "language": plain["language"],
                     "safe_contact": {"method": plain["safe_contact_method"], "notes": opened["contact_notes"]}},
        "perpetrator": {"name": opened["perpetrator_name"], "details": opened["perpetrator_details"],
                        "relationship": plain["relationship"]},
        "consent": json.loads(plain["consent"]), "consents": case["consents"] or {},
        "matches": {"same_perpetrator": list(case["perpetrator"]), "same_phone": list(case["phone"])},
        "actions": case["actions"], "notes": case["notes"], "protection_orders": case["protection_orders"],
        "service_referrals": case["service_referrals"],
    }


def _audit(user_id: int, action: str, row_id: int) -> None:
    db.session.execute(_CHAIN, {"body": f'{{"actor":{user_id},"action":"{action}","row":{row_id}}}'.encode()})


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["BENCH_DATABASE_URL"]
    db.init_app(app)

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        # Nothing but Flask: what any request costs before its own work (bench/profile_requests.py).
        return jsonify(status="ok")

    @app.post("/insert")
    def insert():  # type: ignore[no-untyped-def]
        row = BareRow(kind="referral", body=request.get_data())
        db.session.add(row)
        db.session.commit()
        return jsonify(id=row.id), 201

    @app.get("/rows/<int:row_id>")
    def read(row_id: int):  # type: ignore[no-untyped-def]
        row = db.session.get(BareRow, row_id)
        if row is None:
            return jsonify(error="not found"), 404
        return jsonify(id=row.id, kind=row.kind, body=row.body.decode())

    @app.post("/secure/insert")
    def secure_insert():  # type: ignore[no-untyped-def]
        user_id = _authorised()
        wrapped_key, sealed = _seal(request.get_data())
        row = BareSealedRow(kind="referral", wrapped_key=wrapped_key, body=sealed)
        db.session.add(row)
        db.session.flush()
        _audit(user_id, "create", row.id)
        db.session.commit()
        return jsonify(id=row.id), 201

    @app.get("/secure/rows/<int:row_id>")
    def secure_read(row_id: int):  # type: ignore[no-untyped-def]
        user_id = _authorised()
        row = db.session.get(BareSealedRow, row_id)
        if row is None:
            return jsonify(error="not found"), 404
        body = _open(row.wrapped_key, row.body)
        _audit(user_id, "read", row.id)
        db.session.commit()
        return jsonify(id=row.id, kind=row.kind, body=body)

    @app.post("/secure/one/insert")
    def secure_insert_one():  # type: ignore[no-untyped-def]
        wrapped_key, sealed = _seal(request.get_data())
        user_id, row_id = db.session.execute(_INSERT_ONE, {"h": _token_digest(), "wrapped_key": wrapped_key,
                                                           "body": sealed}).one()
        if user_id is None:
            abort(401)
        db.session.commit()
        return jsonify(id=row_id), 201

    @app.get("/secure/one/rows/<int:row_id>")
    def secure_read_one(row_id: int):  # type: ignore[no-untyped-def]
        user_id, found, kind, wrapped_key, sealed = db.session.execute(
            _READ_ONE, {"h": _token_digest(), "id": row_id}).one()
        if user_id is None:
            abort(401)
        if found is None:
            return jsonify(error="not found"), 404
        body = _open(wrapped_key, sealed)
        db.session.commit()
        return jsonify(id=found, kind=kind, body=body)

    # The full read runs in autocommit: its one statement is its own transaction, audit row included.
    full_read = create_engine(app.config["SQLALCHEMY_DATABASE_URI"], isolation_level="AUTOCOMMIT")
    app.extensions["full_read_engine"] = full_read  # for whoever ends the app (the tests) to dispose of

    @app.get("/secure/full/cases/<int:case_id>")
    def secure_read_full(case_id: int):  # type: ignore[no-untyped-def]
        with full_read.connect() as conn:
            case = conn.execute(_READ_FULL, {"h": _token_digest(), "id": case_id, "ip": request.remote_addr,
                                             "request_id": os.urandom(16).hex()}).one()._mapping
        if case["reader"] is None:
            abort(401)
        if case["id"] is None:  # no such case, or not the reader's to see: 404, its denied event written
            return jsonify(error="not found"), 404
        return jsonify(_case_answer(case))

    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))  # two workers start at once
        db.metadata.create_all(conn)
        conn.execute(text("CREATE TABLE IF NOT EXISTS bare_tokens (token_hash bytea PRIMARY KEY, user_id int)"))
        conn.execute(text("CREATE TABLE IF NOT EXISTS bare_audit (seq bigint PRIMARY KEY, body bytea, hash bytea)"))
        conn.execute(text("CREATE TABLE IF NOT EXISTS bare_audit_head (id int PRIMARY KEY, seq bigint, hash bytea)"))
        conn.execute(text("INSERT INTO bare_audit_head VALUES (1, 0, '\\x00') ON CONFLICT DO NOTHING"))
        conn.execute(text("INSERT INTO bare_tokens VALUES (:h, 1) ON CONFLICT DO NOTHING"),
                     {"h": hashlib.sha256(TOKEN.encode()).digest()})
        _full_read_tables(conn)
    return app


def _full_read_tables(conn: Any) -> None:
    """The full read's tables, and (once) its data. Case 1, which ``make bench`` reads, is like the case
    Amanat's bench reads: offered (one open offer), no phone, nobody else naming its perpetrator, no
    actions, notes, orders or service referrals. Cases 2-5 name one perpetrator and one phone; case 2 has
    one timeline entry of each kind, case 3 is accepted by officer 3, case 4 is unit 2's, case 5 is unit 1's but
    services-only (no police consent: no police user may see it). Users: 1 (the bench token's)
    supervises unit 1, 2 unit 2; 3 is an officer of unit 1; 4 is oversight, with break-glass on case 2
    (and an ended one on case 3); 5 supervised unit 1 until deactivated."""
    conn.execute(text("ALTER TABLE bare_tokens ADD COLUMN IF NOT EXISTS expires_at timestamptz NOT NULL "
                      "DEFAULT 'infinity', ADD COLUMN IF NOT EXISTS revoked_at timestamptz"))
    conn.execute(text("CREATE TABLE IF NOT EXISTS bare_users (id int PRIMARY KEY, role text, unit_id int, "
                      "active boolean NOT NULL DEFAULT true)"))
    columns = ", ".join(f"{name} bytea" for name in SEALED)
    conn.execute(text(
        "CREATE TABLE IF NOT EXISTS bare_cases (id int PRIMARY KEY, unit_id int, wrapped_key bytea, "
        f"{columns}, perpetrator_bidx bytea, phone_bidx bytea, reference text, status text, area text, "
        "unit_code text, age_group text, sex text, disability boolean, language text, gbv_type text, "
        "flags text, answers text, incident_date date, immediate_danger boolean, location_type text, "
        "relationship text, consent text, created_at timestamptz, assigned_officer_id int, outcome text, "
        "erased boolean, closure_pending boolean, safe_contact_method text)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS bare_cases_perpetrator ON bare_cases (perpetrator_bidx)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS bare_cases_phone ON bare_cases (phone_bidx)"))
    conn.execute(text(
        "CREATE TABLE IF NOT EXISTS bare_consents (case_id int REFERENCES bare_cases, scope text, granted boolean, "
        "given_by text, recorded_at timestamptz, expires_at timestamptz, PRIMARY KEY (case_id, scope))"))
    for name in ("actions", "notes", "protection_orders", "service_referrals"):
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS bare_{name} (id serial PRIMARY KEY, "
                          "case_id int REFERENCES bare_cases, at timestamptz, kind text, detail text)"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS bare_{name}_case ON bare_{name} (case_id, at)"))
    conn.execute(text("CREATE TABLE IF NOT EXISTS bare_offers (case_id int REFERENCES bare_cases, officer_id int, "
                      "status text, deadline timestamptz)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS bare_offers_case ON bare_offers (case_id)"))
    conn.execute(text("CREATE TABLE IF NOT EXISTS bare_break_glass (user_id int, case_id int, expires_at timestamptz)"))
    if conn.scalar(text("SELECT count(*) FROM bare_cases")):
        return
    conn.execute(text("INSERT INTO bare_users VALUES (1, 'supervisor', 1, true), (2, 'supervisor', 2, true), "
                      "(3, 'officer', 1, true), (4, 'oversight', NULL, true), (5, 'supervisor', 1, false)"))
    for token, user_id, expires, revoked in ((OTHER_TOKEN, 2, "infinity", None), (OFFICER_TOKEN, 3, "infinity", None),
                                             (OVERSIGHT_TOKEN, 4, "infinity", None),
                                             (EXPIRED_TOKEN, 1, "2026-01-01T00:00:00Z", None),
                                             (REVOKED_TOKEN, 1, "infinity", "2026-01-01T00:00:00Z"),
                                             (DEACTIVATED_TOKEN, 5, "infinity", None)):
        conn.execute(text("INSERT INTO bare_tokens (token_hash, user_id, expires_at, revoked_at) "
                          "VALUES (:h, :u, CAST(:e AS timestamptz), CAST(:r AS timestamptz))"),
                     {"h": hashlib.sha256(token.encode()).digest(), "u": user_id, "e": expires, "r": revoked})
    now = dt.datetime(2026, 11, 29, 12, tzinfo=dt.timezone.utc)
    for case_id, unit_id, status, officer in ((1, 1, "offered", None), (2, 1, "offered", None),
                                              (3, 1, "accepted", 3), (4, 2, "offered", None),
                                              (5, 1, "services_only", None)):
        key = os.urandom(32)
        shared = case_id > 1
        values: dict[str, Any] = {
            "id": case_id, "unit_id": unit_id, "wrapped_key": _wrap(key),
            "perpetrator_bidx": hashlib.sha256(b"p-shared" if shared else b"p-one").digest(),
            "phone_bidx": hashlib.sha256(b"phone-shared").digest() if shared else None}
        for field in SEALED:  # synthetic text; case 1 without a phone, as Amanat's bench case
            value = None if field == "survivor_phone" and not shared else f"Synthetic {field} of case {case_id}"
            nonce = os.urandom(12)
            values[field] = None if value is None else nonce + AESGCM(key).encrypt(
                nonce, value.encode(), f"{case_id}:{field}".encode())
        values.update(reference=f"R-BARE-{case_id:04d}", status=status, area="KG-C-ALM", unit_code=f"U-{unit_id}",
                      age_group="26-40", sex="female", disability=False, language="ky", gbv_type="physical_assault",
                      flags="intimate_partner", answers=json.dumps({"physical_assault": True, "penetration": False}),
                      incident_date=now.date(), immediate_danger=False, location_type="home",
                      relationship="intimate_partner", consent=json.dumps({"police": True, "services": ["health"]}),
                      created_at=now, assigned_officer_id=officer, outcome=None, erased=False, closure_pending=False,
                      safe_contact_method="via_focal_point")
        conn.execute(text(f"INSERT INTO bare_cases ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)})"),
                     values)
        scopes = ("police", "sms_contact", "statistics", *(f"services:{s}" for s in (
            "health", "legal", "shelter", "psychosocial", "economic", "child_protection")))
        conn.execute(text("INSERT INTO bare_consents VALUES (:case_id, :scope, :granted, 'survivor', :at, NULL)"),
                     [{"case_id": case_id, "scope": scope, "granted": scope in ("police", "statistics", "services:health"),
                       "at": now} for scope in scopes])
        if status == "offered":
            conn.execute(text("INSERT INTO bare_offers VALUES (:c, 3, 'open', :d)"),
                         {"c": case_id, "d": now + dt.timedelta(hours=24)})
    # Case 2's timeline, one entry of each kind. Its text is the bench's own, not a case's: Amanat seals a
    # note's text, which this floor does not model (case 1, the one measured, has no timeline).
    for table, kind in (("actions", "contact_made"), ("notes", "note"), ("protection_orders", "temporary"),
                        ("service_referrals", "health")):
        conn.execute(text(f"INSERT INTO bare_{table} (case_id, at, kind, detail) VALUES (2, :at, :kind, 'bench entry')"),
                     {"at": now, "kind": kind})
    conn.execute(text("INSERT INTO bare_break_glass VALUES (4, 2, :e), (4, 3, :gone)"),  # case 3's grant has ended
                 {"e": now + dt.timedelta(days=3650), "gone": now - dt.timedelta(days=1)})


app = create_app() if os.environ.get("BENCH_DATABASE_URL") else None
