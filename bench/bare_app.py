"""The bare stack Amanat is measured against: Flask + Flask-SQLAlchemy on PostgreSQL, no security.

One endpoint inserts the request body (about 2 KB) as a row, one reads a row
back as JSON. It lives in bench/ only and is never part of the product.

``/secure/...`` is the floor of any secure version of the same two calls, for
context in the report (not a goal): a bearer token looked up by its SHA-256, the
body sealed under a new per-row AES-256-GCM key wrapped by a key-encryption key,
and one hash-chained audit row appended in a single statement, committed with the
change. No validation, no routing, no permissions, no timeline.
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
    header = request.headers.get("Authorization", "")
    digest = hashlib.sha256(header.removeprefix("Bearer ").encode()).digest()
    user_id = db.session.execute(text("SELECT user_id FROM bare_tokens WHERE token_hash = :h"), {"h": digest}).scalar()
    if user_id is None:
        abort(401)
    return user_id


def _audit(user_id: int, action: str, row_id: int) -> None:
    db.session.execute(_CHAIN, {"body": f'{{"actor":{user_id},"action":"{action}","row":{row_id}}}'.encode()})


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["BENCH_DATABASE_URL"]
    db.init_app(app)

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
        key, nonce = os.urandom(32), os.urandom(12)
        key_nonce = os.urandom(12)
        row = BareSealedRow(kind="referral", wrapped_key=key_nonce + KEK.encrypt(key_nonce, key, None),
                            body=nonce + AESGCM(key).encrypt(nonce, request.get_data(), None))
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
        key = KEK.decrypt(row.wrapped_key[:12], row.wrapped_key[12:], None)
        body = AESGCM(key).decrypt(row.body[:12], row.body[12:], None).decode()
        _audit(user_id, "read", row.id)
        db.session.commit()
        return jsonify(id=row.id, kind=row.kind, body=body)

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
