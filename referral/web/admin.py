"""Admin pages: accounts, reference data (a unit's routing mode), courses and certifications.

Thin: the same services as the admin API, the admin as explicit actor, one commit. No case content
here, and no password or TOTP secret: a new account (or a reset authenticator) gets a one-time set-up
link for its holder, shown once in the body of the answer that made it (``no-store``), never in a URL
or a flashed message.
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from flask import flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from marshmallow import ValidationError as SchemaError
from marshmallow import validate as schema_validate
from wtforms import EmailField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from referral.accounts import services as accounts
from referral.accounts.enrolment import IssuedLink
from referral.accounts.models import EnrolmentKind
from referral.accounts.schemas import UserOut
from referral.accounts.views import enrolment_url
from referral.audit.service import keep_only_refusals_after_failure
from referral.errors import DomainError, NotFound, ValidationFailed, translate
from referral.extensions import db
from referral.i18n import LANGUAGE_NAMES
from referral.reference import services as reference
from referral.reference.models import RoutingMode
from referral.reference.views import area_out, organisation_out, unit_out
from referral.security.permissions import Permission, requires
from referral.standards import services as standards
from referral.web.actions import run_page_action
from referral.web.forms import CsrfForm
from referral.web.labels import ROLE_NAMES
from referral.web.referral_forms import choices
from referral.web.views import web

PER_PAGE = 20
AREAS_PER_PAGE = 100
COURSES_PER_PAGE = 100  # the certification form offers the courses listed on the page
GENDER_NAMES = {"female": _l("Female"), "male": _l("Male"), "other": _l("Other"), "unspecified": _l("Not stated")}
REQUIREMENT_NAMES = {"all": _l("Every case"), "child": _l("Cases with a child survivor"),
                     "none": _l("No case (recorded only)")}
# Native names need no translation; kk and tk are account languages the interface does not have.
ACCOUNT_LANGUAGES = {**LANGUAGE_NAMES, "kk": "Қазақша", "tk": "Türkmençe"}
CHECK_FORM = _l("Some answers are not valid. Please check the form.")
REQUIRED = _l("This is required.")
TOO_LONG = _l("This is too long.")
_user_out = UserOut()


def _actor():  # type: ignore[no-untyped-def]
    return current_user._get_current_object()


def _page_arg(name: str) -> int:
    raw = request.args.get(name, "1")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) <= 1_000_000 else 1


def page_url(name: str, number: int) -> str:
    """This page with one page number changed, keeping its filters."""
    args = request.args.to_dict()
    args[name] = str(number)
    return request.path + "?" + urlencode(args)


def _email(form: FlaskForm, field: Any) -> None:
    try:
        schema_validate.Email()((field.data or "").strip())
    except SchemaError:
        raise ValidationError(_("Give a valid e-mail address.")) from None


def _months(form: FlaskForm, field: Any) -> None:
    raw = (field.data or "").strip()
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 240):
        raise ValidationError(_("Give a whole number of months from 1 to 240."))


def _iso_date(form: FlaskForm, field: Any) -> None:
    try:
        field.parsed = dt.date.fromisoformat((field.data or "").strip())
    except ValueError:
        field.parsed = None
    if field.parsed is None or field.parsed.year < 2000:
        raise ValidationError(_("Give the date as YYYY-MM-DD, e.g. 2025-03-31."))


class UserForm(FlaskForm):
    email = EmailField(_l("E-mail"), validators=[DataRequired(REQUIRED), Length(max=254, message=TOO_LONG), _email])
    name = StringField(_l("Name"), validators=[DataRequired(REQUIRED), Length(max=200, message=TOO_LONG)])
    role = SelectField(_l("Role"), choices=choices(*ROLE_NAMES.items()), default="officer")
    unit = StringField(_l("Unit code (officers and supervisors)"), validators=[Length(max=64, message=TOO_LONG)])
    org = StringField(_l("Organisation code (focal points and service providers)"),
                      validators=[Length(max=64, message=TOO_LONG)])
    gender = SelectField(_l("Gender"), choices=choices(*GENDER_NAMES.items()), default="unspecified")
    languages = SelectMultipleField(_l("Languages"), widget=ListWidget(prefix_label=False),
                                    option_widget=CheckboxInput(),
                                    choices=choices(*((c, f"{n} ({c})") for c, n in ACCOUNT_LANGUAGES.items())))
    phone = StringField(_l("Phone in international form, e.g. +996555123456"),
                        validators=[Length(max=32, message=TOO_LONG)])

    def new_user(self) -> accounts.NewUser:
        text = {name: (self[name].data or "").strip() for name in ("email", "name", "unit", "org", "phone")}
        return accounts.NewUser(email=text["email"], name=text["name"], role=self.role.data,
                                unit=text["unit"] or None, org=text["org"] or None,
                                gender=self.gender.data, languages=list(self.languages.data or []),
                                phone=text["phone"] or None)


class CourseForm(FlaskForm):
    code = StringField(_l("Course code"), validators=[DataRequired(REQUIRED), Regexp(
        r"^[A-Z0-9][A-Z0-9-]{0,63}$", message=_l("Use capital letters, digits and dashes, e.g. GBV-CORE."))])
    name = StringField(_l("Course name"), validators=[DataRequired(REQUIRED), Length(max=200, message=TOO_LONG)])
    validity_months = StringField(_l("Valid for (months; empty for the default)"), validators=[Optional(), _months],
                                  render_kw={"inputmode": "numeric"})
    required_for = SelectField(_l("Needed to accept"), choices=choices(*REQUIREMENT_NAMES.items()), default="none")


class CertificationForm(FlaskForm):
    email = EmailField(_l("E-mail of the officer or supervisor"),
                       validators=[DataRequired(REQUIRED), Length(max=254, message=TOO_LONG), _email])
    course = SelectField(_l("Course"), validators=[DataRequired(REQUIRED)])
    completed = StringField(_l("Completed on (YYYY-MM-DD)"), validators=[DataRequired(REQUIRED), _iso_date],
                            render_kw={"type": "date"})


def _failed() -> None:
    """Undo the failed change; keep only its refusals' audit events."""
    if keep_only_refusals_after_failure(db.session):
        db.session.commit()


