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


class LogoutForm(FlaskForm):
    pass


class CsrfForm(FlaskForm):
    """A button that changes state: the form carries only the CSRF token."""
