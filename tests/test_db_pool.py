"""Pooled connections are pinged before use only after sitting idle (referral.extensions.install_idle_ping)."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from referral.extensions import install_idle_ping

pytestmark = pytest.mark.postgres


def terminate(url: str, pid: int) -> None:
    """End a backend from another connection, as a database restart or a dropped link would."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        for _ in range(100):  # the backend is gone once the server no longer lists it
            if not conn.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).first():
                break
            time.sleep(0.02)
    admin.dispose()


@pytest.mark.parametrize("idle_seconds", [0, 3600])
def test_a_connection_lost_while_idle_is_replaced_only_once_it_has_idled_past_the_threshold(committed_app,
                                                                                            idle_seconds):
    url = committed_app.config["SQLALCHEMY_DATABASE_URI"]
    engine = create_engine(url, pool_size=1, max_overflow=0)
    install_idle_ping(engine, idle_seconds)
    try:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        terminate(url, first)
        time.sleep(0.01)
        if idle_seconds == 0:
            # Idle past the threshold: pinged, found dead and replaced before the caller saw it.
            with engine.connect() as conn:
                assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != first
        else:
            # Back in the pool a moment ago: used without a ping, so the first statement meets the loss and
            # the pool throws the connection away; the next caller gets a new one.
            with pytest.raises(OperationalError) as failed, engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            assert failed.value.connection_invalidated
            with engine.connect() as conn:
                assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != first
    finally:
        engine.dispose()


def test_the_apps_engine_replaces_a_connection_lost_while_idle(committed_app, monkeypatch):
    """create_app installs the idle ping on its engine: a connection that sat in the pool past the threshold
    (the clock moved on) and died meanwhile is replaced before use."""
    import referral.extensions as extensions
    from referral.extensions import db

    assert committed_app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("pool_pre_ping") is False
    assert committed_app.config["DB_PING_AFTER_IDLE_SECONDS"] == 5
    with committed_app.app_context():
        engine = db.engine
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        terminate(committed_app.config["SQLALCHEMY_DATABASE_URI"], first)
        later = time.monotonic() + 6
        monkeypatch.setattr(extensions.time, "monotonic", lambda: later)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != first
