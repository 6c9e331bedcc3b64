"""Shapes of account requests and answers. Shape only: no queries, no current user."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from referral.accounts.models import Gender, Role
from referral.api import PageArgs


class TokenRequest(Schema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    otp = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=16))


class PasswordChange(Schema):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    new_password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class TokenOut(Schema):
    token = fields.String()
    expires_at = fields.DateTime()


class UserCreate(Schema):
    """An admin's new account; a ``password`` field is refused as unknown."""

    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in Role]))
    # No password: the account holder chooses it with the set-up link (referral.accounts.enrolment).
    unit = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    org = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))
    gender = fields.String(load_default=Gender.unspecified.value, validate=validate.OneOf([g.value for g in Gender]))
    languages = fields.List(fields.String(validate=validate.Length(min=2, max=3)), load_default=list,
                            validate=validate.Length(max=10))
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=20))


class UserOut(Schema):
    """An account as admins and its owner see it: never the password hash or TOTP secret."""

    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.Function(lambda u: u.role.value)
    unit = fields.Function(lambda u: u.unit.code if u.unit else None)
    org = fields.Function(lambda u: u.organisation.code if u.organisation else None)
    gender = fields.Function(lambda u: u.gender.value)
    languages = fields.Function(lambda u: u.language_list)
    phone = fields.String()
    active = fields.Boolean()
    locked = fields.Method("_locked")
    totp_enrolled = fields.Function(lambda u: u.totp_secret_sealed is not None)
    enrolment_pending = fields.Boolean()
    created_at = fields.DateTime()

    def _locked(self, user):  # type: ignore[no-untyped-def]
        from referral.accounts.auth import is_locked
        from referral.db import utcnow

        return is_locked(user, utcnow())


class UserListArgs(PageArgs):
    role = fields.String(load_default=None, validate=validate.OneOf([r.value for r in Role]))
