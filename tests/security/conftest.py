"""Apps with rate limits switched on, and the real Redis they can count in.

The suite's shared app has limits off (testing config). ``limited_app`` builds
another app on the same database and keyring; requests in it run inside the
test's transaction like any other, because ``db_session`` swaps the session
every app uses.

Redis tests need a server at ``REFERRAL_TEST_REDIS_URL`` (default
redis://127.0.0.1:6379/0). Without one they are skipped with a message saying
so, unless ``REFERRAL_REQUIRE_REDIS=1`` (CI), where that is a failure. Every test
counts under a key prefix of its own and deletes its keys afterwards.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask

from referral import create_app
from referral.extensions import db as _db
from tests.conftest import IsolatedClient, app_settings

REDIS_URL = os.environ.get("REFERRAL_TEST_REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0"


@pytest.fixture()
def limited_app(app: Flask, database_url: str, db_session, tmp_path) -> Iterator[Callable[..., Flask]]:  # type: ignore[no-untyped-def]
    """``limited_app(**settings)`` → a new app with rate limits on (memory storage unless told otherwise)."""
    built: list[Flask] = []

    def build(**overrides: object) -> Flask:
        settings = {**app_settings(database_url, tmp_path), "KEYRING_PATH": app.config["KEYRING_PATH"],
                    "RATELIMIT_ENABLED": True, "RATELIMIT_KEY_PREFIX": "t" + secrets.token_hex(6), **overrides}
        application = create_app(settings)
        application.test_client_class = IsolatedClient
        built.append(application)
        return application

    yield build
    for application in built:
        with application.app_context():
            _db.engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        message = f"needs Redis: none answers at {REDIS_URL} ({type(exc).__name__}); set REFERRAL_TEST_REDIS_URL"
        if os.environ.get("REFERRAL_REQUIRE_REDIS") == "1":
            pytest.fail(message + " (REFERRAL_REQUIRE_REDIS=1)")
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture()
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix used by this test only; its keys are deleted afterwards."""
    prefix = "amanat-test-" + secrets.token_hex(8)
    yield prefix
    server = redis.Redis.from_url(redis_url)
    keys = list(server.scan_iter(match=f"*{prefix}*", count=1000))
    if keys:
        server.delete(*keys)
    server.close()
