"""Where the rate limits count (SPEC §7, §10): Redis shared by every app server, memory without it,
memory again when Redis is set but down, and nothing at all when switched off.

What each endpoint's budget is and how a refusal looks are proved in test_asvs.py (V2.4.1, V6.3.1).
"""
from __future__ import annotations

import logging
import socket

import pytest
import redis
from limits.storage import MemoryStorage, RedisStorage

from referral.security import limits
from tests.factories import PASSWORD


def attempts(client, email, count, password="nope"):
    return [client.post("/api/v1/auth/tokens", json={"email": email, "password": password}).status_code
            for _ in range(count)]


def budget(spec: str) -> int:
    return min(int(part.split("/")[0]) for part in spec.split(";"))


@pytest.mark.redis
def test_with_a_redis_url_every_app_server_counts_in_the_same_redis(limited_app, redis_url, redis_prefix,
                                                                    make_user):
    """Two app servers on one Redis share each budget: attempts on either count for both."""
    first = limited_app(REDIS_URL=redis_url, RATELIMIT_KEY_PREFIX=redis_prefix)
    second = limited_app(REDIS_URL=redis_url, RATELIMIT_KEY_PREFIX=redis_prefix)
    assert isinstance(first.extensions[limits.EXTENSION_KEY].storage, RedisStorage)
    focal = make_user("focal_point")
    allowed = budget(limits.LOGIN_PER_ACCOUNT)
    half = allowed // 2
    assert attempts(first.test_client(), focal.email, half) == [401] * half
    assert attempts(second.test_client(), focal.email, allowed - half) == [401] * (allowed - half)
    assert attempts(first.test_client(), focal.email, 1, PASSWORD) == [429]
    assert attempts(second.test_client(), focal.email, 1, PASSWORD) == [429]

    server = redis.Redis.from_url(redis_url)
    keys = [key.decode() for key in server.scan_iter(match=f"*{redis_prefix}*")]
    assert keys, "nothing was counted in Redis"
    # Storage keys name neither the e-mail nor its local part: accounts are keyed by a keyed hash.
    local_part = focal.email.split("@")[0]
    assert not any(focal.email in key or local_part in key for key in keys), keys
    for key in keys:
        values = server.lrange(key, 0, -1) if server.type(key) == b"list" else [server.get(key) or b""]
        assert not any(local_part.encode() in value for value in values)
    server.close()


@pytest.mark.redis
def test_each_test_prefix_is_its_own_budget(limited_app, redis_url, redis_prefix):
    """Deployments (and tests) sharing one Redis keep apart by key prefix."""
    ghost = "ghost@test.amanat.example"
    spent = limited_app(REDIS_URL=redis_url, RATELIMIT_KEY_PREFIX=redis_prefix)
    allowed = budget(limits.LOGIN_PER_ACCOUNT)
    assert attempts(spent.test_client(), ghost, allowed + 1)[-1] == 429
    fresh = limited_app(REDIS_URL=redis_url, RATELIMIT_KEY_PREFIX=redis_prefix + "-other")
    try:
        assert attempts(fresh.test_client(), ghost, 1) == [401]
    finally:
        server = redis.Redis.from_url(redis_url)
        for key in server.scan_iter(match=f"*{redis_prefix}-other*"):
            server.delete(key)
        server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_redis_falls_back_to_the_same_limits_in_memory(limited_app, make_user, caplog):
    """Redis configured but down: requests are still answered (no 500) and still limited, by each
    process from its own memory; the fall-back is logged (docs/decisions.md, "Rate limits")."""
    down = limited_app(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    client = down.test_client()
    focal = make_user("focal_point")
    allowed = budget(limits.LOGIN_PER_ACCOUNT)
    with caplog.at_level(logging.WARNING, logger="flask-limiter"):
        assert attempts(client, focal.email, allowed) == [401] * allowed
        refused = client.post("/api/v1/auth/tokens", json={"email": focal.email, "password": PASSWORD})
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert any("falling back to in-memory" in record.getMessage() for record in caplog.records)
    other = make_user("focal_point")
    assert attempts(client, other.email, 1, PASSWORD) == [201]


def test_without_a_redis_url_limits_count_in_memory(limited_app):
    assert isinstance(limited_app().extensions[limits.EXTENSION_KEY].storage, MemoryStorage)


def test_switched_off_there_is_no_limiter_at_all(limited_app, make_user):
    """REFERRAL_RATELIMIT_ENABLED=false (benchmarks, the test suite): no limiter, no wrapped views."""
    off = limited_app(RATELIMIT_ENABLED=False)
    assert limits.EXTENSION_KEY not in off.extensions and "limiter" not in off.extensions
    focal = make_user("focal_point")
    statuses = attempts(off.test_client(), focal.email, budget(limits.LOGIN_PER_ACCOUNT) + 5)
    assert 429 not in statuses


def test_the_setting_reads_the_environment(monkeypatch):
    from config.settings import load_settings

    monkeypatch.setenv("REFERRAL_RATELIMIT_ENABLED", "false")
    monkeypatch.setenv("REFERRAL_REDIS_URL", "redis://cache.internal:6379/2")
    settings = load_settings({"ENV_NAME": "development"})
    assert settings["RATELIMIT_ENABLED"] is False and settings["REDIS_URL"] == "redis://cache.internal:6379/2"
