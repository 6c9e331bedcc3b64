"""Command line (SPEC §11): ``flask --app wsgi <group> <command>``."""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from config.settings import PROJECT_ROOT
from referral.errors import DomainError
from referral.extensions import db

DEMO_REFERENCE = PROJECT_ROOT / "config" / "reference" / "demo.yaml"


def _fail(err: DomainError) -> None:
    db.session.rollback()
    message = err.message
    for field, problems in (err.fields or {}).items():
        message += f"\n  {field}: {problems}"
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _load_reference_file(path: Path) -> dict[str, int]:
    from referral.reference.loader import load_reference, read_reference

    return dict(load_reference(read_reference(path),
                               default_validity_months=current_app.config["CERTIFICATE_VALIDITY_MONTHS"]))


reference_cli = AppGroup("reference", help="Reference data: areas, units, organisations, courses.")


@reference_cli.command("load")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def reference_load(path: Path) -> None:
    """Load reference YAML; loading the same file again changes nothing."""
    try:
        stats = _load_reference_file(path)
    except DomainError as err:
        _fail(err)
    db.session.commit()
    click.echo(json.dumps({"loaded": str(path), **stats} if stats else {"loaded": str(path), "changes": 0}))


users_cli = AppGroup("users", help="Accounts.")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", required=True)
@click.option("--name", required=True)
@click.option("--unit", default=None, help="Unit code (officers, supervisors).")
@click.option("--org", default=None, help="Organisation code (focal points, service providers).")
@click.option("--gender", default="unspecified")
@click.option("--languages", default="", help="Comma-separated, e.g. ky,ru")
@click.option("--phone", default=None, help="E.164, e.g. +996555123456")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(email: str, role: str, name: str, unit: str | None, org: str | None, gender: str,
                 languages: str, phone: str | None, password_stdin: bool) -> None:
    """Create an account; prints JSON with its id and TOTP secret (shown only now)."""
    from referral.accounts.services import NewUser, create_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    data = NewUser(email=email, name=name, role=role, password=password, unit=unit, org=org, gender=gender,
                   languages=[c.strip() for c in languages.split(",") if c.strip()], phone=phone)
    try:
        user, secret = create_user(None, data)
    except DomainError as err:
        _fail(err)
    db.session.commit()
    click.echo(json.dumps({"id": user.id, "email": user.email, "role": user.role.value, "totp_secret": secret}))


training_cli = AppGroup("training", help="Courses and certifications.")


@training_cli.command("record")
@click.argument("email")
@click.argument("course")
@click.option("--completed", required=True, type=click.DateTime(formats=["%Y-%m-%d"]), help="YYYY-MM-DD")
def training_record(email: str, course: str, completed: dt.datetime) -> None:
    """Record that EMAIL completed COURSE; validity follows the course."""
    from referral.standards.services import record_certification

    try:
        cert = record_certification(None, email, course, completed.date())
    except DomainError as err:
        _fail(err)
    db.session.commit()
    click.echo(json.dumps({"email": email.strip().lower(), "course": course,
                           "completed_on": cert.completed_on.isoformat(), "expires_on": cert.expires_on.isoformat()}))


demo_cli = AppGroup("demo", help="Demo data for trying Amanat out (refused in production).")


def _refuse_in_production() -> None:
    if current_app.config["ENV_NAME"] == "production":
        click.echo("error: demo commands are refused when REFERRAL_ENV=production.", err=True)
        sys.exit(1)


@demo_cli.command("seed")
def demo_seed() -> None:
    """Load the demo reference data and demo accounts (idempotent)."""
    _refuse_in_production()
    from referral.demo import DEMO_PASSWORD, seed_demo_users

    try:
        _load_reference_file(DEMO_REFERENCE)
        users = seed_demo_users(dt.date.today())
    except DomainError as err:
        _fail(err)
    db.session.commit()
    click.echo(f"Demo data ready. Every demo account's password is: {DEMO_PASSWORD}")
    click.echo("Accounts (role · e-mail):")
    for user, created in users:
        click.echo(f"  {user.role.value:<17} {user.email}{'  (new)' if created else ''}")
    click.echo("Police, provider, oversight and admin accounts need a TOTP code: "
               "`make otp EMAIL=<e-mail>` (or `flask --app wsgi demo otp <e-mail>`) prints the current one.")


@demo_cli.command("otp")
@click.argument("email")
def demo_otp(email: str) -> None:
    """Print the current TOTP code of a demo account (development only)."""
    _refuse_in_production()
    from referral.accounts.auth import normalise_email, totp_secret
    from referral.accounts.models import User
    from referral.demo import DOMAIN
    from referral.security.totp import code_at

    email = normalise_email(email)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None or not email.endswith("@" + DOMAIN):
        click.echo("error: not a demo account.", err=True)
        sys.exit(1)
    secret = totp_secret(user)
    if secret is None:
        click.echo("error: this account has no TOTP secret.", err=True)
        sys.exit(1)
    click.echo(code_at(secret, dt.datetime.now(dt.UTC)))


def register_cli(app: Flask) -> None:
    for group in (reference_cli, users_cli, training_cli, demo_cli):
        app.cli.add_command(group)
