"""Officer and supervisor pages: offers, the case page with its timeline and compliance, case work."""
from __future__ import annotations

import datetime as dt

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from referral.web.actions import run_page_action
from referral.extensions import db
from referral.referrals import services, workflow
from referral.referrals.board import reassign_candidates
from referral.referrals.models import Referral, parse_case_id
from referral.referrals.schemas import ACTION_TYPES
from referral.referrals.workflow_models import Offer, OfferStatus
from referral.security.permissions import CaseView, Permission, has_permission, may_work, requires
from referral.services_dir.services import SHAREABLE, providers_for
from referral.standards.services import read_compliance
from referral.web.forms import CsrfForm, LogoutForm
from referral.web.views import web

ORDER_ACTIONS = ("protection_order_issued", "protection_order_extended")
NOTE_LIMIT = 5000


def offers_for(user) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = db.session.execute(select(Offer, Referral).join(Referral, Referral.id == Offer.referral_id).where(
        Offer.officer_id == user.id, Offer.status == OfferStatus.open).order_by(Offer.deadline)).all()
    return [{"id": r.id, "reference": r.reference, "gbv_type": r.gbv_type, "flags": r.flag_list,
             "deadline": o.deadline} for o, r in rows]


def _case_extras(user, case: dict) -> dict:  # type: ignore[no-untyped-def]
    """Choices the page offers for work on a case the user may read in full: no case content here.

    The work forms show only to those the workflow lets work (oversight reading through break-glass
    sees the case, not the forms).
    """
    referral = db.session.get(Referral, parse_case_id(case["id"]))
    if referral is None or "survivor" not in case:
        return {"candidates": [], "providers": [], "may_work": False}
    providers = [{"value": f"{org.id}:{service.value}", "name": org.name, "service": service.value}
                 for org in providers_for(db.session, referral.area, None) for service in org.service_types]
    return {"candidates": reassign_candidates(db.session, user, referral), "providers": providers,
            "may_work": has_permission(user, Permission.REFERRAL_WORK)
            and may_work(user, referral, CaseView.CONTENT)}


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
    extras = _case_extras(user, case)
    db.session.commit()
    response = make_response(render_template(
        "police/case.html", case=case, compliance=compliance, form=CsrfForm(), logout_form=LogoutForm(),
        action_types=ACTION_TYPES, outcomes=workflow.CLOSE_OUTCOMES, reasons=workflow.DECLINE_REASONS,
        shareable=SHAREABLE, is_supervisor=user.role.value == "supervisor", **extras))
    response.headers["Cache-Control"] = "no-store"
    return response


def _act(referral_id: str, call):  # type: ignore[no-untyped-def]
    run_page_action(CsrfForm(), call)
    return redirect(url_for("web.case_page", referral_id=referral_id))


def _date(name: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(request.form.get(name, ""))
    except ValueError:
        return None


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
    note = (request.form.get("note") or "").strip() or None
    back = redirect(url_for("web.case_page", referral_id=referral_id))
    if kind not in ACTION_TYPES:
        flash(_("Choose what you did."))
        return back
    if note is not None and len(note) > NOTE_LIMIT:  # refused, never cut: a note must say what was written
        flash(_("The note is too long (at most 5,000 characters)."))
        return back
    data: dict = {"type": kind, "note": note}
    if kind in ORDER_ACTIONS:
        expires_on = _date("order_expires_on")
        issued_raw = request.form.get("order_issued_on", "").strip()
        issued_on = _date("order_issued_on")
        if expires_on is None or (issued_raw and issued_on is None):
            flash(_("Give the protection order's dates as YYYY-MM-DD."))
            return back
        data["protection_order"] = {"issued_on": issued_on, "expires_on": expires_on}
    return _act(referral_id, lambda user: workflow.add_action(db.session, user, referral_id, data))


@web.post("/cases/<referral_id>/close")
@requires(Permission.REFERRAL_WORK)
def case_close(referral_id: str):  # type: ignore[no-untyped-def]
    outcome = request.form.get("outcome", "")
    return _act(referral_id, lambda user: workflow.close(db.session, user, referral_id, outcome))


@web.post("/cases/<referral_id>/close/<decision>")
@requires(Permission.REFERRAL_REASSIGN)
def case_close_decision(referral_id: str, decision: str):  # type: ignore[no-untyped-def]
    if decision not in ("approve", "reject"):
        abort(404)
    return _act(referral_id, lambda user: workflow.decide_closure(db.session, user, referral_id,
                                                                   approve=decision == "approve"))


@web.post("/cases/<referral_id>/reassign")
@requires(Permission.REFERRAL_REASSIGN)
def case_reassign(referral_id: str):  # type: ignore[no-untyped-def]
    raw = request.form.get("officer_id", "")
    officer_id = int(raw) if raw.isdigit() and len(raw) < 10 else 0  # 0: the service says "not eligible"
    return _act(referral_id, lambda user: workflow.reassign(db.session, user, referral_id, officer_id))


@web.post("/cases/<referral_id>/service-referrals")
@requires(Permission.SERVICE_REFERRAL_CREATE)
def case_service_referral(referral_id: str):  # type: ignore[no-untyped-def]
    from referral.services_dir.services import create_service_referral

    provider, _sep, service_type = request.form.get("provider", "").partition(":")
    share = [p for p in request.form.getlist("share") if p in SHAREABLE]
    known = provider.isdigit() and len(provider) < 10
    # An unknown choice reaches the service as provider 0, which it refuses with a clear message.
    data = {"provider_id": int(provider) if known else 0, "service_type": service_type, "share": share}
    return _act(referral_id, lambda user: create_service_referral(db.session, user, referral_id, data))
