"""Officer and supervisor pages: offers, the case page with its timeline and compliance, case work."""
from __future__ import annotations

from flask import flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from referral.web.actions import run_page_action
from referral.extensions import db
from referral.referrals import services, workflow
from referral.referrals.models import Referral
from referral.referrals.schemas import ACTION_TYPES
from referral.referrals.workflow_models import Offer, OfferStatus
from referral.security.permissions import Permission, requires
from referral.standards.services import read_compliance
from referral.web.forms import LogoutForm
from referral.web.views import web


class ActionForm(FlaskForm):
    pass


def offers_for(user) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = db.session.execute(select(Offer, Referral).join(Referral, Referral.id == Offer.referral_id).where(
        Offer.officer_id == user.id, Offer.status == OfferStatus.open).order_by(Offer.deadline)).all()
    return [{"id": r.id, "reference": r.reference, "gbv_type": r.gbv_type, "flags": r.flag_list,
             "deadline": o.deadline} for o, r in rows]


@web.get("/cases/<referral_id>")
@requires(Permission.REFERRAL_READ)
def case_page(referral_id: str):  # type: ignore[no-untyped-def]
    user = current_user._get_current_object()
    if user.role.value == "focal_point":  # focal points see the stage only, on their own page
        return redirect(url_for("web.referral_status", referral_id=referral_id))
    case = services.read_referral(db.session, user, referral_id)
    compliance = None
    if "survivor" in case:
        compliance = read_compliance(db.session, user, referral_id)
    db.session.commit()
    response = make_response(render_template(
        "police/case.html", case=case, compliance=compliance, form=ActionForm(), logout_form=LogoutForm(),
        action_types=ACTION_TYPES, outcomes=workflow.CLOSE_OUTCOMES, reasons=workflow.DECLINE_REASONS))
    response.headers["Cache-Control"] = "no-store"
    return response


def _act(referral_id: str, call):  # type: ignore[no-untyped-def]
    run_page_action(ActionForm(), call)
    return redirect(url_for("web.case_page", referral_id=referral_id))


@web.post("/cases/<referral_id>/accept")
@requires(Permission.REFERRAL_ACCEPT)
def case_accept(referral_id: str):  # type: ignore[no-untyped-def]
    return _act(referral_id, lambda user: workflow.accept(db.session, user, referral_id))


@web.post("/cases/<referral_id>/decline")
@requires(Permission.REFERRAL_ACCEPT)
def case_decline(referral_id: str):  # type: ignore[no-untyped-def]
    reason = request.form.get("reason", "")
    result = _act(referral_id, lambda user: workflow.decline(db.session, user, referral_id, reason))
    return redirect(url_for("web.home")) if request.form.get("reason") in workflow.DECLINE_REASONS else result


@web.post("/cases/<referral_id>/actions")
@requires(Permission.REFERRAL_WORK)
def case_action(referral_id: str):  # type: ignore[no-untyped-def]
    kind = request.form.get("type", "")
    note = (request.form.get("note") or "").strip()[:5000] or None
    if kind not in ACTION_TYPES:
        flash(_("Choose what you did."))
        return redirect(url_for("web.case_page", referral_id=referral_id))
    return _act(referral_id, lambda user: workflow.add_action(db.session, user, referral_id,
                                                               {"type": kind, "note": note}))


@web.post("/cases/<referral_id>/close")
@requires(Permission.REFERRAL_WORK)
def case_close(referral_id: str):  # type: ignore[no-untyped-def]
    outcome = request.form.get("outcome", "")
    return _act(referral_id, lambda user: workflow.close(db.session, user, referral_id, outcome))
