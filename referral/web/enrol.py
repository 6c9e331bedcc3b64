"""The account holder's set-up page (``/enrol/<token>``): public, reached only with a one-time link.

Thin: the rules are in referral.accounts.enrolment. Every answer is ``no-store`` (it may show a TOTP
secret); an unusable link gets one plain refusal, whatever was wrong with it. The secret shown is tied
to this browser by a random value in its session (see the service).
"""
from __future__ import annotations

import secrets
from typing import Any

from flask import current_app, make_response, render_template, request, session
from flask_babel import gettext as _

from referral.accounts import enrolment
from referral.accounts.models import EnrolmentKind
from referral.extensions import db
from referral.security.permissions import public
from referral.security.totp import provisioning_uri
from referral.web.forms import EnrolForm
from referral.web.views import password_problem, web

BROWSER_KEY = "enrol_key"


def _browser_key() -> str:
    key = session.get(BROWSER_KEY)
    if not isinstance(key, str) or len(key) < 16:
        key = session[BROWSER_KEY] = secrets.token_urlsafe(16)
    return key


def _problem(field: str, code: str) -> str:
    """The service's problem codes in the reader's language."""
    if field != "otp":
        return password_problem(code)
    words = {
        ("otp", "wrong"): _("This code does not match. Check the time on your phone and enter the newest code."),
        ("otp", "stale"): _("This page was opened again somewhere else, so the key changed. Add the key shown "
                            "now to your app and enter its code."),
    }
    return words[(field, code)]


def _page(template: str, status: int = 200, **context: Any):  # type: ignore[no-untyped-def]
    response = make_response(render_template(template, **context), status)
    response.headers["Cache-Control"] = "no-store"  # a TOTP secret may be on it
    return response


def _refused():  # type: ignore[no-untyped-def]
    db.session.commit()  # the denied event
    return _page("enrol_refused.html", 404)


def _shape_problems(form: EnrolForm) -> bool:
    """Field errors that need no account: lengths, and the two new passwords differing."""
    ok = form.validate()
    if (form.password.data or "") != (form.password_again.data or ""):
        form.password_again.errors = [*form.password_again.errors, _("The two passwords are not the same.")]
        ok = False
    return not ok


@web.route("/enrol/<token>", methods=["GET", "POST"])
@public
def enrol(token: str):  # type: ignore[no-untyped-def]
    form, key, status = EnrolForm(), _browser_key(), 200
    if request.method == "POST":  # the CSRF check has already passed
        status = 422
        if not _shape_problems(form):
            try:
                user = enrolment.complete(token, key, password=form.password.data or "",
                                          current_password=form.current_password.data or "",
                                          code=form.otp.data or "")
                db.session.commit()
                return _page("enrol_done.html", email=user.email, totp=user.requires_totp)
            except enrolment.LinkRefused:
                return _refused()
            except enrolment.EnrolmentRefused as err:
                db.session.commit()  # the denied event, and a wrong current password's count towards the lockout
                for field, codes in err.problems.items():
                    form[field].errors = [_problem(field, code) for code in codes]
    form.otp.data = ""  # a code is good for one try: the form never offers it back
    try:
        shown = enrolment.open_page(token, key)
    except enrolment.LinkRefused:
        return _refused()
    row, secret = shown.enrolment, shown.secret
    context = {"email": row.user.email, "new_account": row.kind is EnrolmentKind.account, "secret": secret,
               "expires_at": row.expires_at}
    db.session.commit()
    uri = provisioning_uri(secret, context["email"], current_app.config["TOTP_ISSUER"]) if secret else None
    return _page("enrol.html", status, form=form, uri=uri, **context)
