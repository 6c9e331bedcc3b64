"""Fixtures: one database per run built by the migrations, one transaction per test.

The suite runs on SQLite by default. With ``REFERRAL_TEST_DATABASE_URL`` set to
a PostgreSQL server URL it creates a database of its own for the run, migrates
it, and drops it at the end; the server's existing databases are never touched.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from flask_sqlalchemy.session import _app_ctx_id
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import scoped_session, sessionmaker

from referral import create_app
from referral.extensions import db as _db
from referral.accounts.models import Role
from tests import factories
from tests.factories import AreaFactory, OrganisationFactory, UnitFactory

PG_URL = os.environ.get("REFERRAL_TEST_DATABASE_URL", "").strip()

# Property tests: no example database left in the work tree, and no per-example deadline (a shared
# CI machine's pauses are not failures); CI-sized by default, ``HYPOTHESIS_PROFILE=thorough`` for more.
settings.register_profile("amanat", database=None, deadline=None)
settings.register_profile("thorough", parent=settings.get_profile("amanat"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "amanat"))


def _pg_admin_url(url: str):  # type: ignore[no-untyped-def]
    return make_url(url).set(drivername="postgresql+psycopg")


@contextmanager
def fresh_database(kind: str, tmp: Path) -> Iterator[str]:
    """A new, empty database for this run: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if not PG_URL:
        yield "sqlite:///" + str(tmp / f"{kind}.sqlite3")
        return
    admin_url = _pg_admin_url(PG_URL)
    name = f"amanat_{kind}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database("test", tmp_path_factory.mktemp("db")) as url:
        yield url


def app_settings(database_url: str, tmp: Path) -> dict[str, object]:
    return {
        "ENV_NAME": "testing",
        "SQLALCHEMY_DATABASE_URI": database_url,
        "KEYRING_PATH": str(tmp / "keyring.json"),
        # Never the developer's instance/ key and checkpoint log: a dev `audit checkpoint` would vouch for
        # events of another chain.
        "AUDIT_SIGNING_KEY_PATH": str(tmp / "audit-signing-key.pem"),
        "AUDIT_CHECKPOINT_LOG": str(tmp / "audit-checkpoints.jsonl"),
        "ARGON2_PROFILE": "fast-tests",
    }


