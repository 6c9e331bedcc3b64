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
"""
from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, abort, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import LargeBinary, String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

KEK = AESGCM(b"k" * 32)
TOKEN = "bench-token"
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


def _seal(data: bytes) -> tuple[bytes, bytes]:
    """(the new row key wrapped by the KEK, ``data`` sealed under that key), each with its nonce in front."""
    key, nonce, key_nonce = os.urandom(32), os.urandom(12), os.urandom(12)
    return key_nonce + KEK.encrypt(key_nonce, key, None), nonce + AESGCM(key).encrypt(nonce, data, None)


def _open(wrapped_key: bytes, sealed: bytes) -> str:
    key = KEK.decrypt(wrapped_key[:12], wrapped_key[12:], None)
    return AESGCM(key).decrypt(sealed[:12], sealed[12:], None).decode()


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

    with app.app_context(), db.engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))  # two workers start at once
        db.metadata.create_all(conn)
        conn.execute(text("CREATE TABLE IF NOT EXISTS bare_tokens (token_hash bytea PRIMARY KEY, user_id int)"))
        conn.execute(text("CREATE TABLE IF NOT EXISTS bare_audit (seq bigint PRIMARY KEY, body bytea, hash bytea)"))
        conn.execute(text("CREATE TABLE IF NOT EXISTS bare_audit_head (id int PRIMARY KEY, seq bigint, hash bytea)"))
        conn.execute(text("INSERT INTO bare_audit_head VALUES (1, 0, '\\x00') ON CONFLICT DO NOTHING"))
        conn.execute(text("INSERT INTO bare_tokens VALUES (:h, 1) ON CONFLICT DO NOTHING"),
                     {"h": hashlib.sha256(TOKEN.encode()).digest()})
    return app


app = create_app() if os.environ.get("BENCH_DATABASE_URL") else None
