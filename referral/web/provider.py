"""Provider pages: incoming service referrals, only the fields the survivor agreed to share."""
from __future__ import annotations

from flask import make_response, redirect, render_template, request, url_for
from flask_login import current_user

from referral.web.actions import run_page_action
from referral.extensions import db
from referral.security.permissions import Permission, requires
from referral.services_dir import services
from referral.services_dir.models import ServiceOutcome
from referral.web.forms import CsrfForm, LogoutForm
from referral.web.views import web


@web.get("/service-referrals/<service_referral_id>")
@requires(Permission.SERVICE_REFERRAL_READ)
def service_referral_page(service_referral_id: str):  # type: ignore[no-untyped-def]
    body = services.read_for_provider(db.session, current_user._get_current_object(), service_referral_id)
    db.session.commit()
    response = make_response(render_template("provider/service_referral.html", sr=body, form=CsrfForm(),
                                             outcomes=[o.value for o in ServiceOutcome], logout_form=LogoutForm()))
    response.headers["Cache-Control"] = "no-store"
    return response


@web.post("/service-referrals/<service_referral_id>/<verb>")
@requires(Permission.SERVICE_REFERRAL_RESPOND)
def service_referral_respond(service_referral_id: str, verb: str):  # type: ignore[no-untyped-def]
    outcome = request.form.get("outcome") or None
    data = {"outcome": outcome if outcome in {o.value for o in ServiceOutcome} else None,
            "note": (request.form.get("note") or "").strip()[:5000] or None}
    run_page_action(CsrfForm(), lambda user: services.respond(db.session, user, service_referral_id, verb, data),
                    valid=verb in services.TRANSITIONS)
    return redirect(url_for("web.service_referral_page", service_referral_id=service_referral_id))