class IsolatedClient(FlaskClient):
    """Each request gets its own app context, as in production.

    Without this a request would reuse the test's app context, and with it
    ``g`` (where Flask-Login caches the user) and the scoped session, so one
    request's identity could leak into the next.
    """

    def open(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture(scope="session")
def app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    application = create_app(app_settings(database_url, tmp_path_factory.mktemp("instance")))
    application.test_client_class = IsolatedClient
    with application.app_context():
        upgrade()
        yield application
        _db.session.remove()
        _db.engine.dispose()


@pytest.fixture()
def db_session(app: Flask) -> Iterator[object]:
    """A session inside an outer transaction that is rolled back after the test.

    Commits in views become savepoint releases (SQLAlchemy 2's
    ``join_transaction_mode="create_savepoint"``), so code under test commits
    as it does in production while nothing outlives the test.
    """
    connection = _db.engine.connect()
    outer = connection.begin()
    original = _db.session
    # A plain SQLAlchemy session: Flask-SQLAlchemy's own would route every
    # query to the engine (a second connection) and ignore this bind.
    _db.session = scoped_session(
        sessionmaker(bind=connection, join_transaction_mode="create_savepoint"), scopefunc=_app_ctx_id
    )
    try:
        yield _db.session
    finally:
        _db.session.remove()
        _db.session = original
        outer.rollback()
        connection.close()


@pytest.fixture()
def client(app: Flask, db_session: object):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture()
def runner(app: Flask, db_session: object):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()


@pytest.fixture()
def make_user(db_session: object):  # type: ignore[no-untyped-def]
    return factories.make_user


@pytest.fixture()
def api_as(client, db_session):  # type: ignore[no-untyped-def]
    """``api_as(user)`` → headers carrying a fresh bearer token for ``user``."""
    from referral.accounts.auth import issue_token

    def headers_for(user) -> dict[str, str]:  # type: ignore[no-untyped-def]
        raw, _token = issue_token(user)
        _db.session.commit()
        return {"Authorization": f"Bearer {raw}"}

    return headers_for


@pytest.fixture()
def login_as(make_user, api_as):  # type: ignore[no-untyped-def]
    """``login_as(role)`` → (user, headers) for a new account of that role."""

    def login(role: str, **kwargs):  # type: ignore[no-untyped-def]
        user = make_user(role=role, **kwargs)
        return user, api_as(user)

    return login


def pytest_report_header(config: pytest.Config) -> str:
    if PG_URL:
        return f"database: PostgreSQL ({make_url(PG_URL).host}), a fresh database for this run"
    return "database: SQLite (set REFERRAL_TEST_DATABASE_URL for PostgreSQL)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set REFERRAL_TEST_DATABASE_URL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture()
def place(db_session):
    """A district covered by a unit, a village inside it, a women's group there."""
    district = AreaFactory()
    village = AreaFactory(parent=district, kind="community")
    unit = UnitFactory(areas=[district])
    group = OrganisationFactory(areas=[district])
    return {"district": district, "village": village, "unit": unit, "group": group}


@pytest.fixture()
def people(place, login_as):
    focal, focal_h = login_as(Role.focal_point, organisation=place["group"])
    supervisor, sup_h = login_as(Role.supervisor, unit=place["unit"])
    return {"focal": (focal, focal_h), "supervisor": (supervisor, sup_h)}


@pytest.fixture(scope="module")
def committed_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app on a database of its own where commits are real (concurrency, leak and dump tests)."""
    tmp = tmp_path_factory.mktemp("committed")
    with fresh_database("committed", tmp) as url:
        application = create_app(app_settings(url, tmp))
        application.test_client_class = IsolatedClient
        with application.app_context():
            upgrade()
        yield application
        with application.app_context():
            _db.engine.dispose()


@pytest.fixture()
def courses(db_session):
    """The core and child courses, as the demo reference data has them."""
    from referral.standards.models import Course, CourseRequirement

    core = Course(code="T-CORE", name="Core", validity_months=24, required_for=CourseRequirement.all)
    child = Course(code="T-CHILD", name="Child", validity_months=24, required_for=CourseRequirement.child)
    _db.session.add_all([core, child])
    _db.session.flush()
    return {"core": core, "child": child}


@pytest.fixture()
def certify(courses):
    """``certify(user, "core", "child", completed=date)``: record current (or given) certifications."""
    import datetime as dt

    from referral.standards.models import Certification
    from referral.standards.services import add_months

    def give(user, *which, completed=None):
        completed = completed or dt.date.today() - dt.timedelta(days=30)
        for name in which or ("core",):
            course = courses[name]
            _db.session.add(Certification(user_id=user.id, course_id=course.id, completed_on=completed,
                                          expires_on=add_months(completed, course.validity_months)))
        _db.session.flush()
        return user

    return give


@pytest.fixture()
def officers(place, login_as, certify):
    """Two certified officers in the place's unit, female, speaking ky and ru."""
    made = []
    for _ in range(2):
        user, headers = login_as(Role.officer, unit=place["unit"], languages="ky,ru")
        certify(user, "core", "child")
        made.append((user, headers))
    return made


@pytest.fixture()
def submit_and_read(client, place, people, officers, runner):  # type: ignore[no-untyped-def]
    """A callable: a minimal submission through the API, then its full read by the unit supervisor (the
    standards in config/ loaded first)."""
    from tests.referrals.helpers import submit_and_full_read

    assert runner.invoke(args=["standards", "load"]).exit_code == 0
    return lambda: submit_and_full_read(client, place["district"].code, people["focal"][1], people["supervisor"][1])


@pytest.fixture()
def isolated_keyring(app, tmp_path, monkeypatch):
    """Rotation writes the keyring file: a test that rotates gets its own copy, so the session's app (and every
    later test) keeps the keyring it started with."""
    import shutil

    from referral.security.keyring import LocalKeyring, keyring_for

    path = tmp_path / "keyring.json"
    shutil.copy(keyring_for(app).path, path)
    monkeypatch.setitem(app.extensions, "amanat_keyring", LocalKeyring(path))
    return path
