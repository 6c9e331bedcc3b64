"""enrolments: one-time links with which account holders set their own password and TOTP

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-28

Existing accounts were set up by whoever created them and stay usable (enrolment_pending false).
"""
from alembic import op
import sqlalchemy as sa

import referral.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enrolment_pending', sa.Boolean(), server_default=sa.false(), nullable=False))

    op.create_table('enrolments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.LargeBinary(length=32), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('account', 'authenticator', name='enrolment_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('issued_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', referral.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', referral.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', referral.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', referral.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('pending_secret', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['issued_by_id'], ['users.id'], name=op.f('fk_enrolments_issued_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_enrolments_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrolments')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_enrolments_token_hash'))
    )
    with op.batch_alter_table('enrolments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrolments_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('enrolments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrolments_user_id'))

    op.drop_table('enrolments')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('enrolment_pending')
