"""Focal-point pages: refer a survivor, follow the stage of what you referred."""
from __future__ import annotations

from flask import make_response, redirect, render_template, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import TextAreaField
from wtforms.validators import Length, Optional
from flask_babel import gettext as _
from flask_login import current_user
from marshmallow import ValidationError

from referral.errors import DomainError, ValidationFailed, translate
from referral.extensions import db
from referral.reference.models import Area
from referral.referrals import services
from referral.referrals.schemas import Submission
from referral.security.permissions import Permission, requires
from referral.web.forms import LogoutForm
from referral.web.actions import run_page_action
from referral.web.referral_forms import ReferralForm
from referral.web.views import web


def _area_choices(user) -> list:  # type: ignore[no-untyped-def]
    """The organisation's areas and everything below them, for the place question."""
    seen: list[Area] = []
    stack = list(user.organisation.areas) if user.organisation else []
    while stack:
        area = stack.pop(0)
        if area not in seen:
            seen.append(area)
            stack.extend(sorted(area.children, key=lambda a: a.code))
    from wtforms import SelectChoice

    return [SelectChoice(a.code, a.name) for a in seen]


def _no_store(response):  # type: ignore[no-untyped-def]
    response.headers["Cache-Control"] = "no-store"
    return response


@web.route("/referrals/new", methods=["GET", "POST"])
@requires(Permission.REFERRAL_SUBMIT)
def new_referral():  # type: ignore[no-untyped-def]
    user = current_user._get_current_object()
    form = ReferralForm()
    form.area.choices = _area_choices(user)
    problem = None
    if form.validate_on_submit():
        try:
            data = Submission().load(form.to_submission())
            referral = services.create_referral(db.session, user, data)
            db.session.commit()
            return redirect(url_for("web.referral_status", referral_id=referral.id, new=1))
        except ValidationError as err:
            problem = _("Some answers are not valid. Please check the form.")
            survivor = err.messages.get("survivor") if isinstance(err.messages, dict) else None
            if isinstance(survivor, dict) and "phone" in survivor:
                form.phone.errors = [_("Give her phone number for contact by phone or SMS.")]
        except DomainError as err:
            db.session.rollback()
            problem = err.translated() if err.status < 500 else _("Something went wrong.")
            survivor = err.fields.get("survivor")
            if isinstance(survivor, dict) and survivor.get("phone"):  # say it at the field too
                form.phone.errors = [translate(m if isinstance(m, str) else str(m)) for m in survivor["phone"]]
    status = 200 if not form.is_submitted() else 422
    return _no_store(make_response(render_template("focal/new.html", form=form, problem=problem,
                                                   logout_form=LogoutForm()), status))


@web.get("/referrals/<referral_id>")
@requires(Permission.REFERRAL_READ)
def referral_status(referral_id: str):  # type: ignore[no-untyped-def]
    body = services.read_status(db.session, current_user._get_current_object(), referral_id)
    db.session.commit()
    return _no_store(make_response(render_template("focal/status.html", case=body, form=FocalActionForm(),
                                                   logout_form=LogoutForm())))


class FocalActionForm(FlaskForm):
    text = TextAreaField(_l("More information"), validators=[Optional(), Length(max=5000)])


def _focal_act(referral_id: str, call):  # type: ignore[no-untyped-def]
    form = FocalActionForm()
    run_page_action(form, lambda user: call(user, form))
    return redirect(url_for("web.referral_status", referral_id=referral_id))


@web.post("/referrals/<referral_id>/information")
@requires(Permission.REFERRAL_ADD_INFORMATION)
def referral_add_information(referral_id: str):  # type: ignore[no-untyped-def]
    def add(user, form):  # type: ignore[no-untyped-def]
        if not (form.text.data or "").strip():
            raise ValidationFailed(_("Write the information first."))
        services.add_information(db.session, user, referral_id, form.text.data.strip())

    return _focal_act(referral_id, add)


@web.post("/referrals/<referral_id>/withdraw")
@requires(Permission.REFERRAL_WITHDRAW)
def referral_withdraw(referral_id: str):  # type: ignore[no-untyped-def]
    from referral.referrals import workflow

    return _focal_act(referral_id, lambda user, form: workflow.withdraw(db.session, user, referral_id))
