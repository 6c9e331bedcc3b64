"""Flask extensions, created unbound and initialised in ``create_app``."""
from __future__ import annotations

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine

from referral.db import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate(compare_type=True, render_as_batch=True)
login_manager = LoginManager()
csrf = CSRFProtect()


@event.listens_for(Engine, "connect")
def _sqlite_connect(dbapi_connection, connection_record):  # type: ignore[no-untyped-def]
    """Make SQLite behave: enforce foreign keys and let SQLAlchemy own transactions.

    pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT, which
    the per-test rollback and nested transactions rely on (SQLAlchemy's
    documented pysqlite recipe).
    """
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.isolation_level = None
        # The audit chain's link function; PostgreSQL gets the same one from a migration.
        dbapi_connection.create_function("amanat_chain", 3, _chain_link, deterministic=True)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _chain_link(prev: bytes, seq: int, body: bytes) -> bytes:
    from referral.audit.chain import link_hash

    return link_hash(bytes(prev), int(seq), bytes(body))


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
    # IMMEDIATE takes the write lock up front. Nearly every request appends to
    # the audit chain; a deferred transaction that reads the head and upgrades
    # to a writer later could fork the chain or deadlock under concurrency.
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
