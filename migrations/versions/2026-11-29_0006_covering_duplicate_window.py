"""The duplicate window's index covers the position and incident of each tip.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 08:10:00.000000

The place check of every new tip reads the category's last 30 minutes of tips; with
(category_id, received_at) alone each entry cost a table fetch for its coordinates,
inside SQLite's write lock. Measured on a 4,111-tip database with a full 500-tip
window: 0.13 ms → 0.05 ms per check.
"""

from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

OLD = ['category_id', 'received_at']
NEW = ['category_id', 'received_at', 'latitude', 'longitude', 'incident_id', 'id']


def upgrade() -> None:
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.drop_index('ix_tips_dup_window')
        batch_op.create_index('ix_tips_dup_window', NEW, unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.drop_index('ix_tips_dup_window')
        batch_op.create_index('ix_tips_dup_window', OLD, unique=False)