def _show_errors(form: FlaskForm, err: DomainError) -> str:
    """Put the service's field errors on the form's fields; say what fits no field above the form."""
    unplaced = [] if err.fields else [err.translated(with_fields=False)]
    for name, messages in err.fields.items():
        if name in form._fields and isinstance(messages, list):
            form[name].errors = [*form[name].errors, *(translate(m) for m in messages)]
        else:
            unplaced.append(err.translated(with_fields=False))
    return " ".join(dict.fromkeys([str(CHECK_FORM), *unplaced]))


def _render(template: str, status: int = 200, **context: Any) -> Any:
    response = make_response(render_template(template, page_url=page_url, **context), status)
    response.headers["Cache-Control"] = "no-store"  # account lists and one-time secrets stay out of caches
    return response


# -- accounts -----------------------------------------------------------------------

def _users_page(form: UserForm, status: int = 200, problem: str | None = None):  # type: ignore[no-untyped-def]
    role, page = request.args.get("role") or None, _page_arg("page")
    bad_role = role is not None and role not in ROLE_NAMES
    if bad_role:  # an unknown role shows nothing rather than everyone
        users, total, status = [], 0, 422
    else:
        found, total = accounts.list_users(_actor(), page=page, per_page=PER_PAGE, role=role)
        users = _user_out.dump(found, many=True)
        db.session.commit()
    return _render("admin/users.html", status, form=form, problem=problem, users=users, total=total, page=page,
                   per_page=PER_PAGE, role=role, role_names=ROLE_NAMES, me=_actor().id,
                   filter_error=_("Choose a role from the list.") if bad_role else None)


