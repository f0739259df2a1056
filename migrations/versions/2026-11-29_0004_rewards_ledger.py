"""Recognition points: the append-only ledger, rules, second approvals and award runs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 05:10:00.000000

The ledger (point_entries) and the frozen award runs refuse UPDATE and DELETE
(and on PostgreSQL TRUNCATE) by trigger: corrections are reversal entries.
Rules and settings start empty: the code's defaults apply until an admin edits one.
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

APPEND_ONLY = ('point_entries', 'award_runs')
# A copy of app/rewards/models.py's statements as of this revision (migrations stay frozen).
PG_FUNCTION = """
CREATE OR REPLACE FUNCTION rewards_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'table % is append-only: % refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'integrity_constraint_violation';
END
$$
"""


def _append_only(table: str, dialect: str) -> list[str]:
    if dialect == 'postgresql':
        return [
            f"CREATE TRIGGER trg_{table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION rewards_refuse_change()",
            f"CREATE TRIGGER trg_{table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION rewards_refuse_change()",
        ]
    if dialect == 'sqlite':
        return [
            f"CREATE TRIGGER trg_{table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'table {table} is append-only: UPDATE refused'); END",
            f"CREATE TRIGGER trg_{table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'table {table} is append-only: DELETE refused'); END",
        ]
    return []


def upgrade() -> None:
    # Generated from the models, then checked by hand.
    op.create_table('award_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('run_no', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('snapshot', sa.JSON(), nullable=False),
    sa.Column('previous_id', sa.Integer(), nullable=True),
    sa.Column('diff', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['staff_users.id'], name=op.f('fk_award_runs_actor_id_staff_users')),
    sa.ForeignKeyConstraint(['previous_id'], ['award_runs.id'], name=op.f('fk_award_runs_previous_id_award_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_award_runs')),
    sa.UniqueConstraint('period', 'run_no', name=op.f('uq_award_runs_period_run_no'))
    )
    op.create_table('reward_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=30), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('sort_order', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['updated_by_id'], ['staff_users.id'], name=op.f('fk_reward_rules_updated_by_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reward_rules')),
    sa.UniqueConstraint('code', name=op.f('uq_reward_rules_code'))
    )
    op.create_table('reward_settings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=40), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['updated_by_id'], ['staff_users.id'], name=op.f('fk_reward_settings_updated_by_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reward_settings')),
    sa.UniqueConstraint('key', name=op.f('uq_reward_settings_key'))
    )
    op.create_table('point_balances',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('balance', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['reporter_id'], ['reporters.id'], name=op.f('fk_point_balances_reporter_id_reporters')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_point_balances')),
    sa.UniqueConstraint('reporter_id', name=op.f('uq_point_balances_reporter_id'))
    )
    op.create_table('point_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=True),
    sa.Column('tip_id', sa.Integer(), nullable=True),
    sa.Column('tip_ref', sa.String(length=8), nullable=True),
    sa.Column('grid_path', sa.String(length=1000), nullable=True),
    sa.Column('rule_code', sa.String(length=30), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('approver_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('reverses_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("(kind = 'reversal') = (reverses_id IS NOT NULL)", name=op.f('ck_point_entries_reversal_points_back')),
    sa.CheckConstraint("kind IN ('award', 'reversal')", name=op.f('ck_point_entries_kind')),
    sa.ForeignKeyConstraint(['actor_id'], ['staff_users.id'], name=op.f('fk_point_entries_actor_id_staff_users')),
    sa.ForeignKeyConstraint(['approver_id'], ['staff_users.id'], name=op.f('fk_point_entries_approver_id_staff_users')),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_point_entries_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['reporter_id'], ['reporters.id'], name=op.f('fk_point_entries_reporter_id_reporters')),
    sa.ForeignKeyConstraint(['reverses_id'], ['point_entries.id'], name=op.f('fk_point_entries_reverses_id_point_entries')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_point_entries')),
    sa.UniqueConstraint('reverses_id', name=op.f('uq_point_entries_reverses_id')),
    sa.UniqueConstraint('tip_id', 'rule_code', 'seq', 'kind', name=op.f('uq_point_entries_tip_id_rule_code_seq_kind'))
    )
    with op.batch_alter_table('point_entries', schema=None) as batch_op:
        batch_op.create_index('ix_point_entries_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_point_entries_period_organisation', ['period', 'organisation_id'], unique=False)
        batch_op.create_index('ix_point_entries_reporter_period', ['reporter_id', 'period'], unique=False)

    op.create_table('point_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tip_id', sa.Integer(), nullable=False),
    sa.Column('tip_ref', sa.String(length=8), nullable=True),
    sa.Column('grid_path', sa.String(length=1000), nullable=True),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.Column('rule_code', sa.String(length=30), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('requested_at', sa.DateTime(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('entry_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("state IN ('pending', 'approved', 'rejected')", name=op.f('ck_point_requests_state')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['staff_users.id'], name=op.f('fk_point_requests_decided_by_id_staff_users')),
    sa.ForeignKeyConstraint(['entry_id'], ['point_entries.id'], name=op.f('fk_point_requests_entry_id_point_entries')),
    sa.ForeignKeyConstraint(['reporter_id'], ['reporters.id'], name=op.f('fk_point_requests_reporter_id_reporters')),
    sa.ForeignKeyConstraint(['requested_by_id'], ['staff_users.id'], name=op.f('fk_point_requests_requested_by_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_point_requests')),
    sa.UniqueConstraint('tip_id', 'rule_code', 'seq', name=op.f('uq_point_requests_tip_id_rule_code_seq'))
    )
    with op.batch_alter_table('point_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_point_requests_reporter_id'), ['reporter_id'], unique=False)
        batch_op.create_index('ix_point_requests_state', ['state', 'closed_at'], unique=False)

    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        op.execute(sa.text(PG_FUNCTION))
    for table in APPEND_ONLY:
        for statement in _append_only(table, dialect):
            op.execute(sa.text(statement))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY:
        if dialect == 'postgresql':
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS trg_{table}_append_only ON {table}"))
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS trg_{table}_no_truncate ON {table}"))
        elif dialect == 'sqlite':
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS trg_{table}_no_update"))
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS trg_{table}_no_delete"))
    if dialect == 'postgresql':
        op.execute(sa.text("DROP FUNCTION IF EXISTS rewards_refuse_change()"))
    with op.batch_alter_table('point_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_point_requests_state')
        batch_op.drop_index(batch_op.f('ix_point_requests_reporter_id'))

    op.drop_table('point_requests')
    with op.batch_alter_table('point_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_point_entries_reporter_period')
        batch_op.drop_index('ix_point_entries_period_organisation')
        batch_op.drop_index('ix_point_entries_created_at')

    op.drop_table('point_entries')
    op.drop_table('point_balances')
    op.drop_table('reward_settings')
    op.drop_table('reward_rules')
    op.drop_table('award_runs')
