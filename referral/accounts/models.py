"""Users, server-side web sessions, personal API tokens and enrolment links (SPEC §1, §7)."""
from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from referral.db import Base, created_at, intpk, name
from referral.reference.models import Organisation, Unit, enum_column


class Role(enum.StrEnum):
    focal_point = "focal_point"
    officer = "officer"
    supervisor = "supervisor"
    service_provider = "service_provider"
    oversight = "oversight"
    admin = "admin"

    @property
    def reads_case_content(self) -> bool:
        """Roles that can ever see case content need TOTP and the short session rules."""
        return self is not Role.focal_point


class Gender(enum.StrEnum):
    female = "female"
    male = "male"
    other = "other"
    unspecified = "unspecified"


class User(Base):
    __tablename__ = "users"

    id: Mapped[intpk]
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[name]
    role: Mapped[Role] = mapped_column(enum_column(Role, "role"))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    organisation_id: Mapped[int | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="RESTRICT"), index=True
    )
    gender: Mapped[Gender] = mapped_column(enum_column(Gender, "gender"), default=Gender.unspecified)
    # Comma-separated ISO 639-1 codes, e.g. "ky,ru".
    languages: Mapped[str] = mapped_column(String(64), default="")
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    # The TOTP secret is sealed by referral.security.secretbox (AES-256-GCM).
    totp_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_last_counter: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Made by an admin and not yet set up by its holder (referral.accounts.enrolment): no password
    # anyone knows, no TOTP secret, and sign-in refused until the holder completes the link.
    enrolment_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)  # failures within the last lockout window
    failed_window_started_at: Mapped[dt.datetime | None]  # the oldest of them
    # Their times (ISO, UTC, space-separated; at most the threshold): the window slides, so five failures
    # in any fifteen minutes lock, not only five after the first one.
    failure_times: Mapped[str | None] = mapped_column(Text)
    locked_until: Mapped[dt.datetime | None]
    created_at: Mapped[created_at]
    deactivated_at: Mapped[dt.datetime | None]

    unit: Mapped[Unit | None] = relationship()
    organisation: Mapped[Organisation | None] = relationship()

    # Flask-Login's protocol; identity itself comes from a session or token row.
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return self.active

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)

    @property
    def language_list(self) -> list[str]:
        return [code for code in self.languages.split(",") if code]

    @property
    def requires_totp(self) -> bool:
        return self.role.reads_case_content


class UserSession(Base):
    """A server-side web session; the cookie holds only a random pointer to it."""

    __tablename__ = "user_sessions"

    id: Mapped[intpk]
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[created_at]
    last_seen_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A personal bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[intpk]
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()


class EnrolmentKind(enum.StrEnum):
    account = "account"              # a new account: the holder chooses the password (and scans TOTP)
    authenticator = "authenticator"  # after a TOTP reset: the holder gives the password and scans anew


class Enrolment(Base):
    """A one-time link with which the account holder sets up what the admin must never know.

    Only the link's SHA-256 is stored. ``pending_secret`` is the TOTP secret last shown, encrypted
    under a key derived from the link and a value kept in the holder's browser session, so neither
    the database nor anyone else who opens the link can read it (referral.accounts.enrolment).
    """

    __tablename__ = "enrolments"

    id: Mapped[intpk]
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[EnrolmentKind] = mapped_column(enum_column(EnrolmentKind, "enrolment_kind"))
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[created_at]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    pending_secret: Mapped[bytes | None] = mapped_column(LargeBinary)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
