"""``backup create`` / ``backup restore``: database backups for the restore drill (docs/operations.md).

A backup holds the database only. The keyring (``REFERRAL_KEYRING``) and the
audit checkpoint key are backed up separately and kept apart from it: a stolen
database backup alone opens no case, and destroying a retention key erases its
cases from every backup (referral.referrals.retention).

PostgreSQL: ``pg_dump --format=custom`` / ``pg_restore``. SQLite: the sqlite3
online backup API (a consistent copy while the app runs).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import inspect, make_url

from referral.extensions import db

backup_cli = AppGroup("backup", help="Database backups and restores (the keyring is kept apart).")


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A URL pg_dump understands (no SQLAlchemy driver suffix) and the environment to run it in: the
    password goes in PGPASSWORD, never on a command line that ``ps`` shows to every local user."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(drivername="postgresql", password=None).render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        click.echo(f"error: {name} is not installed (Debian: apt-get install postgresql-client)", err=True)
        sys.exit(1)
    return path


def create_backup(url: str, out_dir: Path, *, now: dt.datetime | None = None) -> Path:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    backend = make_url(url).get_backend_name()
    target = out_dir / f"amanat-{stamp}.{'dump' if backend == 'postgresql' else 'sqlite3'}"
    if target.exists():
        raise click.ClickException(f"{target} already exists")
    # Private from the first byte: a backup holds sealed case data and the audit log.
    target.touch(mode=0o600)
    try:
        if backend == "postgresql":
            dsn, env = _libpq(url)
            subprocess.run([_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(target),
                            "--dbname", dsn], check=True, capture_output=True, text=True, env=env)
        elif backend == "sqlite":
            source = make_url(url).database
            if not source or source == ":memory:":
                raise click.ClickException("an in-memory SQLite database cannot be backed up")
            with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
                src.backup(dst)
        else:
            raise click.ClickException(f"no backup method for {backend}")
    except subprocess.CalledProcessError as err:
        target.unlink(missing_ok=True)
        raise click.ClickException(f"pg_dump failed: {err.stderr.strip()[:300]}") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    os.chmod(target, 0o600)
    return target


@backup_cli.command("create")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("backups"),
              show_default=True, help="Directory for the backup file.")
def backup_create(out_dir: Path) -> None:
    """Back up the database to a new file (mode 0600); prints its path and size as JSON."""
    target = create_backup(current_app.config["SQLALCHEMY_DATABASE_URI"], out_dir)
    click.echo(json.dumps({"file": str(target), "bytes": target.stat().st_size,
                           "keyring": "not included: back up REFERRAL_KEYRING separately"}))


@backup_cli.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def backup_restore(file: Path) -> None:
    """Restore FILE into the configured database, which must be empty (a fresh one: never over live data)."""
    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    tables = inspect(db.engine).get_table_names()
    db.engine.dispose()
    if tables:
        click.echo(f"error: the target database is not empty ({len(tables)} tables); restore into a fresh one.",
                   err=True)
        sys.exit(1)
    backend = make_url(url).get_backend_name()
    if backend == "postgresql":
        dsn, env = _libpq(url)
        done = subprocess.run([_tool("pg_restore"), "--no-owner", "--exit-on-error", "--dbname", dsn, str(file)],
                              capture_output=True, text=True, env=env)
        if done.returncode != 0:
            click.echo(f"error: pg_restore failed: {done.stderr.strip()[:300]}", err=True)
            sys.exit(1)
    elif backend == "sqlite":
        with sqlite3.connect(f"file:{file}?mode=ro", uri=True) as src, sqlite3.connect(make_url(url).database) as dst:
            src.backup(dst)
    else:
        click.echo(f"error: no restore method for {backend}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"restored": str(file),
                           "next": "run `keys check` and `audit verify` against this database"}))
