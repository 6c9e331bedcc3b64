"""Prometheus metrics for operators at ``/metrics``: requests and latency by URL rule and status, the
outbox backlog, the offer queue and recorded compliance breaches.

Labels are URL rules, methods, status codes, outbox states and standard step codes: a fixed, small set
that never names a case, a reference or a person. The gauges are counted in the database when scraped
(read-only ``count(*)`` queries). With several gunicorn workers set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory before start: each worker then writes its counters there and any worker's scrape adds
them up (``config/gunicorn.py`` clears the directory at start and marks dead workers).

Access needs ``Authorization: Bearer <REFERRAL_METRICS_TOKEN>`` (compared in constant time); without
that setting the endpoint does not exist (404). See docs/decisions.md (Operations).
"""
from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError

from referral.db import utcnow
from referral.extensions import db
from referral.security.permissions import public

log = logging.getLogger(__name__)
ops = Blueprint("ops", __name__)

_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# This process's request metrics. In multiprocess mode prometheus_client writes them to files instead,
# and the scrape reads every worker's files; the process collector only makes sense for one process.
disable_created_metrics()  # the *_created series double the output and no dashboard reads them
REGISTRY = CollectorRegistry(auto_describe=True)
if not os.environ.get(_MULTIPROC_DIR):
    ProcessCollector(registry=REGISTRY)

LABELS = ("endpoint", "method", "status")
REQUESTS = Counter("amanat_http_requests", "HTTP requests answered, by URL rule, method and status.",
                   LABELS, registry=REGISTRY)
LATENCY = Histogram("amanat_http_request_duration_seconds",
                    "Time from the request's start to its response, by URL rule, method and status.",
                    LABELS, registry=REGISTRY,
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


def observe_request(rule: str, method: str, status: int, duration: float) -> None:
    labels = (rule, method, str(status))
    REQUESTS.labels(*labels).inc()
    LATENCY.labels(*labels).observe(duration)


def database_families(session: Any) -> Iterator[Metric]:
    """Queue depths and breaches, counted now. A database that does not answer gives ``up 0``, not a 500."""
    from referral.notify.models import MessageStatus, OutboxMessage
    from referral.referrals.workflow_models import Offer, OfferStatus
    from referral.standards.models import StepBreach

    now = utcnow()
    up = GaugeMetricFamily("amanat_database_up", "1 when the database answered this scrape's queries.")
    try:
        outbox = {status: (count, oldest) for status, count, oldest in session.execute(
            select(OutboxMessage.status, func.count(), func.min(OutboxMessage.created_at))
            .where(OutboxMessage.status.in_([MessageStatus.pending, MessageStatus.dead]))
            .group_by(OutboxMessage.status))}
        offers_open, offers_overdue = session.execute(
            select(func.count(), func.coalesce(func.sum(case((Offer.deadline < now, 1), else_=0)), 0))
            .where(Offer.status == OfferStatus.open)).one()
        breaches = session.execute(
            select(StepBreach.step_code, func.count()).group_by(StepBreach.step_code)
            .order_by(StepBreach.step_code)).all()
    except SQLAlchemyError as exc:
        session.rollback()
        log.error("metrics: database query failed (%s)", type(exc).__name__)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up

    backlog = GaugeMetricFamily("amanat_outbox_messages", "Outbox messages waiting (pending) or given up (dead).",
                                labels=["status"])
    oldest = GaugeMetricFamily("amanat_outbox_oldest_pending_seconds",
                               "Age of the oldest pending outbox message (0 when none waits).")
    for status in (MessageStatus.pending, MessageStatus.dead):
        backlog.add_metric([status.value], outbox.get(status, (0, None))[0])
    first = outbox.get(MessageStatus.pending, (0, None))[1]
    oldest.add_metric([], max(0.0, (now - _aware(first)).total_seconds()) if first is not None else 0.0)
    yield backlog
    yield oldest

    queue = GaugeMetricFamily("amanat_offers_open", "Offers waiting for an officer's answer (the offer queue).")
    queue.add_metric([], offers_open)
    yield queue
    overdue = GaugeMetricFamily("amanat_offers_overdue", "Open offers past their deadline, not yet expired by sla tick.")
    overdue.add_metric([], offers_overdue)
    yield overdue

    breached = GaugeMetricFamily("amanat_compliance_breaches",
                                 "Handling-standard steps recorded as breached by sla tick, by step.",
                                 labels=["step"])
    for step, count in breaches:
        breached.add_metric([step], count)
    yield breached


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


class _Scrape:
    """This scrape's metrics: the request metrics of this process (or of every worker), then the gauges."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def collect(self) -> Iterator[Metric]:
        if os.environ.get(_MULTIPROC_DIR):
            yield from MultiProcessCollector(None).collect()
        else:
            yield from REGISTRY.collect()
        yield from database_families(self.session)


def _operator() -> bool:
    from referral.accounts.identity import bearer_token

    token = current_app.config.get("METRICS_TOKEN")
    supplied = bearer_token(request)
    return bool(token) and supplied is not None and hmac.compare_digest(supplied.encode(), token.encode())


@ops.get("/metrics")
@public  # not a user's endpoint: the operator's scrape token below is its access rule
def metrics() -> Response:
    headers = {"Cache-Control": "no-store"}
    if not current_app.config.get("METRICS_TOKEN"):
        return Response("not found\n", 404, headers, mimetype="text/plain")
    if not _operator():
        log.warning("metrics: scrape refused (missing or wrong token)")
        return Response("unauthorised\n", 401, {**headers, "WWW-Authenticate": 'Bearer realm="metrics"'},
                        mimetype="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(db.session))
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))  # text 0.0.4 or OpenMetrics
    return Response(encode(registry), 200, headers, content_type=content_type)
