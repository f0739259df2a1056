"""Intake core: grids, people, tips, photos, audit trail, idempotency, outbox.

Revision ID: 0001
Revises: 
Create Date: 2026-11-29 03:17:26.297753
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Generated from the models, then checked by hand; timestamps are naive UTC.
    op.create_table('categories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=30), nullable=False),
    sa.Column('name_zh', sa.String(length=60), nullable=False),
    sa.Column('name_en', sa.String(length=60), nullable=False),
    sa.Column('severity', sa.Integer(), nullable=False),
    sa.Column('ack_minutes', sa.Integer(), nullable=False),
    sa.Column('resolve_minutes', sa.Integer(), nullable=False),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_categories')),
    sa.UniqueConstraint('code', name=op.f('uq_categories_code'))
    )
    op.create_table('grid_layers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('crs', sa.String(length=8), nullable=False),
    sa.Column('source_name', sa.String(length=255), nullable=False),
    sa.Column('imported_at', sa.DateTime(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('synthetic', sa.Boolean(), nullable=False),
    sa.Column('feature_count', sa.Integer(), nullable=False),
    sa.CheckConstraint("crs IN ('wgs84', 'gcj02', 'bd09')", name=op.f('ck_grid_layers_crs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grid_layers')),
    sa.UniqueConstraint('version', name=op.f('uq_grid_layers_version'))
    )
    with op.batch_alter_table('grid_layers', schema=None) as batch_op:
        batch_op.create_index('uq_grid_layers_one_active', ['active'], unique=True, sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))

    op.create_table('organisations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('has_police_room', sa.Boolean(), nullable=False),
    sa.Column('has_police_liaison', sa.Boolean(), nullable=False),
    sa.Column('synthetic', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisations')),
    sa.UniqueConstraint('name', name=op.f('uq_organisations_name'))
    )
    op.create_table('staff_users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=80), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('locale', sa.String(length=5), nullable=False),
    sa.Column('session_epoch', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_users')),
    sa.UniqueConstraint('username', name=op.f('uq_staff_users_username'))
    )
    op.create_table('grids',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('layer_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('level', sa.String(length=8), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('path', sa.String(length=1000), nullable=False),
    sa.Column('geometry', sa.LargeBinary(), nullable=False),
    sa.Column('min_lon', sa.Double(), nullable=False),
    sa.Column('min_lat', sa.Double(), nullable=False),
    sa.Column('max_lon', sa.Double(), nullable=False),
    sa.Column('max_lat', sa.Double(), nullable=False),
    sa.Column('station', sa.String(length=200), nullable=True),
    sa.Column('contacts', sa.JSON(), nullable=True),
    sa.CheckConstraint("level IN ('city', 'town', 'village', 'grid')", name=op.f('ck_grids_level')),
    sa.ForeignKeyConstraint(['layer_id'], ['grid_layers.id'], name=op.f('fk_grids_layer_id_grid_layers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_id'], ['grids.id'], name=op.f('fk_grids_parent_id_grids')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_grids')),
    sa.UniqueConstraint('layer_id', 'code', name=op.f('uq_grids_layer_id_code'))
    )
    with op.batch_alter_table('grids', schema=None) as batch_op:
        batch_op.create_index('ix_grids_layer_id_path', ['layer_id', 'path'], unique=False, postgresql_ops={'path': 'text_pattern_ops'})
        batch_op.create_index(batch_op.f('ix_grids_parent_id'), ['parent_id'], unique=False)

    op.create_table('reporters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pseudonym', sa.String(length=8), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=True),
    sa.Column('locale', sa.String(length=5), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('trust_score', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_reporters_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reporters')),
    sa.UniqueConstraint('pseudonym', name=op.f('uq_reporters_pseudonym'))
    )
    op.create_table('staff_scopes',
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('grid_code', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_users.id'], name=op.f('fk_staff_scopes_staff_id_staff_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('staff_id', 'grid_code', name=op.f('pk_staff_scopes'))
    )
    op.create_table('staff_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_users.id'], name=op.f('fk_staff_tokens_staff_id_staff_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_staff_tokens_token_hash'))
    )
    with op.batch_alter_table('staff_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_tokens_staff_id'), ['staff_id'], unique=False)

    op.create_table('invites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('used_at', sa.DateTime(), nullable=True),
    sa.Column('used_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_invites_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['used_by_id'], ['reporters.id'], name=op.f('fk_invites_used_by_id_reporters')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invites')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_invites_code_hash'))
    )
    op.create_table('reporter_identities',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('external_hash', sa.String(length=64), nullable=False),
    sa.Column('external_address', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['reporter_id'], ['reporters.id'], name=op.f('fk_reporter_identities_reporter_id_reporters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reporter_identities')),
    sa.UniqueConstraint('channel', 'external_hash', name=op.f('uq_reporter_identities_channel_external_hash'))
    )
    with op.batch_alter_table('reporter_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reporter_identities_reporter_id'), ['reporter_id'], unique=False)

    op.create_table('reporter_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['reporter_id'], ['reporters.id'], name=op.f('fk_reporter_tokens_reporter_id_reporters'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reporter_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_reporter_tokens_token_hash'))
    )
    with op.batch_alter_table('reporter_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reporter_tokens_reporter_id'), ['reporter_id'], unique=False)

    op.create_table('tips',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ref', sa.String(length=8), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=True),
    sa.Column('receipt_hash', sa.String(length=64), nullable=True),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('observed_at', sa.DateTime(), nullable=True),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('accuracy_m', sa.Float(), nullable=True),
    sa.Column('location_source', sa.String(length=10), nullable=False),
    sa.Column('address', sa.Text(), nullable=True),
    sa.Column('grid_id', sa.Integer(), nullable=True),
    sa.Column('routing_reason', sa.String(length=20), nullable=False),
    sa.Column('layer_version', sa.Integer(), nullable=True),
    sa.Column('neighbour_grids', sa.JSON(), nullable=True),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.Column('priority', sa.String(length=10), nullable=False),
    sa.Column('status', sa.String(length=15), nullable=False),
    sa.Column('outcome', sa.String(length=15), nullable=True),
    sa.Column('duplicate_of_id', sa.Integer(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], name=op.f('fk_tips_category_id_categories')),
    sa.ForeignKeyConstraint(['duplicate_of_id'], ['tips.id'], name=op.f('fk_tips_duplicate_of_id_tips')),
    sa.ForeignKeyConstraint(['grid_id'], ['grids.id'], name=op.f('fk_tips_grid_id_grids')),
    sa.ForeignKeyConstraint(['reporter_id'], ['reporters.id'], name=op.f('fk_tips_reporter_id_reporters')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tips')),
    sa.UniqueConstraint('receipt_hash', name=op.f('uq_tips_receipt_hash')),
    sa.UniqueConstraint('ref', name=op.f('uq_tips_ref'))
    )
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.create_index('ix_tips_grid_received', ['grid_id', 'received_at'], unique=False)
        batch_op.create_index('ix_tips_queue', ['status', 'priority', 'received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_tips_reporter_id'), ['reporter_id'], unique=False)

    op.create_table('idempotency_records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=40), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response', sa.JSON(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_idempotency_records_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_records')),
    sa.UniqueConstraint('scope', 'key_hash', name=op.f('uq_idempotency_records_scope_key_hash'))
    )
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_idempotency_records_tip_id'), ['tip_id'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('recipient_kind', sa.String(length=10), nullable=False),
    sa.Column('recipient_id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=True),
    sa.Column('template', sa.String(length=60), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=120), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_outbox_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_outbox_dedupe_key'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_tip_id'), ['tip_id'], unique=False)

    op.create_table('photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('original_format', sa.String(length=10), nullable=False),
    sa.Column('derivative_key', sa.String(length=100), nullable=False),
    sa.Column('thumbnail_key', sa.String(length=100), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('thumb_width', sa.Integer(), nullable=False),
    sa.Column('thumb_height', sa.Integer(), nullable=False),
    sa.Column('phash', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_photos_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_photos')),
    sa.UniqueConstraint('tip_id', 'sha256', name=op.f('uq_photos_tip_id_sha256'))
    )
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_photos_derivative_key'), ['derivative_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_photos_phash'), ['phash'], unique=False)
        batch_op.create_index(batch_op.f('ix_photos_thumbnail_key'), ['thumbnail_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_photos_tip_id'), ['tip_id'], unique=False)

    op.create_table('tip_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor_kind', sa.String(length=10), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('from_status', sa.String(length=15), nullable=True),
    sa.Column('to_status', sa.String(length=15), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_events_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_events'))
    )
    with op.batch_alter_table('tip_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_events_tip_id'), ['tip_id'], unique=False)



def downgrade() -> None:
    # Generated from the models, then checked by hand; timestamps are naive UTC.
    with op.batch_alter_table('tip_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_events_tip_id'))

    op.drop_table('tip_events')
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_photos_tip_id'))
        batch_op.drop_index(batch_op.f('ix_photos_thumbnail_key'))
        batch_op.drop_index(batch_op.f('ix_photos_phash'))
        batch_op.drop_index(batch_op.f('ix_photos_derivative_key'))

    op.drop_table('photos')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_tip_id'))
        batch_op.drop_index('ix_outbox_due')

    op.drop_table('outbox')
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_idempotency_records_tip_id'))

    op.drop_table('idempotency_records')
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tips_reporter_id'))
        batch_op.drop_index('ix_tips_queue')
        batch_op.drop_index('ix_tips_grid_received')

    op.drop_table('tips')
    with op.batch_alter_table('reporter_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reporter_tokens_reporter_id'))

    op.drop_table('reporter_tokens')
    with op.batch_alter_table('reporter_identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reporter_identities_reporter_id'))

    op.drop_table('reporter_identities')
    op.drop_table('invites')
    with op.batch_alter_table('staff_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_tokens_staff_id'))

    op.drop_table('staff_tokens')
    op.drop_table('staff_scopes')
    op.drop_table('reporters')
    with op.batch_alter_table('grids', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_grids_parent_id'))
        batch_op.drop_index('ix_grids_layer_id_path', postgresql_ops={'path': 'text_pattern_ops'})

    op.drop_table('grids')
    op.drop_table('staff_users')
    op.drop_table('organisations')
    with op.batch_alter_table('grid_layers', schema=None) as batch_op:
        batch_op.drop_index('uq_grid_layers_one_active', sqlite_where=sa.text('active'), postgresql_where=sa.text('active'))

    op.drop_table('grid_layers')
    op.drop_table('categories')
