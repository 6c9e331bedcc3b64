"""Factories for reference data and accounts. All data is synthetic."""
from __future__ import annotations

import itertools
from typing import Any

import factory
from factory.alchemy import SQLAlchemyModelFactory

from referral.accounts.auth import set_totp_secret
from referral.accounts.models import Gender, Role, User
from referral.extensions import db
from referral.reference.models import Area, AreaKind, Organisation, OrganisationKind, OrganisationService, Unit
from referral.security.passwords import hash_password

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


class Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "flush"


class AreaFactory(Base):
    class Meta:
        model = Area

    code = factory.Sequence(lambda n: f"T-A{n}")
    name = factory.Sequence(lambda n: f"Test area {n}")
    kind = AreaKind.district


class UnitFactory(Base):
    class Meta:
        model = Unit

    code = factory.Sequence(lambda n: f"T-U{n}")
    name = factory.Sequence(lambda n: f"Test unit {n}")
    areas = factory.LazyFunction(lambda: [AreaFactory()])


class OrganisationFactory(Base):
    class Meta:
        model = Organisation

    code = factory.Sequence(lambda n: f"T-O{n}")
    name = factory.Sequence(lambda n: f"Test organisation {n}")
    kind = OrganisationKind.womens_group
    areas = factory.LazyFunction(lambda: [AreaFactory()])

    @factory.post_generation
    def service_types(self, create: bool, extracted: list[str] | None, **kwargs: Any) -> None:
        for service in extracted or []:
            self.services.append(OrganisationService(service_type=service))


def make_user(role: str | Role = Role.officer, *, password: str = PASSWORD, unit: Unit | None = None,
              organisation: Organisation | None = None, totp: bool | None = None, **fields: Any) -> User:
    """A flushed user; ``user.totp_secret_plain`` holds its TOTP secret for the test to make codes."""
    role = Role(role)
    if role in (Role.officer, Role.supervisor) and unit is None:
        unit = UnitFactory()
    if role in (Role.focal_point, Role.service_provider) and organisation is None:
        kind = OrganisationKind.womens_group if role is Role.focal_point else OrganisationKind.provider
        organisation = OrganisationFactory(kind=kind)
    n = next(_seq)
    user = User(
        email=fields.pop("email", f"user{n}-{role.value}@test.amanat.example"),
        name=fields.pop("name", f"Test {role.value} {n}"),
        role=role, unit=unit, organisation=organisation,
        gender=fields.pop("gender", Gender.female),
        password_hash=hash_password(password, "fast-tests"),
        **fields,
    )
    db.session.add(user)
    db.session.flush()
    user.totp_secret_plain = set_totp_secret(user) if (role.reads_case_content if totp is None else totp) else None
    db.session.flush()
    return user
