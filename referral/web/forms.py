from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional


class LoginForm(FlaskForm):
    email = EmailField(_l("E-mail"), validators=[DataRequired(), Length(max=254)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=1024)])
    otp = StringField(_l("Code from your authenticator app"), validators=[Optional(), Length(max=16)],
                      render_kw={"inputmode": "numeric"})


class PasswordForm(FlaskForm):
    """Changing one's own password; the service checks the rules and the current password."""

    current_password = PasswordField(_l("Your password"), validators=[Length(max=1024)],
                                     render_kw={"autocomplete": "current-password"})
    new_password = PasswordField(_l("New password (8 to 128 characters)"), validators=[Length(max=1024)],
                                 render_kw={"autocomplete": "new-password"})
    new_password_again = PasswordField(_l("New password again"), validators=[Length(max=1024)],
                                       render_kw={"autocomplete": "new-password"})


class LogoutForm(FlaskForm):
    pass


class CsrfForm(FlaskForm):
    """A button that changes state: the form carries only the CSRF token."""


class EnrolForm(FlaskForm):
    """The holder's set-up page. Which fields apply depends on the link; the service checks the rest."""

    password = PasswordField(_l("New password (8 to 128 characters)"), validators=[Length(max=1024)],
                             render_kw={"autocomplete": "new-password"})
    password_again = PasswordField(_l("New password again"), validators=[Length(max=1024)],
                                   render_kw={"autocomplete": "new-password"})
    current_password = PasswordField(_l("Your password"), validators=[Length(max=1024)],
                                     render_kw={"autocomplete": "current-password"})
    otp = StringField(_l("Code from your authenticator app"), validators=[Optional(), Length(max=16)],
                      render_kw={"inputmode": "numeric", "autocomplete": "one-time-code"})
