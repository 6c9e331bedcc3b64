"""protection-order expiry reminders: the expiry each order's officer was last reminded of

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28

"""
from alembic import op
import sqlalchemy as sa

import referral.db  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('protection_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reminded_expiry', sa.Date(), nullable=True))


def downgrade():
    with op.batch_alter_table('protection_orders', schema=None) as batch_op:
        batch_op.drop_column('reminded_expiry')
