"""offers.released_at: when an officer who had accepted a case stopped holding it (per-officer compliance)

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28

Rows from before it are filled where the data tells: an accepted offer whose officer no longer holds the
case ended when the case was next offered (a reassignment) or, failing that, when it was closed (the
police lost it). A recusal flipped its offer to ``declined`` and cannot be told from a decline: it stays
unknown, and such a hold simply ends at the next acceptance. Step rows are judged again by
``standards rebuild`` (docs/operations.md) or as each case next changes.
"""
from alembic import op
import sqlalchemy as sa

import referral.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


BACKFILL = (  # tests/test_migrations.py runs it on both databases
    "UPDATE offers SET released_at = COALESCE("
    " (SELECT MIN(later.offered_at) FROM offers later WHERE later.referral_id = offers.referral_id"
    "  AND later.id <> offers.id AND later.offered_at >= offers.responded_at),"
    " (SELECT r.closed_at FROM referrals r WHERE r.id = offers.referral_id"
    "  AND r.closed_at >= offers.responded_at)) "
    "WHERE status = 'accepted' AND responded_at IS NOT NULL AND released_at IS NULL AND officer_id <> COALESCE("
    " (SELECT r.assigned_officer_id FROM referrals r WHERE r.id = offers.referral_id), -1)")


def upgrade():
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('released_at', referral.db.UTCDateTime(timezone=True), nullable=True))
    op.execute(BACKFILL)


def downgrade():
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_column('released_at')
