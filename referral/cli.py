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


reference_cli = AppGroup("reference", help="Reference data: areas, units, organisations, courses, standards.")


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

    from referral.standards.loader import load_standards

    try:
        _load_reference_file(DEMO_REFERENCE)
        load_standards(db.session, sorted(STANDARDS_DIR.glob("*.yaml")))
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


keys_cli = AppGroup("keys", help="The keyring: key-encryption keys and rotation.")


@keys_cli.command("status")
def keys_status() -> None:
    """Show the KEK versions and how many case keys each one wraps."""
    from sqlalchemy import func

    from referral.referrals.models import Referral
    from referral.security.keyring import KeyringError, keyring_for

    try:
        ring = keyring_for(current_app)
    except KeyringError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    counts = dict(db.session.execute(select(Referral.kek_version, func.count()).group_by(Referral.kek_version)).all())
    erased = counts.pop(None, 0)
    click.echo(json.dumps({
        "provider": ring.name, "path": str(ring.path), "active_version": ring.active.version,
        "keks": [{"version": k.version, "state": k.state, "created_at": k.created_at,
                  **({"period": k.period} if k.period else {}),
                  "case_keys": counts.get(k.version, 0)} for k in ring.versions],
        "erased_cases": erased,
    }, indent=2))


@keys_cli.command("rotate")
@click.option("--batch", default=500, show_default=True, help="Case keys rewrapped per transaction.")
def keys_rotate(batch: int) -> None:
    """Add a new KEK and rewrap every case data key under it; the old KEK stays decrypt-only."""
    import time

    from referral.referrals.crypto import rotate
    from referral.security.keyring import keyring_for

    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        click.echo(f"rewrapped {done}/{total} case keys", err=True)

    result = rotate(db.session, keyring_for(current_app), batch=batch, progress=progress)
    result["seconds"] = round(time.perf_counter() - started, 3)
    click.echo(json.dumps(result))


@keys_cli.command("retire")
@click.argument("version", type=int)
def keys_retire(version: int) -> None:
    """Forget a decrypt-only KEK once no case key is wrapped under it."""
    from sqlalchemy import func

    from referral.audit.service import record
    from referral.referrals.models import Referral
    from referral.security.keyring import KeyringError, keyring_for

    from referral.accounts.models import User

    still = db.session.scalar(select(func.count()).select_from(Referral).where(Referral.kek_version == version))
    ring = keyring_for(current_app)
    still += sum(1 for blob in db.session.scalars(select(User.totp_secret_sealed).where(
        User.totp_secret_sealed.is_not(None))) if ring.sealed_version(bytes(blob)) == version)
    if still:
        click.echo(f"error: {still} keys or secrets are still wrapped under version {version}; "
                   "run `keys rotate` first.",
                   err=True)
        sys.exit(1)
    try:
        keyring_for(current_app).retire(version)
    except KeyringError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    record(db.session, None, "keys.retire", object_type="keyring", object_id=str(version))
    db.session.commit()
    click.echo(json.dumps({"retired": version}))


@keys_cli.command("check")
def keys_check() -> None:
    """Check that every case key unwraps and every sealed field opens with this keyring (restore drills).

    Reads only and never creates a keyring: a missing or wrong one is an error, and nothing is written.
    """
    from referral.referrals.crypto import check_all
    from referral.security.keyring import KeyringError, LocalKeyring

    try:
        ring = LocalKeyring(current_app.config["KEYRING_PATH"], create=False)
    except KeyringError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    result = check_all(db.session, ring)
    db.session.rollback()
    failures = result["failures"]
    if failures:
        click.echo(f"error: {len(failures)} of {result['cases']} case keys or fields do not open with the keyring at "
                   f"{ring.path} (first: case {failures[0]['case']}: {failures[0]['problem']}); is this the keyring "
                   "of this database?", err=True)
        click.echo(json.dumps({**result, "failures": failures[:20]}))
        sys.exit(1)
    click.echo(json.dumps(result))


audit_cli = AppGroup("audit", help="The tamper-evident audit log.")


@audit_cli.command("verify")
@click.option("--since-checkpoint", is_flag=True,
              help="Verify only what follows the newest checkpoint whose signature holds (incremental).")
def audit_verify(since_checkpoint: bool) -> None:
    """Recompute the hash chain and check the signed checkpoints; exit 1 naming the first bad sequence."""
    import time

    from referral.audit.checkpoints import load_signing_key
    from referral.audit.service import verify
    from referral.security.keyring import KeyringError

    try:
        public_key = load_signing_key(current_app.config["AUDIT_SIGNING_KEY_PATH"], create=False).public_key()
    except KeyringError:
        public_key = None
        click.echo("warning: no audit signing key found; checkpoint signatures are not checked", err=True)
    started = time.perf_counter()
    if since_checkpoint and public_key is None:
        click.echo("error: --since-checkpoint needs the audit signing key to trust a checkpoint", err=True)
        sys.exit(2)
    from referral.audit.checkpoints import checkpoint_log_path, read_log

    log = checkpoint_log_path(current_app.config)
    try:
        logged = read_log(log)
    except KeyringError as err:
        click.echo(f"FAILED: {err}", err=True)
        sys.exit(1)
    if not logged:
        click.echo(f"warning: no checkpoint log at {log}; only the checkpoints in the database are checked", err=True)
    result = verify(db.session, public_key=public_key, since_checkpoint=since_checkpoint, logged=logged,
                    progress=lambda n: click.echo(f"verified {n} events", err=True))
    seconds = time.perf_counter() - started
    rate = int(result.count / seconds) if seconds > 0 else result.count
    if result.ok:
        where = f" from sequence {result.started_at}" if result.started_at > 1 else ""
        click.echo(f"ok: {result.count} events{where}, {result.checkpoints} checkpoints ({rate} events/s)")
        return
    click.echo(f"FAILED at sequence {result.first_bad_seq}: {result.problem} ({result.count} events good before it)")
    sys.exit(1)


