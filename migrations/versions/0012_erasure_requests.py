"""erasure requests: when a survivor asked for her case to be erased

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27

"""
from alembic import op
import sqlalchemy as sa

import referral.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('erasure_requested_at', referral.db.UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_column('erasure_requested_at')
