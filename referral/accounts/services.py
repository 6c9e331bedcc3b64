"""Account management. ``actor`` is the admin acting, or None for the operator's CLI.

Admins invite: the account is made without a password anyone knows, and its holder sets it up with a
one-time link (referral.accounts.enrolment), so no admin can sign in as an account they made (SPEC §1).
Only the operator on the server, who holds the keyring anyway, sets a password and receives the TOTP
secret (``users create``, SPEC §11; ``demo seed``).
"""
from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

import phonenumbers
from flask import current_app
from sqlalchemy import func, select

from referral.accounts.auth import normalise_email, revoke_all_credentials, set_totp_secret
from referral.accounts.enrolment import IssuedLink, issue_link
from referral.accounts.models import EnrolmentKind, Gender, Role, User
from referral.audit.service import record
from referral.db import utcnow
from referral.errors import N_, Conflict, Forbidden, Message, ValidationFailed
from referral.extensions import db
from referral.reference.models import Organisation, OrganisationKind, Unit
from referral.security import passwords
from referral.security.permissions import Permission, check_may_manage_user, require

LANGUAGES = ("ky", "ru", "tg", "uz", "en", "kk", "tk")


@dataclass
class NewUser:
    email: str
    name: str
    role: str
    password: str | None = None  # the operator's CLI only; admins' invitations have none
    unit: str | None = None
    org: str | None = None
    gender: str = Gender.unspecified.value
    languages: list[str] = field(default_factory=list)
    phone: str | None = None