@audit_cli.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the current head (sequence, hash, time) with the key kept outside the database."""
    from referral.audit.checkpoints import append_to_log, checkpoint_log_path, load_signing_key, sign_head
    from referral.security.keyring import KeyringError

    try:
        key = load_signing_key(current_app.config["AUDIT_SIGNING_KEY_PATH"],
                               create=current_app.config["ENV_NAME"] != "production")
        cp = sign_head(db.session, key)
    except KeyringError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    db.session.commit()
    # Also outside the database, with the key: deleting the tail and its checkpoints there still shows.
    # After the commit: a log that cannot be written (a read-only mount) must not cost the checkpoint itself.
    log = checkpoint_log_path(current_app.config)
    try:
        append_to_log(log, cp)
    except OSError as err:
        click.echo(f"error: checkpoint {cp.seq} is in the database but not in the log at {log} ({err.strerror}); "
                   "set REFERRAL_AUDIT_CHECKPOINT_LOG to a writable place kept outside the database", err=True)
        sys.exit(1)
    click.echo(json.dumps({"seq": cp.seq, "hash": bytes(cp.hash).hex(), "ts": cp.ts.isoformat(), "key_id": cp.key_id}))


standards_cli = AppGroup("standards", help="Versioned handling standards.")
STANDARDS_DIR = PROJECT_ROOT / "config" / "standards"


@standards_cli.command("load")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
def standards_load(paths: tuple[Path, ...]) -> None:
    """Load standard versions (default: every file in config/standards). A loaded version never changes."""
    from referral.standards.loader import load_standards

    try:
        stats = load_standards(db.session, list(paths) or sorted(STANDARDS_DIR.glob("*.yaml")))
    except DomainError as err:
        _fail(err)
    db.session.commit()
    click.echo(json.dumps(stats))


@standards_cli.command("rebuild")
def standards_rebuild() -> None:
    """Judge every case again into the stored step statuses (kept current by every change; this repairs
    them, e.g. after rows were loaded outside the application)."""
    from referral.standards.step_statuses import rebuild

    stats = rebuild(db.session)
    db.session.commit()
    click.echo(json.dumps(stats))


stats_cli = AppGroup("stats", help="De-identified statistics.")


@stats_cli.command("export")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
def stats_export(out: Path, since: dt.datetime | None, until: dt.datetime | None) -> None:
    """Write the de-identified statistics (small cells suppressed) as CSV."""
    import csv

    from referral.audit.service import record
    from referral.oversight.statistics import as_csv_rows, deidentified

    try:
        report = deidentified(db.session, since=since.date() if since else None,
                              until=until.date() if until else None, now=dt.datetime.now(dt.UTC))
    except DomainError as err:
        _fail(err)
    with out.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(as_csv_rows(report))
    record(db.session, None, "stats.export", object_type="statistics", reason=str(out.name))
    db.session.commit()
    click.echo(json.dumps({"out": str(out), "cases": report["cases"]}))


sla_cli = AppGroup("sla", help="Deadlines.")


@sla_cli.command("tick")
@click.option("--now", "now_text", default=None, help="Evaluate as of this ISO time (default: now).")
def sla_tick_command(now_text: str | None) -> None:
    """Expire missed offers: record breaches, alert the supervisor, re-offer or escalate. Idempotent."""
    from referral.referrals.workflow import sla_tick

    now = dt.datetime.now(dt.UTC)
    if now_text:
        try:
            now = dt.datetime.fromisoformat(now_text)
        except ValueError:
            click.echo("error: --now must be an ISO time, e.g. 2026-11-25T10:00:00+00:00", err=True)
            sys.exit(2)
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.UTC)
    click.echo(json.dumps(sla_tick(db.session, now=now)))


retention_cli = AppGroup("retention", help="Retention and erasure.")


@retention_cli.command("apply")
@click.option("--now", "now_text", default=None, help="ISO time to act as of (drills and tests); default now.")
def retention_apply(now_text: str | None) -> None:
    """Crypto-erase cases past retention (and any erasure request not yet carried out), move ended cases
    under their month's retention key, destroy the keys of months that are over. De-identified
    statistics stay."""
    from referral.referrals.retention import apply
    from referral.security.keyring import KeyringError

    try:
        now = dt.datetime.fromisoformat(now_text) if now_text else None
    except ValueError:
        click.echo("error: --now must be an ISO date-time, e.g. 2031-06-01T00:00:00+00:00", err=True)
        sys.exit(2)
    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    try:
        result = apply(db.session, now=now)
    except KeyringError as err:
        db.session.rollback()
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    click.echo(json.dumps(result))


def register_cli(app: Flask) -> None:
    from referral.backup import backup_cli
    from referral.notify.cli import outbox_cli

    for group in (reference_cli, users_cli, training_cli, demo_cli, keys_cli, audit_cli, sla_cli, standards_cli, stats_cli,
                  retention_cli, backup_cli, outbox_cli):
        app.cli.add_command(group)
