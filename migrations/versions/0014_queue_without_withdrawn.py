"""an officer's queue leaves out withdrawn cases, still from the index alone

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28

The officer's queue no longer lists a case the survivor withdrew (the officer may not open it). The
index the queue counts and pages from becomes partial, so the count stays an index-only scan.
"""
from alembic import op
import sqlalchemy as sa

import referral.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

QUEUED = sa.text("status <> 'withdrawn'")


def upgrade():
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index('ix_referrals_officer_created')
        batch_op.create_index('ix_referrals_officer_queue', ['assigned_officer_id', 'created_at'], unique=False,
                              postgresql_where=QUEUED, sqlite_where=QUEUED)


def downgrade():
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index('ix_referrals_officer_queue')
        batch_op.create_index('ix_referrals_officer_created', ['assigned_officer_id', 'created_at'], unique=False)
