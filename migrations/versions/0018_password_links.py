"""password links: an admin can issue a one-time link with which the holder of a forgotten password sets a new one

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-28

Only the check constraint on ``enrolments.kind`` changes: it admits ``password``.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

_NAME = 'ck_enrolments_enrolment_kind'


def _check(batch_op, kinds):
    batch_op.create_check_constraint(op.f(_NAME), sa.column('kind').in_(kinds))


def upgrade():
    with op.batch_alter_table('enrolments', schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_NAME), type_='check')
        _check(batch_op, ['account', 'authenticator', 'password'])


def downgrade():
    # A password link not yet used or expired stops working: it cannot be stored under the old constraint.
    op.execute("DELETE FROM enrolments WHERE kind = 'password'")
    with op.batch_alter_table('enrolments', schema=None) as batch_op:
        batch_op.drop_constraint(op.f(_NAME), type_='check')
        _check(batch_op, ['account', 'authenticator'])
