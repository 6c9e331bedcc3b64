"""The schema comes from the migrations, and the models agree with it."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from referral.extensions import db


def test_models_and_migrations_agree(app):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_test_database_was_built_by_the_migrations(app):
    tables = set(inspect(db.engine).get_table_names())
    assert "alembic_version" in tables
    assert {"users", "areas", "units", "organisations", "courses", "certifications"} <= tables