def normalise_phone(raw: str) -> str:
    """E.164 or a ValueError; numbers are stored only in this form."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise ValueError(N_("Give the number in international form, e.g. +996555123456.")) from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(N_("This is not a valid phone number."))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _authorise(actor: User | None) -> None:
    if actor is not None:
        require(actor, Permission.ADMIN_USERS_MANAGE)


def _new_account(data: NewUser, *, password: str | None, actor: User | None = None) -> User:
    """Check ``data`` and add the account (flushed). Without a password it waits for its holder.

    Officers and supervisors belong to a unit; focal points to a women's group;
    service providers to a provider organisation; oversight and admin to neither.
    """
    errors: dict[str, list[str]] = {}
    email = normalise_email(data.email)
    try:
        role = Role(data.role)
    except ValueError:
        errors["role"] = [Message(N_("Must be one of: %(choices)s."), choices=", ".join(r.value for r in Role))]
        role = None
    try:
        gender = Gender(data.gender or Gender.unspecified.value)
    except ValueError:
        errors["gender"] = [Message(N_("Must be one of: %(choices)s."), choices=", ".join(g.value for g in Gender))]
        gender = Gender.unspecified
    if not data.name or not data.name.strip():
        errors["name"] = [N_("A name is required.")]
    if password is not None:
        problems = passwords.password_problems(password, email=email)
        if problems:
            errors["password"] = problems
    bad_languages = [code for code in data.languages if code not in LANGUAGES]
    if bad_languages:
        errors["languages"] = [Message(N_("Unknown language codes: %(codes)s; use %(languages)s."),
                                       codes=", ".join(bad_languages), languages=", ".join(LANGUAGES))]
    phone = None
    if data.phone:
        try:
            phone = normalise_phone(data.phone)
        except ValueError as exc:
            errors["phone"] = [str(exc)]

    unit = org = None
    if data.unit:
        unit = db.session.scalar(select(Unit).where(Unit.code == data.unit))
        if unit is None:
            errors["unit"] = [N_("No unit has this code.")]
    if data.org:
        org = db.session.scalar(select(Organisation).where(Organisation.code == data.org))
        if org is None:
            errors["org"] = [N_("No organisation has this code.")]
    if role in (Role.officer, Role.supervisor):
        if not data.unit:
            errors["unit"] = [N_("Officers and supervisors belong to a unit.")]
        if data.org:
            errors["org"] = [N_("Police accounts do not belong to an organisation.")]
    elif role in (Role.focal_point, Role.service_provider):
        wanted = OrganisationKind.womens_group if role is Role.focal_point else OrganisationKind.provider
        if not data.org or (org is not None and org.kind is not wanted):
            errors["org"] = [N_("A focal point belongs to a women's group.") if role is Role.focal_point
                             else N_("A service provider belongs to a provider organisation.")]
        if data.unit:
            errors["unit"] = [N_("Only police accounts belong to a unit.")]
    elif role in (Role.oversight, Role.admin) and (data.unit or data.org):
        errors.setdefault("unit", []).append(N_("Oversight and admin accounts belong to no unit or organisation."))

    if db.session.scalar(select(func.count()).select_from(User).where(User.email == email)):
        raise Conflict(N_("An account with this e-mail already exists."), fields={"email": [N_("Already in use.")]})
    # A deactivated account lets its number go (a women's group's shared phone passes to the next focal
    # point); a number in use by an active account stays refused.
    holder = db.session.scalar(select(User).where(User.phone == phone)) if phone else None
    if holder is not None and holder.active:
        errors["phone"] = [N_("Another account already uses this number.")]
    if errors:
        raise ValidationFailed(fields=errors)
    if holder is not None:
        holder.phone = None
        db.session.flush()  # before the new account takes it: the number is unique
        from referral.audit.service import record

        record(db.session, actor, "user.phone_released", object_type="user", object_id=holder.id,
               reason="number taken by a new account; this one is deactivated", fields=["phone"])

    assert role is not None
    profile = current_app.config.get("ARGON2_PROFILE", "default")
    user = User(
        email=email, name=data.name.strip(), role=role, unit=unit, organisation=org, gender=gender,
        languages=",".join(dict.fromkeys(data.languages)), phone=phone,
        # Until its holder chooses one, the account's password is a random one nobody is told: a real
        # hash, so a sign-in attempt costs the same time as for any other account.
        password_hash=passwords.hash_password(password if password is not None else secrets.token_urlsafe(32),
                                              profile),
        enrolment_pending=password is None,
    )
    db.session.add(user)
    db.session.flush()
    return user


_CREATED_FIELDS = ["email", "name", "role", "unit", "org", "gender", "languages", "phone"]


def create_user(actor: User | None, data: NewUser) -> tuple[User, str | None]:
    """The operator's ``users create`` (and ``demo seed``): an account with the password given, ready to
    use; returns its TOTP secret (None for focal points) for the operator to hand over (SPEC §11).

    Admins may not: they invite (``invite_user``) and never learn a password or a secret.
    """
    if actor is not None:
        raise Forbidden(N_("Administrators invite the account holder to set up the account."))
    user = _new_account(data, password=data.password or "")
    # Focal points never read case content and often share a basic phone:
    # password only. Every other role enrols TOTP from the start.
    secret = set_totp_secret(user) if user.role.reads_case_content else None
    record(db.session, actor, "user.create", object_type="user", object_id=user.id, fields=_CREATED_FIELDS)
    return user, secret


def invite_user(actor: User, data: NewUser, *, now: dt.datetime | None = None) -> tuple[User, IssuedLink]:
    """An admin creates an account that cannot be used until its holder sets it up with the link returned.

    The admin chooses no password and is shown no TOTP secret (SPEC §1: admins never read case content,
    not even through an account they made).
    """
    _authorise(actor)
    if data.password is not None:
        raise ValidationFailed(fields={"password": [N_("The account holder chooses the password.")]})
    user = _new_account(data, password=None, actor=actor)
    record(db.session, actor, "user.create", object_type="user", object_id=user.id, fields=_CREATED_FIELDS,
           reason="set-up link for the holder")
    return user, issue_link(actor, user, EnrolmentKind.account, now=now)


def get_user(actor: User, user_id: int, *, action: str = "user.read") -> User:
    from referral.audit.service import DENIED
    from referral.errors import DomainError

    try:
        # Ids beyond the column's range cannot exist; asking the database would be an error, not a miss.
        found = db.session.get(User, user_id) if 0 < user_id < 2**31 else None
        user = check_may_manage_user(actor, found)
    except DomainError:
        record(db.session, actor, action, object_type="user", object_id=user_id, outcome=DENIED)
        raise
    record(db.session, actor, action, object_type="user", object_id=user.id)
    return user


def list_users(actor: User, *, page: int, per_page: int, role: str | None = None) -> tuple[list[User], int]:
    require(actor, Permission.ADMIN_USERS_MANAGE)
    record(db.session, actor, "user.list", object_type="user", reason=f"role={role or 'any'}")
    query = select(User)
    if role:
        query = query.where(User.role == Role(role))
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = db.session.scalars(query.order_by(User.id).limit(per_page).offset((page - 1) * per_page)).all()
    return list(items), total


def deactivate_user(actor: User, user_id: int, *, now: dt.datetime | None = None) -> User:
    """Deactivation ends every session and token at once. Admins cannot lock themselves out."""
    user = get_user(actor, user_id, action="user.deactivate")
    if user.id == actor.id:
        raise Conflict(N_("You cannot deactivate your own account."))
    now = now or utcnow()
    if user.active:
        user.active = False
        user.deactivated_at = now
        revoke_all_credentials(user, now=now)
    return user


def unlock_user(actor: User, user_id: int) -> User:
    user = get_user(actor, user_id, action="user.unlock")
    from referral.accounts.auth import clear_failures

    clear_failures(user)
    return user


def reset_totp(actor: User, user_id: int, *, now: dt.datetime | None = None) -> tuple[User, IssuedLink]:
    """A lost phone: the old secret is removed at once, sessions and tokens end, and the holder sets up a
    new authenticator with the link returned (giving their password), so the admin never sees the secret."""
    user = get_user(actor, user_id, action="user.totp_reset")
    if not user.requires_totp:
        raise Conflict(N_("Focal-point accounts sign in without TOTP."))
    _check_may_issue(user)
    if user.enrolment_pending:
        raise Conflict(N_("This account is not set up yet: issue a new set-up link instead."))
    now = now or utcnow()
    user.totp_secret_sealed = None
    user.totp_last_counter = None
    revoke_all_credentials(user, now=now)
    return user, issue_link(actor, user, EnrolmentKind.authenticator, now=now)


def reissue_link(actor: User, user_id: int, *, now: dt.datetime | None = None) -> tuple[User, IssuedLink]:
    """A new set-up link for an account its holder has not set up (the first one lost or expired);
    the earlier link stops working."""
    user = get_user(actor, user_id, action="user.enrolment.reissue")
    _check_may_issue(user)
    if not user.enrolment_pending:
        raise Conflict(N_("This account is set up already; to replace its authenticator, reset it."))
    return user, issue_link(actor, user, EnrolmentKind.account, now=now)


def _check_may_issue(user: User) -> None:
    if not user.active:
        raise Conflict(N_("This account is deactivated."))
