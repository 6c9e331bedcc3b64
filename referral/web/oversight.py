"""Oversight pages: the dashboard with SVG charts and the audit search (server-rendered)."""
from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from marshmallow import ValidationError

from referral.extensions import db
from referral.oversight import services
from referral.oversight.charts import bar_chart
from referral.security.permissions import Permission, requires
from referral.web.actions import run_page_action
from referral.web.forms import CsrfForm, LogoutForm
from referral.web.views import web


@web.get("/oversight")
@requires(Permission.AUDIT_READ)
def oversight_dashboard():  # type: ignore[no-untyped-def]
    data = services.dashboard(db.session, current_user._get_current_object())
    db.session.commit()
    charts = [
        bar_chart(_("Open cases by stage"), data["open_by_stage"]),
        bar_chart(_("Median hours to accept, by unit"), data["median_hours_to_accept"], unit=" h"),
        bar_chart(_("Step breaches by unit and month"), data["breaches_by_unit_month"]),
        bar_chart(_("Coverage gaps by unit"), data["coverage_gaps"]),
    ]
    return render_template("oversight/dashboard.html", charts=charts, anomalies=data["anomalies"],
                           logout_form=LogoutForm())


@web.get("/oversight/audit")
@requires(Permission.AUDIT_READ)
def oversight_audit():  # type: ignore[no-untyped-def]
    from referral.oversight.views import AuditSearchArgs

    fields = set(AuditSearchArgs().fields)
    raw = {k: v for k, v in request.args.items() if v and k in fields}  # ?lang= and strays are not filters
    errors = {}
    try:
        args = AuditSearchArgs().load(raw)
    except ValidationError as err:
        errors, args = err.messages, None
    page, per_page = (args.pop("page"), args.pop("per_page")) if args else (1, 20)
    items, total = [], 0
    if args is not None:  # an invalid filter shows nothing rather than everything
        items, total = services.search_audit(db.session, current_user._get_current_object(), args,
                                             page=page, per_page=per_page)
        db.session.commit()
    return render_template("oversight/audit.html", items=items, total=total, page=page, per_page=per_page,
                           filters=raw, errors=errors, logout_form=LogoutForm()), (422 if errors else 200)


@web.get("/oversight/statistics")
@requires(Permission.STATS_READ)
def oversight_statistics():  # type: ignore[no-untyped-def]
    from referral.audit.service import record
    from referral.db import utcnow
    from referral.oversight.statistics import deidentified

    report = deidentified(db.session, since=None, until=None, now=utcnow())
    record(db.session, current_user._get_current_object(), "stats.deidentified", object_type="statistics")
    db.session.commit()
    return render_template("oversight/statistics.html", report=report, logout_form=LogoutForm())


@web.get("/oversight/cases/<referral_id>/disclosures")
@requires(Permission.AUDIT_READ)
def oversight_disclosures(referral_id: str):  # type: ignore[no-untyped-def]
    from referral.web.admin import _page_arg, page_url

    page = _page_arg("page")
    actor = current_user._get_current_object()
    items, total = services.disclosures(db.session, actor, referral_id, page=page, per_page=DISCLOSURES_PER_PAGE)
    matches = services.match_counts(db.session, actor, referral_id)
    db.session.commit()
    response = render_template("oversight/disclosures.html", items=items, case_id=referral_id, page=page,
                               per_page=DISCLOSURES_PER_PAGE, total=total, page_url=page_url, matches=matches,
                               logout_form=LogoutForm())
    return response


DISCLOSURES_PER_PAGE = 100


@web.route("/oversight/break-glass", methods=["GET", "POST"])
@requires(Permission.BREAK_GLASS)
def oversight_break_glass():  # type: ignore[no-untyped-def]
    """Open time-limited access to one case with a justification; review other auditors' openings."""
    from referral.oversight.views import BreakGlassIn

    form, user = CsrfForm(), current_user._get_current_object()
    errors: dict = {}
    values = {"case_id": request.values.get("case_id", "")[:64], "justification": ""}
    if request.method == "POST":
        raw = {"case_id": request.form.get("case_id", "").strip(),
               "justification": request.form.get("justification", "").strip(),
               "hours": request.form.get("hours") or None}
        try:
            data = BreakGlassIn().load(raw)
        except ValidationError as err:
            errors = err.messages
            values = {"case_id": raw["case_id"][:64], "justification": ""}  # never echo a justification back
        else:
            granted: list = []
            hours = data["hours"] or current_app.config["BREAK_GLASS_DEFAULT_HOURS"]
            run_page_action(form, lambda actor: granted.append(services.open_break_glass(
                db.session, actor, data["case_id"], data["justification"], hours)))
            if granted:
                return redirect(url_for("web.case_page", referral_id=granted[0].referral_id))
            return redirect(url_for("web.oversight_break_glass"))
    queue = services.review_queue(db.session, user)
    db.session.commit()
    return render_template("oversight/break_glass.html", form=form, queue=queue, errors=errors, values=values,
                           me=user.id, logout_form=LogoutForm()), (422 if errors else 200)


@web.post("/oversight/break-glass/<int:grant_id>/review")
@requires(Permission.BREAK_GLASS)
def oversight_break_glass_review(grant_id: int):  # type: ignore[no-untyped-def]
    outcome = request.form.get("outcome", "")
    run_page_action(CsrfForm(), lambda actor: services.review_break_glass(db.session, actor, grant_id, outcome),
                    valid=outcome in ("justified", "unjustified"))
    return redirect(url_for("web.oversight_break_glass"))
