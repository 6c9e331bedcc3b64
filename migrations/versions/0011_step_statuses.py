"""step statuses and case timings: each case's judgement stored, so the unit summary is a GROUP BY

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27

Existing cases are judged here (referral.standards.step_statuses.rebuild, the code of this release), so the
summary is complete as soon as the upgrade commits: 100 k cases took 1.5-3.5 minutes on the bench machine.
Should that function ever stop fitting this revision's schema, drop the call and run
``flask standards rebuild`` after upgrading instead.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.orm import Session

import referral.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('step_statuses',
    sa.Column('referral_id', sa.String(length=36), nullable=False),
    sa.Column('step_code', sa.String(length=48), nullable=False),
    sa.Column('standard_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('due_at', referral.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('breaches_at', referral.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('breach_month', sa.String(length=7), nullable=True),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('officer_id', sa.Integer(), nullable=True),
    sa.Column('submitted_at', referral.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['referral_id'], ['referrals.id'], name=op.f('fk_step_statuses_referral_id_referrals'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['standard_id'], ['standards.id'], name=op.f('fk_step_statuses_standard_id_standards'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('referral_id', 'step_code', name=op.f('pk_step_statuses'))
    )
    with op.batch_alter_table('step_statuses', schema=None) as batch_op:
        batch_op.create_index('ix_step_statuses_unit_submitted', ['unit_id', 'submitted_at'], unique=False,
                              postgresql_include=['step_code', 'officer_id', 'status', 'breaches_at', 'breach_month'])

    op.create_table('case_timings',
    sa.Column('referral_id', sa.String(length=36), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=True),
    sa.Column('submitted_at', referral.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('to_accept_us', sa.BigInteger(), nullable=False),
    sa.Column('to_contact_us', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['referral_id'], ['referrals.id'], name=op.f('fk_case_timings_referral_id_referrals'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('referral_id', name=op.f('pk_case_timings'))
    )
    with op.batch_alter_table('case_timings', schema=None) as batch_op:
        batch_op.create_index('ix_case_timings_unit_submitted', ['unit_id', 'submitted_at'], unique=False,
                              postgresql_include=['to_accept_us', 'to_contact_us'])

    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM referrals LIMIT 1")).first() is not None:
        from referral.standards.step_statuses import rebuild

        with Session(bind=bind) as session:  # joins the migration's transaction; closing leaves it open
            rebuild(session)


def downgrade():
    op.drop_table('case_timings')
    op.drop_table('step_statuses')
