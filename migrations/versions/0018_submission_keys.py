"""submission_keys: a submission sent twice (a double tap, a retry after a slow network) files one case

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa

import referral.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'submission_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('submitter_id', sa.Integer(), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('body_digest', sa.String(length=64), nullable=False),
        sa.Column('referral_id', sa.String(length=36), nullable=False),
        sa.Column('created_at', referral.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['referral_id'], ['referrals.id'], name=op.f('fk_submission_keys_referral_id_referrals'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['submitter_id'], ['users.id'], name=op.f('fk_submission_keys_submitter_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_submission_keys')),
        sa.UniqueConstraint('submitter_id', 'key_hash', name=op.f('uq_submission_keys_submitter_id')),
    )
    with op.batch_alter_table('submission_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submission_keys_referral_id'), ['referral_id'], unique=False)


def downgrade():
    with op.batch_alter_table('submission_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submission_keys_referral_id'))
    op.drop_table('submission_keys')
