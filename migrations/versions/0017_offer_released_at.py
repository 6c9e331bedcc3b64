"""offers.released_at: when an officer who had accepted a case stopped holding it (per-officer compliance)

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28

Rows from before it are filled where the data tells:

- an accepted offer followed by a later offer of the same case ended then: a new offer follows only a
  release (a reassignment; a recusal re-routes), including an officer's earlier hold of a case they were
  given back later;
- an accepted offer of an officer who no longer holds the case, with no offer after it, ended at their
  recusal (before 0017 a recusal could flip an officer's earlier offer of the same case instead), else
  when the case was closed (the police lost it);
- a recusal flipped its offer to ``declined``, which keeps its acceptance time in ``responded_at``; the
  audit log's ``referral.recuse`` event of that officer on that case tells when it ended (a declined
  offer's officer is never offered the case again, so no other recusal of theirs can match).

Step rows are judged again by ``standards rebuild`` (docs/operations.md) or as each case next changes.
"""
from alembic import op
import sqlalchemy as sa

import referral.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


BACKFILL = (  # tests/test_migrations.py runs them on both databases
    "UPDATE offers SET released_at = COALESCE("
    " (SELECT MIN(later.offered_at) FROM offers later WHERE later.referral_id = offers.referral_id"
    "  AND later.id <> offers.id AND later.offered_at >= offers.responded_at),"
    " (SELECT MIN(e.ts) FROM audit_events e JOIN referrals r ON r.id = e.object_id"
    "  WHERE e.action = 'referral.recuse' AND e.outcome = 'allowed' AND e.object_type = 'referral'"
    "  AND e.object_id = offers.referral_id AND e.actor_id = offers.officer_id AND e.ts >= offers.responded_at"
    "  AND COALESCE(r.assigned_officer_id, -1) <> offers.officer_id),"
    " (SELECT r.closed_at FROM referrals r WHERE r.id = offers.referral_id AND r.closed_at >= offers.responded_at"
    "  AND COALESCE(r.assigned_officer_id, -1) <> offers.officer_id)) "
    "WHERE status = 'accepted' AND responded_at IS NOT NULL AND released_at IS NULL",
    "UPDATE offers SET released_at = ("
    " SELECT MIN(e.ts) FROM audit_events e WHERE e.action = 'referral.recuse' AND e.outcome = 'allowed'"
    "  AND e.object_type = 'referral' AND e.object_id = offers.referral_id AND e.actor_id = offers.officer_id"
    "  AND e.ts >= offers.responded_at) "
    "WHERE status = 'declined' AND responded_at IS NOT NULL AND released_at IS NULL",
)


def upgrade():
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('released_at', referral.db.UTCDateTime(timezone=True), nullable=True))
    for statement in BACKFILL:
        op.execute(statement)


def downgrade():
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_column('released_at')
