"""The bare stack Amanat is measured against: Flask + Flask-SQLAlchemy on PostgreSQL, no security.

One endpoint inserts the request body (about 2 KB) as a row, one reads a row
back as JSON. It lives in bench/ only and is never part of the product.
"""
from __future__ import annotations

import os

from flask import Flask, jsonify, request
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class BareRow(db.Model):  # type: ignore[name-defined]
    __tablename__ = "bare_rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    body: Mapped[bytes] = mapped_column(LargeBinary)


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

    with app.app_context():
        db.create_all()
    return app


app = create_app() if os.environ.get("BENCH_DATABASE_URL") else None
