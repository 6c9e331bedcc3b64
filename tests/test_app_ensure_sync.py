"""AmanatFlask.ensure_sync: Flask's answer for each registered callable, asked once, in a bounded cache."""
from __future__ import annotations

import flask.app
import pytest

from referral import AmanatFlask


@pytest.fixture()
def asked(monkeypatch):  # type: ignore[no-untyped-def]
    """Every callable Flask asks ``iscoroutinefunction`` of."""
    seen: list[object] = []
    original = flask.app.iscoroutinefunction

    def counting(func):  # type: ignore[no-untyped-def]
        seen.append(func)
        return original(func)

    monkeypatch.setattr(flask.app, "iscoroutinefunction", counting)
    return seen


def test_a_sync_callable_is_given_back_and_asked_about_once(app, asked):
    def hook() -> None:
        return None

    assert isinstance(app, AmanatFlask)
    assert app.ensure_sync(hook) is hook and app.ensure_sync(hook) is hook
    assert asked.count(hook) == 1


def test_a_request_asks_nothing_again(app, client, asked):
    client.get("/healthz")
    asked.clear()
    assert client.get("/healthz").status_code == 200
    assert asked == []


def test_a_coroutine_function_gets_what_flask_gives_it(app):
    async def view() -> None:
        return None

    try:
        flask.Flask.ensure_sync(app, view)
    except RuntimeError:  # Flask without its async extra refuses it, every time
        for _ in range(2):
            with pytest.raises(RuntimeError):
                app.ensure_sync(view)
        return
    wrapped = app.ensure_sync(view)
    assert wrapped is not view and app.ensure_sync(view) is wrapped


def test_the_cache_is_bounded_and_unhashable_callables_still_work(app, monkeypatch, asked):
    monkeypatch.setattr(app, "SYNC_CACHE_SIZE", len(app._ensured) + 2)
    monkeypatch.setattr(app, "_ensured", dict(app._ensured))
    hooks = [lambda n=n: n for n in range(5)]
    for hook in hooks * 2:
        assert app.ensure_sync(hook) is hook
    assert len(app._ensured) == app.SYNC_CACHE_SIZE
    assert [asked.count(h) for h in hooks] == [1, 1, 2, 2, 2]  # past the bound: asked afresh, as Flask does

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self) -> None:
            return None

    handler = Unhashable()
    assert app.ensure_sync(handler) is handler and app.ensure_sync(handler) is handler
