"""a sliding lockout window: the times of an account's recent failed sign-ins

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28

"""
from alembic import op
import sqlalchemy as sa

import referral.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure_times', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('failure_times')
