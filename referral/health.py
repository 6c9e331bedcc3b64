"""Liveness for load balancers: 200 only when the database answers."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from referral.extensions import db
from referral.security.permissions import public

health = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@health.get("/healthz")
@public
def healthz():  # type: ignore[no-untyped-def]
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.error("healthz: database unreachable (%s)", type(exc).__name__)
        db.session.rollback()
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok")
