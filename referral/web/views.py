"""Login, logout and the landing page of each role. Thin: the rules live in services."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, g, make_response, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user

from referral.accounts import auth
from referral.accounts.identity import SESSION_KEY
from referral.extensions import db
from referral.security.permissions import Permission, public, requires
from referral.web.forms import LoginForm, LogoutForm, PasswordForm

web = Blueprint("web", __name__, template_folder="templates", static_folder="static",
                static_url_path="/static/web")


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths, so the login page cannot be used to send people elsewhere."""
    if not target:
        return url_for("web.home")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("web.home")
    return target


@web.route("/login", methods=["GET", "POST"])
@public
def login():  # type: ignore[no-untyped-def]
    form = LoginForm()
    if form.validate_on_submit():
        try:
            user = auth.authenticate(form.email.data or "", form.password.data or "", form.otp.data)
        except auth.AuthFailed as exc:
            db.session.commit()  # keep the failure count: it drives the lockout
            form.password.errors = [exc.translated()]
            return render_template("login.html", form=form), 401
        earlier = session.get(SESSION_KEY)
        if isinstance(earlier, str):
            # Signing in again over a live sign-in (the same person, or another on a shared phone): the old
            # server-side session ends, not only this browser's pointer to it.
            auth.end_session(earlier)
        raw = auth.start_session(user)
        db.session.commit()
        lang = session.get("lang")
        session.clear()  # a new session after login: no fixation (the language choice stays)
        session[SESSION_KEY] = raw
        if lang:
            session["lang"] = lang
        return redirect(_safe_next(request.args.get("next")))
    status = 400 if request.method == "POST" else 200
    return render_template("login.html", form=form), status


@web.post("/logout")
@public
def logout():  # type: ignore[no-untyped-def]
    form = LogoutForm()
    pointer = session.get(SESSION_KEY)
    if form.validate_on_submit() and isinstance(pointer, str):
        auth.end_session(pointer)
        db.session.commit()
    session.clear()
    flash(_("You have signed out."))
    return redirect(url_for("web.login"))


@web.get("/session/alive")
@requires(Permission.ACCOUNT_SELF_READ)
def session_alive():  # type: ignore[no-untyped-def]
    """A long form asks this while someone types into it, and before it is sent (keep-alive.js): being
    signed in (any request touches the session, so typing counts as activity), who is (the script sends
    nothing when it is not the person who opened the form), and this session's CSRF token, which a form
    opened before signing in again elsewhere needs. Discloses nothing; not audited. Signed out, it
    redirects to the login page like every page, and the script reads that as ended."""
    from flask_wtf.csrf import generate_csrf

    response = make_response({"csrf_token": generate_csrf(), "user": current_user.id})
    response.headers["Cache-Control"] = "no-store"
    return response


@web.get("/")
@requires(Permission.ACCOUNT_SELF_READ)
def home():  # type: ignore[no-untyped-def]
    referrals: list = []
    offers: list = []
    service_referrals: list = []
    user = current_user._get_current_object()
    if user.role.value == "service_provider":
        from referral.services_dir.services import list_for_provider

        service_referrals, _count = list_for_provider(db.session, user, page=1, per_page=100)
        db.session.commit()
    board: dict = {}
    if user.role.value == "supervisor" and user.unit_id is not None:
        from referral.referrals.board import unit_board

        board = unit_board(db.session, user)
        db.session.commit()
    elif user.role.value in ("focal_point", "officer", "supervisor"):
        from referral.referrals.services import list_referrals

        referrals, _total = list_referrals(db.session, user, page=1, per_page=100)
        if user.role.value == "officer":
            from referral.web.police import offers_for

            offers = offers_for(user)
            offered = {o["id"] for o in offers}
            referrals = [r for r in referrals if r["id"] not in offered]
        db.session.commit()
    return render_template(f"home/{user.role.value}.html", logout_form=LogoutForm(), referrals=referrals,
                           offers=offers, service_referrals=service_referrals, board=board)


def password_problem(code: str) -> str:
    """A password problem code of the services, in the reader's language (here and on the set-up page)."""
    from referral.security.passwords import MAX_LENGTH, MIN_LENGTH

    words = {
        "too_short": _("Use at least %(count)s characters.", count=MIN_LENGTH),
        "too_long": _("Use at most %(count)s characters.", count=MAX_LENGTH),
        "too_common": _("This password is too common; choose another."),
        "is_email": _("Do not use your e-mail address as the password."),
        "wrong": _("This is not your current password."),
        "locked": _("Too many wrong passwords. Wait a few minutes and try again."),
        "unchanged": _("Choose a password different from the current one."),
    }
    return words[code]


@web.route("/account/password", methods=["GET", "POST"])
@requires(Permission.ACCOUNT_PASSWORD_CHANGE)
def change_password():  # type: ignore[no-untyped-def]
    """The signed-in holder changes their password; every other sign-in of the account ends."""
    form, status = PasswordForm(), 200
    if request.method == "POST":  # the CSRF check has already passed
        status = 422
        ok = form.validate()
        if (form.new_password.data or "") != (form.new_password_again.data or ""):
            form.new_password_again.errors = [*form.new_password_again.errors,
                                              _("The two passwords are not the same.")]
            ok = False
        if ok:
            try:
                auth.change_password(current_user._get_current_object(), form.current_password.data or "",
                                     form.new_password.data or "", keep=g.get("user_session"))
                db.session.commit()
                flash(_("Your password is changed. Every other sign-in to your account has ended."))
                return redirect(url_for("web.home"))
            except auth.PasswordChangeRefused as err:
                db.session.commit()  # the denied event, and a wrong password's count towards the lockout
                for field, codes in err.problems.items():
                    form[field].errors = [password_problem(code) for code in codes]
    response = make_response(render_template("account_password.html", form=form, logout_form=LogoutForm()), status)
    response.headers["Cache-Control"] = "no-store"
    return response
