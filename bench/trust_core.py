"""Figures for the trust core: case-key rotation time for N cases and audit verification speed.

    .venv/bin/python bench/trust_core.py [--cases 2000] [--events 50000] [--database-url URL]

Uses a fresh SQLite file (or a fresh PostgreSQL database created beside URL's
and dropped afterwards); never touches an existing database.
"""
from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import current_app  # noqa: E402
from flask_migrate import upgrade  # noqa: E402
from sqlalchemy import create_engine, make_url, text  # noqa: E402

from referral import create_app  # noqa: E402
from referral.audit.service import record, verify  # noqa: E402
from referral.extensions import db  # noqa: E402


def fresh_pg(url: str) -> tuple[str, callable]:
    admin_url = make_url(url).set(drivername="postgresql+psycopg")
    name = f"amanat_bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return admin_url.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--events", type=int, default=50000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="amanat-bench-"))
    drop = None
    if args.database_url:
        url, drop = fresh_pg(args.database_url)
    else:
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": url,
                      "KEYRING_PATH": str(tmp / "keyring.json"), "ARGON2_PROFILE": "fast-tests"})
    try:
        with app.app_context():
            upgrade()
            run(args)
            db.session.remove()
            db.engine.dispose()
    finally:
        if drop:
            drop()


def run(args: argparse.Namespace) -> None:
    from referral.accounts.services import NewUser, create_user
    from referral.reference.models import Area, AreaKind, Organisation, OrganisationKind, Unit
    from referral.referrals.crypto import rotate
    from referral.referrals.services import create_referral
    from referral.security.keyring import keyring_for
    from referral.referrals.schemas import Submission
    from tests.referrals.helpers import submission

    schema = Submission()

    area = Area(code="B-D", name="Bench", kind=AreaKind.district)
    db.session.add_all([area, Unit(code="B-U", name="Bench unit", areas=[area]),
                        Organisation(code="B-WG", name="Bench group", kind=OrganisationKind.womens_group,
                                     areas=[area])])
    db.session.flush()
    focal, _ = create_user(None, NewUser(email="fp@bench.example", name="FP", role="focal_point",
                                         password="bench passphrase", org="B-WG"))
    db.session.commit()
    started = time.perf_counter()
    for i in range(args.cases):
        create_referral(db.session, focal, schema.load(submission("B-D")))
        if i % 200 == 199:
            db.session.commit()
    db.session.commit()
    submit_s = time.perf_counter() - started
    print(f"created {args.cases} sealed cases in {submit_s:.2f}s ({args.cases / submit_s:.0f}/s, in-process)")

    started = time.perf_counter()
    result = rotate(db.session, keyring_for(current_app), batch=500)
    rotate_s = time.perf_counter() - started
    print(f"keys rotate: {result['cases_rewrapped']} case keys rewrapped in {rotate_s:.2f}s "
          f"({result['cases_rewrapped'] / rotate_s:.0f} keys/s)")

    started = time.perf_counter()
    for i in range(args.events):
        record(db.session, focal, "bench.event", object_type="referral", object_id=str(i), fields=["survivor.name"])
        if i % 1000 == 999:
            db.session.commit()
    db.session.commit()
    append_s = time.perf_counter() - started
    started = time.perf_counter()
    outcome = verify(db.session)
    verify_s = time.perf_counter() - started
    assert outcome.ok, outcome.problem
    print(f"audit: appended {args.events} events in {append_s:.2f}s (one connection, 1000 per commit); "
          f"verify {outcome.count} events in {verify_s:.2f}s ({outcome.count / verify_s:.0f} events/s)")


if __name__ == "__main__":
    main()
