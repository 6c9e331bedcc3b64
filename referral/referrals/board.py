"""The supervisor's unit board: escalations, closures waiting for approval, open cases (no case content)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from referral.accounts.models import Role, User
from referral.audit.service import record
from referral.db import local_today, utcnow
from referral.errors import N_, Forbidden
from referral.referrals import routing
from referral.referrals.models import Referral, Status
from referral.referrals.workflow_models import Offer, OfferStatus
from referral.security.permissions import Permission, case_view, require, supervises

OPEN = (Status.submitted, Status.offered, Status.declined, Status.escalated, Status.accepted, Status.in_progress)


def _row(referral: Referral) -> dict[str, Any]:
    officer = referral.assigned_officer
    return {"id": referral.id, "reference": referral.reference, "status": referral.status.value,
            "gbv_type": referral.gbv_type, "flags": referral.flag_list,
            "created_at": referral.created_at.isoformat(),
            "escalated_at": referral.escalated_at.isoformat() if referral.escalated_at else None,
            "officer": officer.name if officer else None,
            "closure_pending": referral.closure_requested_at is not None, "outcome_requested":
                referral.outcome if referral.closure_requested_at is not None else None}


def unit_board(session: Session, actor: User) -> dict[str, list[dict[str, Any]]]:
    """Open cases of the supervisor's unit, grouped by what needs the supervisor: codes and stages only."""
    require(actor, Permission.REFERRAL_REASSIGN)
    if actor.role is not Role.supervisor or actor.unit_id is None:
        raise Forbidden(N_("Only a unit supervisor has a unit board."))
    rows = session.scalars(select(Referral).where(Referral.unit_id == actor.unit_id, Referral.status.in_(OPEN))
                           .order_by(Referral.created_at, Referral.id)).all()
    board: dict[str, list[dict[str, Any]]] = {"escalated": [], "closure_pending": [], "open": []}
    for referral in rows:
        if referral.status is Status.escalated:
            board["escalated"].append(_row(referral))
        elif referral.closure_requested_at is not None:
            board["closure_pending"].append(_row(referral))
        else:
            board["open"].append(_row(referral))
    record(session, actor, "referral.list", object_type="referral",
           reason=f"unit board: {len(rows)} open cases")
    return board


def reassign_candidates(session: Session, actor: User, referral: Referral,
                        now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Officers the supervisor may offer this case to: eligible now, never one who declined or recused."""
    if referral.unit is None or not supervises(actor, referral, case_view(actor, referral)):
        return []
    if referral.status not in (Status.offered, Status.escalated, Status.accepted, Status.in_progress):
        return []
    now = now or utcnow()
    # Not those who declined or recused, nor the one who holds it or is being asked now.
    busy = routing.already_tried(session, referral) | set(session.scalars(select(Offer.officer_id).where(
        Offer.referral_id == referral.id, Offer.status == OfferStatus.open)))
    return [{"id": o.id, "name": o.name} for o in
            routing.eligible_officers(session, referral, referral.unit, today=local_today(now))
            if o.id not in busy and o.id != referral.assigned_officer_id]
