"""The bot: update inbox, drafts, voice notes, and staff Telegram links.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 03:51:11.637591
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Generated from the models, then checked by hand.
    op.create_table('bot_inbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('update_id', sa.BigInteger(), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('available_at', sa.DateTime(), nullable=False),
    sa.Column('processed_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bot_inbox')),
    sa.UniqueConstraint('update_id', name=op.f('uq_bot_inbox_update_id'))
    )
    with op.batch_alter_table('bot_inbox', schema=None) as batch_op:
        batch_op.create_index('ix_bot_inbox_pending', ['status', 'available_at'], unique=False)

    op.create_table('bot_drafts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('step', sa.String(length=20), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('media_group_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['reporter_id'], ['reporters.id'], name=op.f('fk_bot_drafts_reporter_id_reporters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bot_drafts')),
    sa.UniqueConstraint('reporter_id', name=op.f('uq_bot_drafts_reporter_id'))
    )
    op.create_table('tip_audio',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('media_key', sa.String(length=100), nullable=False),
    sa.Column('mime_type', sa.String(length=40), nullable=False),
    sa.Column('duration_s', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_audio_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_audio'))
    )
    with op.batch_alter_table('tip_audio', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_audio_media_key'), ['media_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_tip_audio_tip_id'), ['tip_id'], unique=False)

    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('telegram_chat_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('telegram_link_hash', sa.String(length=64), nullable=True))



def downgrade() -> None:
    # Generated from the models, then checked by hand.
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.drop_column('telegram_link_hash')
        batch_op.drop_column('telegram_chat_id')

    with op.batch_alter_table('tip_audio', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_audio_tip_id'))
        batch_op.drop_index(batch_op.f('ix_tip_audio_media_key'))

    op.drop_table('tip_audio')
    op.drop_table('bot_drafts')
    with op.batch_alter_table('bot_inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_bot_inbox_pending')

    op.drop_table('bot_inbox')
