"""Focal-point pages: refer a survivor, follow the stage of what you referred."""
from __future__ import annotations

from flask import make_response, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, TextAreaField
from wtforms.validators import Length, Optional
from flask_babel import gettext as _
from flask_login import current_user
from marshmallow import ValidationError

from referral.audit.service import keep_only_refusals_after_failure
from referral.errors import DomainError, ValidationFailed, translate
from referral.extensions import db
from referral.reference.models import Area
from referral.referrals import services
from referral.referrals.views import submit_and_commit
from referral.referrals.schemas import Submission
from referral.security.permissions import Permission, requires
from referral.web.forms import LogoutForm
from referral.web.actions import run_page_action
from referral.web.referral_forms import ReferralForm, new_submission_key
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

    from referral.web.referral_forms import CHOOSE

    return [SelectChoice(*CHOOSE), *(SelectChoice(a.code, a.name) for a in seen)]


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
    if form.is_submitted() and request.form.get("switch_language"):
        # Another language was chosen (?lang= has set it): the same answers again, nothing sent, no errors.
        return _no_store(make_response(render_template("focal/new.html", form=form, problem=None,
                                                       logout_form=LogoutForm())))
    if form.validate_on_submit():
        try:
            data = Submission().load(form.to_submission())
            key = form.submission_key.data if services.SUBMISSION_KEY.fullmatch(form.submission_key.data or "") \
                else None
            case, _repeat = submit_and_commit(user, data, key)
            return redirect(url_for("web.referral_status", referral_id=case["id"], new=1))
        except ValidationError as err:
            problem = _("Some answers are not valid. Please check the form.")
            _at_fields(form, err.messages if isinstance(err.messages, dict) else {}, schema=True)
        except DomainError as err:
            if keep_only_refusals_after_failure(db.session):
                db.session.commit()
            problem = err.translated() if err.status < 500 else _("Something went wrong.")
            _at_fields(form, err.fields, schema=False)
            if err.code == "submission_key_reused":
                form.submission_key.data = new_submission_key()  # sent again, these answers are a new referral
                problem = _("This form was already sent once with other answers. Press “Send referral” again "
                            "to send these answers as a new referral.")
    elif form.is_submitted() and set(form.errors) - {"csrf_token"}:
        problem = _("Some answers are not valid. Please check the form.")  # a long form: say so at the top
    status = 200 if not form.is_submitted() else 422
    return _no_store(make_response(render_template("focal/new.html", form=form, problem=problem,
                                                   logout_form=LogoutForm()), status))


# Where the service's answer about a part of the submission is shown on the form.
_FIELDS = {("area",): "area", ("survivor", "phone"): "phone", ("survivor", "age_group"): "age_group",
           ("incident", "date"): "incident_date", ("survivor", "safe_contact", "method"): "contact_method"}


def _at_fields(form: ReferralForm, messages: dict, *, schema: bool) -> None:  # type: ignore[type-arg]
    """Each message the form has a field for, at that field too, in the reader's language. The service's
    messages are marked for translation; the schema's are English, so a plain sentence stands for them."""
    for path, name in _FIELDS.items():
        found: object = messages
        for key in path:
            found = found.get(key) if isinstance(found, dict) else None
        if not isinstance(found, list) or not found:
            continue
        if not schema:
            texts = [translate(m) for m in found]
        elif name == "phone" and any("Needed when" in str(m) for m in found):
            texts = [_("Give her phone number for contact by phone or SMS.")]
        elif name == "phone":
            texts = [_("Give the number in international form, e.g. +996555123456.")]
        elif name == "incident_date":
            texts = [_("Write the date as year-month-day, e.g. 2026-11-20.")]
        else:
            texts = [_("Answer this question.")]
        getattr(form, name).errors = texts


@web.get("/referrals/<referral_id>")
@requires(Permission.REFERRAL_READ)
def referral_status(referral_id: str):  # type: ignore[no-untyped-def]
    body = services.read_status(db.session, current_user._get_current_object(), referral_id)
    db.session.commit()
    return _no_store(make_response(render_template("focal/status.html", case=body, form=FocalActionForm(),
                                                   logout_form=LogoutForm())))


class FocalActionForm(FlaskForm):
    text = TextAreaField(_l("More information"), validators=[Optional(), Length(max=5000)])
    # Withdrawing stops all work on the case and its button sits under "Add information": a tap alone
    # must not do it.
    confirm_withdraw = BooleanField(_l("Yes, she asked me to withdraw it"))


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

    def withdraw(user, form):  # type: ignore[no-untyped-def]
        if not form.confirm_withdraw.data:
            raise ValidationFailed(_("Nothing was withdrawn: tick the box to confirm that she asked for it."))
        workflow.withdraw(db.session, user, referral_id)

    return _focal_act(referral_id, withdraw)
