from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional


class LoginForm(FlaskForm):
    email = EmailField("E-mail", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    otp = StringField("Code from your authenticator app", validators=[Optional(), Length(max=16)],
                      render_kw={"inputmode": "numeric"})


class LogoutForm(FlaskForm):
    pass
