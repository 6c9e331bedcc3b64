"""Operations: JSON logs, Prometheus metrics and one access line per request.

``init_ops(app)`` is the one call ``create_app`` makes. Nothing here ever sees
case content: a request is described by its URL rule (``/api/v1/referrals/<referral_id>``),
never by its path, query or body.
"""
from __future__ import annotations

import time

from flask import Flask, Response, g, request, request_finished, request_started

from referral.ops.logs import configure_logging, log_access
from referral.ops.metrics import ops, observe_request

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"  # no URL rule matched: the raw path is never a label or a log field


def init_ops(app: Flask) -> None:
    configure_logging(app)
    app.register_blueprint(ops)
    # Signals, not before/after_request: request_started runs before every before_request hook (CSRF,
    # rate limits) and request_finished after every after_request hook, so refusals are timed and
    # counted with the status the client really got.
    request_started.connect(_started, app, weak=False)
    request_finished.connect(_finished, app, weak=False)


def _started(_sender: Flask, **_extra: object) -> None:
    g.ops_started = time.perf_counter()


def _finished(_sender: Flask, response: Response, **_extra: object) -> None:
    started = g.get("ops_started")
    duration = time.perf_counter() - started if started is not None else 0.0
    rule = request.url_rule.rule if request.url_rule is not None else UNMATCHED
    method = request.method if request.method in _METHODS else "OTHER"
    observe_request(rule, method, response.status_code, duration)
    log_access(rule=rule, endpoint=request.endpoint, method=method, status=response.status_code,
               duration=duration)
