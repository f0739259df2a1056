"""Triage, the response clock and the admin page: incidents, links, targets, sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 03:47:43.719261
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Generated from the models, then checked by hand.
    op.create_table('response_targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('priority', sa.String(length=10), nullable=False),
    sa.Column('category_code', sa.String(length=30), nullable=True),
    sa.Column('area_code', sa.String(length=64), nullable=True),
    sa.Column('ack_minutes', sa.Integer(), nullable=False),
    sa.Column('resolve_minutes', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_response_targets')),
    sa.UniqueConstraint('priority', 'category_code', 'area_code', name=op.f('uq_response_targets_priority_category_code_area_code'))
    )
    op.create_table('response_templates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=15), nullable=True),
    sa.Column('locale', sa.String(length=5), nullable=False),
    sa.Column('title', sa.String(length=100), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_response_templates')),
    sa.UniqueConstraint('code', 'locale', name=op.f('uq_response_templates_code_locale'))
    )
    op.create_table('urgent_words',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('word', sa.String(length=40), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_urgent_words')),
    sa.UniqueConstraint('word', name=op.f('uq_urgent_words_word'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('target_kind', sa.String(length=20), nullable=False),
    sa.Column('target_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_users.id'], name=op.f('fk_audit_log_staff_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_table('incidents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=False),
    sa.Column('first_tip_id', sa.Integer(), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['category_id'], ['categories.id'], name=op.f('fk_incidents_category_id_categories')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incidents'))
    )
    op.create_table('landmarks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('grid_code', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('aliases', sa.JSON(), nullable=False),
    sa.Column('latitude', sa.Float(), nullable=False),
    sa.Column('longitude', sa.Float(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['staff_users.id'], name=op.f('fk_landmarks_created_by_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_landmarks'))
    )
    with op.batch_alter_table('landmarks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_landmarks_grid_code'), ['grid_code'], unique=False)

    op.create_table('staff_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('csrf_token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_users.id'], name=op.f('fk_staff_sessions_staff_id_staff_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_staff_sessions_token_hash'))
    )
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_sessions_staff_id'), ['staff_id'], unique=False)

    op.create_table('tip_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('other_tip_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('distance', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['other_tip_id'], ['tips.id'], name=op.f('fk_tip_links_other_tip_id_tips'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_links_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_links')),
    sa.UniqueConstraint('tip_id', 'other_tip_id', 'kind', name=op.f('uq_tip_links_tip_id_other_tip_id_kind'))
    )
    with op.batch_alter_table('tip_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_links_other_tip_id'), ['other_tip_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tip_links_tip_id'), ['tip_id'], unique=False)

    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('station', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('last_login_at', sa.DateTime(), nullable=True))

    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('grid_path', sa.String(length=1000), nullable=True))
        batch_op.add_column(sa.Column('priority_rank', sa.Integer(), nullable=False, server_default='2'))
        batch_op.add_column(sa.Column('priority_reasons', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('is_open', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('incident_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('text_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('assignee_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('ack_due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('resolve_due_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('acknowledged_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('escalation_level', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_escalation_at', sa.DateTime(), nullable=True))
        batch_op.drop_index(batch_op.f('ix_tips_queue'))
        batch_op.create_index('ix_tips_queue', ['is_open', 'priority_rank', 'ack_due_at', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_tips_assignee_id'), ['assignee_id'], unique=False)
        batch_op.create_index('ix_tips_dup_window', ['category_id', 'received_at'], unique=False)
        batch_op.create_index('ix_tips_grid_path', ['grid_path'], unique=False)
        batch_op.create_index(batch_op.f('ix_tips_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index('ix_tips_next_escalation', ['next_escalation_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_tips_text_hash'), ['text_hash'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_tips_incident_id_incidents'), 'incidents', ['incident_id'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_tips_assignee_id_staff_users'), 'staff_users', ['assignee_id'], ['id'])
    # Existing tips: derive the new columns from the old ones.
    op.execute(
        "UPDATE tips SET priority_rank = CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 "
        "WHEN 'normal' THEN 2 ELSE 3 END, "
        "is_open = (status NOT IN ('resolved', 'rejected', 'duplicate')), "
        "grid_path = (SELECT path FROM grids WHERE grids.id = tips.grid_id)"
    )


def downgrade() -> None:
    # Generated from the models, then checked by hand.
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tips_assignee_id_staff_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_tips_incident_id_incidents'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_tips_text_hash'))
        batch_op.drop_index('ix_tips_next_escalation')
        batch_op.drop_index(batch_op.f('ix_tips_incident_id'))
        batch_op.drop_index('ix_tips_grid_path')
        batch_op.drop_index('ix_tips_dup_window')
        batch_op.drop_index(batch_op.f('ix_tips_assignee_id'))
        batch_op.drop_index('ix_tips_queue')
        batch_op.create_index(batch_op.f('ix_tips_queue'), ['status', 'priority', 'received_at'], unique=False)
        batch_op.drop_column('next_escalation_at')
        batch_op.drop_column('escalation_level')
        batch_op.drop_column('resolved_at')
        batch_op.drop_column('acknowledged_at')
        batch_op.drop_column('resolve_due_at')
        batch_op.drop_column('ack_due_at')
        batch_op.drop_column('assignee_id')
        batch_op.drop_column('text_hash')
        batch_op.drop_column('incident_id')
        batch_op.drop_column('is_open')
        batch_op.drop_column('priority_reasons')
        batch_op.drop_column('priority_rank')
        batch_op.drop_column('grid_path')

    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.drop_column('last_login_at')
        batch_op.drop_column('totp_secret')
        batch_op.drop_column('station')

    with op.batch_alter_table('tip_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_links_tip_id'))
        batch_op.drop_index(batch_op.f('ix_tip_links_other_tip_id'))

    op.drop_table('tip_links')
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_sessions_staff_id'))

    op.drop_table('staff_sessions')
    with op.batch_alter_table('landmarks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_landmarks_grid_code'))

    op.drop_table('landmarks')
    op.drop_table('incidents')
    op.drop_table('audit_log')
    op.drop_table('urgent_words')
    op.drop_table('response_templates')
    op.drop_table('response_targets')
