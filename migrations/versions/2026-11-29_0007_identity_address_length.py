"""Reporter identities keep a whole Open311 contact (an email is up to 254 characters).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 08:30:00.000000

external_address was sized for Telegram chat ids (64); Open311 stores "kind:value"
there for the audited reveal, and cutting it at 64 lost the end of long emails and
device ids. Downgrading cuts such values back to 64 characters.
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('reporter_identities', schema=None) as batch_op:
        batch_op.alter_column(
            'external_address', existing_type=sa.String(length=64), type_=sa.String(length=320)
        )


def downgrade() -> None:
    op.execute(
        "UPDATE reporter_identities SET external_address = substr(external_address, 1, 64) "
        "WHERE length(external_address) > 64"
    )
    with op.batch_alter_table('reporter_identities', schema=None) as batch_op:
        batch_op.alter_column(
            'external_address', existing_type=sa.String(length=320), type_=sa.String(length=64)
        )
