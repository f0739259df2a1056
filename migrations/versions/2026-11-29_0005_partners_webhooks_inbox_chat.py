"""Open311 partners, their requests and webhooks; the chat of each inbox update.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 07:00:00.000000

Partner keys are stored hashed; webhook deliveries are outbox rows (recipient_kind
'webhook') with a log of attempts. bot_inbox.chat_id lets several inbox workers keep
each chat's updates in order; rows stored before this revision have none and are
handled as they come (there are at most a few pending at any time).
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('partners',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=True),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_prefix', sa.String(length=12), nullable=False),
    sa.Column('grid_paths', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['staff_users.id'], name=op.f('fk_partners_created_by_id_staff_users')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_partners_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['reporter_id'], ['reporters.id'], name=op.f('fk_partners_reporter_id_reporters')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partners')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_partners_key_hash')),
    sa.UniqueConstraint('name', name=op.f('uq_partners_name'))
    )
    op.create_table('partner_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=40), nullable=False),
    sa.Column('service_code', sa.String(length=30), nullable=False),
    sa.Column('attributes', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_partner_requests_partner_id_partners')),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_partner_requests_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_requests')),
    sa.UniqueConstraint('tip_id', name=op.f('uq_partner_requests_tip_id')),
    sa.UniqueConstraint('token', name=op.f('uq_partner_requests_token'))
    )
    with op.batch_alter_table('partner_requests', schema=None) as batch_op:
        batch_op.create_index('ix_partner_requests_partner_created', ['partner_id', 'created_at'], unique=False)

    op.create_table('partner_webhooks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.Column('secret', sa.String(length=80), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partners.id'], name=op.f('fk_partner_webhooks_partner_id_partners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_webhooks'))
    )
    op.create_table('webhook_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('outbox_id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox.id'], name=op.f('fk_webhook_attempts_outbox_id_outbox'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscription_id'], ['partner_webhooks.id'], name=op.f('fk_webhook_attempts_subscription_id_partner_webhooks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts'))
    )
    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_attempts_outbox_id'), ['outbox_id'], unique=False)
        batch_op.create_index('ix_webhook_attempts_subscription_at', ['subscription_id', 'at'], unique=False)

    with op.batch_alter_table('bot_inbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chat_id', sa.BigInteger(), nullable=True))
        batch_op.create_index('ix_bot_inbox_chat_order', ['chat_id', 'status', 'update_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('bot_inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_bot_inbox_chat_order')
        batch_op.drop_column('chat_id')

    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_attempts_subscription_at')
        batch_op.drop_index(batch_op.f('ix_webhook_attempts_outbox_id'))

    op.drop_table('webhook_attempts')
    op.drop_table('partner_webhooks')
    with op.batch_alter_table('partner_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_partner_requests_partner_created')

    op.drop_table('partner_requests')
    op.drop_table('partners')