def _link_page(link: IssuedLink, email: str, *, created: bool = False):  # type: ignore[no-untyped-def]
    return _render("admin/enrolment_link.html", url=enrolment_url(link), email=email, created=created,
                   authenticator=link.kind is EnrolmentKind.authenticator, expires_at=link.expires_at)


@web.route("/admin/users", methods=["GET", "POST"])
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_users():  # type: ignore[no-untyped-def]
    form = UserForm()
    if request.method == "GET":
        return _users_page(form)
    if not form.validate_on_submit():
        return _users_page(form, 422, str(CHECK_FORM))
    try:
        user, link = accounts.invite_user(_actor(), form.new_user())
        email = user.email
        db.session.commit()
    except DomainError as err:  # field errors (422) or a taken e-mail (409)
        _failed()
        return _users_page(form, err.status, _show_errors(form, err))
    return _link_page(link, email, created=True)


@web.post("/admin/users/<int:user_id>/deactivate")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_user_deactivate(user_id: int):  # type: ignore[no-untyped-def]
    run_page_action(CsrfForm(), lambda actor: accounts.deactivate_user(actor, user_id))
    return redirect(url_for("web.admin_users"))


@web.post("/admin/users/<int:user_id>/unlock")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_user_unlock(user_id: int):  # type: ignore[no-untyped-def]
    run_page_action(CsrfForm(), lambda actor: accounts.unlock_user(actor, user_id))
    return redirect(url_for("web.admin_users"))


def _issue_link_page(issue):  # type: ignore[no-untyped-def]
    """Run ``issue(actor) -> (user, link)`` as a page action; show the link, or go back to the list."""
    issued: dict[str, Any] = {}

    def run(actor):  # type: ignore[no-untyped-def]
        user, issued["link"] = issue(actor)
        issued["email"] = user.email

    run_page_action(CsrfForm(), run)
    if "link" not in issued:  # refused: the reason is flashed on the list
        return redirect(url_for("web.admin_users"))
    return _link_page(issued["link"], issued["email"])


@web.post("/admin/users/<int:user_id>/reset-totp")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_user_reset_totp(user_id: int):  # type: ignore[no-untyped-def]
    return _issue_link_page(lambda actor: accounts.reset_totp(actor, user_id))


@web.post("/admin/users/<int:user_id>/enrolment")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_user_reissue_enrolment(user_id: int):  # type: ignore[no-untyped-def]
    return _issue_link_page(lambda actor: accounts.reissue_link(actor, user_id))


# -- reference data -------------------------------------------------------------------

def _nest(pairs: list[tuple[dict[str, Any], int]]) -> list[dict[str, Any]]:
    """Depth-first (area, depth) pairs → nested nodes, so the page can show the tree as nested lists."""
    roots: list[dict[str, Any]] = []
    stack: list[tuple[dict[str, Any], int]] = []
    for area, depth in pairs:
        node = {**area, "children": []}
        while stack and stack[-1][1] >= depth:
            stack.pop()
        (stack[-1][0]["children"] if stack else roots).append(node)
        stack.append((node, depth))
    return roots


@web.get("/admin/reference")
@requires(Permission.ADMIN_REFERENCE_MANAGE)
def admin_reference():  # type: ignore[no-untyped-def]
    actor, pages = _actor(), {name: _page_arg(name) for name in ("areas_page", "units_page", "orgs_page")}
    areas, area_total = reference.list_areas(db.session, actor, page=pages["areas_page"], per_page=AREAS_PER_PAGE)
    units, unit_total = reference.list_units(db.session, actor, page=pages["units_page"], per_page=PER_PAGE)
    orgs, org_total = reference.list_organisations(db.session, actor, page=pages["orgs_page"], per_page=PER_PAGE)
    tree = _nest([(area_out(a, d), d) for a, d in areas])
    units_out, orgs_out = [unit_out(u) for u in units], [organisation_out(o) for o in orgs]
    db.session.commit()
    return _render("admin/reference.html", tree=tree, units=units_out, orgs=orgs_out, pages=pages,
                   totals={"areas_page": area_total, "units_page": unit_total, "orgs_page": org_total},
                   sizes={"areas_page": AREAS_PER_PAGE, "units_page": PER_PAGE, "orgs_page": PER_PAGE})


