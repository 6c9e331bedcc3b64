"""Flask extensions, created unbound and initialised in ``create_app``."""
from __future__ import annotations

import time

from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

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


# psycopg parses a statement's placeholders in Python and caches the result only for statements up to 4,096
# bytes with up to 50 parameters (its private ``_queries`` limits); longer ones are parsed again on every
# execution. Amanat's hottest statements are longer, each built once with bind parameters: a submission's
# one INSERT of case, offer, message, consents and steps (up to about 230 parameters, 11 KB; session 13) and
# a full read's combined timeline (about 7 KB). Parsing them again cost 8 % of a submission's and 2.4 % of
# a read's instructions in the app (bench/profile_requests.py --instructions; session 12, before the
# consents and steps joined the INSERT). The cache keeps its size (128 statements), so at most 4 MB; an
# expanding IN of up to 512 values is cached too now, one entry for each number of values.
QUERY_CACHE_LIMITS = {"MAX_CACHED_STATEMENT_LENGTH": 32768, "MAX_CACHED_STATEMENT_PARAMS": 512}


def widen_query_cache(engine: Engine) -> None:
    """Let psycopg cache the parsing of statements up to ``QUERY_CACHE_LIMITS`` (never lowering them).

    psycopg's own names, pinned in requirements.txt: a version that moved them fails here at start-up
    and in tests/test_query_cache.py, rather than quietly parsing again (docs/decisions.md, session 12)."""
    if engine.dialect.driver != "psycopg":
        return
    from psycopg import _queries

    for name, value in QUERY_CACHE_LIMITS.items():
        current = getattr(_queries, name)  # AttributeError when psycopg no longer has it
        setattr(_queries, name, max(current, value))


def install_idle_ping(engine: Engine, idle_seconds: float) -> None:
    """Ping a pooled PostgreSQL connection before use only when it sat idle more than ``idle_seconds``.

    A connection returned to the pool a moment ago is used as it is (SQLAlchemy's ``pool_pre_ping`` pinged
    on every checkout: a round trip more on every request). One that waited longer, through a quiet spell
    in which the server may have restarted or a firewall dropped it, is pinged; a dead one is replaced
    before the request sees it (the pool retries the checkout on ``DisconnectionError``). A connection
    that dies within the window fails its next request, which the pool then replaces, with every other
    connection older than the failure (docs/decisions.md, session 9)."""
    if engine.dialect.name == "sqlite":
        return  # a file, not a server: nothing to lose while idle

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection, record):  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _taken(dbapi_connection, record, proxy):  # type: ignore[no-untyped-def]
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= idle_seconds:
            return  # new, or back in the pool a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's own error for a closed or broken connection
            raise DisconnectionError("a pooled connection was lost while idle") from exc


def describe_lazily(engine: Engine) -> None:
    """Give every psycopg connection of ``engine`` cursors that describe their results only on demand
    (``referral/pgcursor.py``; docs/decisions.md, session 13)."""
    if engine.dialect.driver != "psycopg":
        return
    from referral.pgcursor import LazyDescriptionCursor

    @event.listens_for(engine, "connect")
    def _connected(dbapi_connection, record):  # type: ignore[no-untyped-def]
        dbapi_connection.cursor_factory = LazyDescriptionCursor