@web.post("/admin/reference/units/<unit_code>/routing")
@requires(Permission.ADMIN_REFERENCE_MANAGE)
def admin_unit_routing(unit_code: str):  # type: ignore[no-untyped-def]
    mode = request.form.get("routing", "")
    if mode not in {m.value for m in RoutingMode}:
        flash(_("Choose direct or pool routing."))
    else:
        run_page_action(CsrfForm(), lambda actor: reference.set_routing_mode(db.session, actor, unit_code, mode))
    return redirect(url_for("web.admin_reference"))


# -- courses and certifications -----------------------------------------------------------

def _course_rows(page: int) -> tuple[list[dict[str, Any]], int]:
    courses, total = standards.list_courses(db.session, _actor(), page=page, per_page=COURSES_PER_PAGE)
    return [{"code": c.code, "name": c.name, "validity_months": str(c.validity_months),
             "required_for": c.required_for.value} for c in courses], total


def _courses_page(course_form: CourseForm | None = None, cert_form: CertificationForm | None = None,
                  status: int = 200, problem: str | None = None, listed: Any = None):  # type: ignore[no-untyped-def]
    page = _page_arg("page")
    rows, total = listed or _course_rows(page)
    db.session.commit()
    editing = next((r for r in rows if r["code"] == request.args.get("edit")), None)
    if course_form is None:
        course_form = CourseForm(formdata=None, data=editing or {})
    if cert_form is None:
        cert_form = CertificationForm(formdata=None)
    cert_form.course.choices = choices(*((r["code"], f"{r['code']} · {r['name']}") for r in rows))
    return _render("admin/courses.html", status, courses=rows, total=total, page=page, per_page=COURSES_PER_PAGE,
                   course_form=course_form, cert_form=cert_form, problem=problem, editing=editing,
                   requirement_names=REQUIREMENT_NAMES)


@web.get("/admin/courses")
@requires(Permission.TRAINING_CERTIFICATION_RECORD)
def admin_courses():  # type: ignore[no-untyped-def]
    return _courses_page()


@web.post("/admin/courses")
@requires(Permission.TRAINING_CERTIFICATION_RECORD)
def admin_save_course():  # type: ignore[no-untyped-def]
    form = CourseForm()
    if not form.validate_on_submit():
        return _courses_page(course_form=form, status=422, problem=str(CHECK_FORM))
    months = (form.validity_months.data or "").strip()
    _course, created = standards.save_course(db.session, _actor(), {
        "code": form.code.data, "name": form.name.data.strip(), "validity_months": int(months) if months else None,
        "required_for": form.required_for.data})
    db.session.commit()
    flash(_("Course created.") if created else _("Course updated."))
    return redirect(url_for("web.admin_courses"))


@web.post("/admin/certifications")
@requires(Permission.TRAINING_CERTIFICATION_RECORD)
def admin_record_certification():  # type: ignore[no-untyped-def]
    form, listed = CertificationForm(), _course_rows(1)
    form.course.choices = choices(*((r["code"], r["code"]) for r in listed[0]))
    if not form.validate_on_submit():
        return _courses_page(cert_form=form, status=422, listed=listed, problem=str(CHECK_FORM))
    try:
        cert = standards.record_certification(_actor(), form.email.data, form.course.data, form.completed.parsed)
        expires = cert.expires_on.isoformat()
        db.session.commit()
    except DomainError as err:
        _failed()
        if isinstance(err, NotFound):  # the course was checked against the list, so the account is what is missing
            err = ValidationFailed(fields={"email": [_("No account has this e-mail.")]})
        return _courses_page(cert_form=form, status=err.status, problem=_show_errors(form, err))
    flash(_("Certification recorded; valid until %(date)s.", date=expires))
    return redirect(url_for("web.admin_courses"))
