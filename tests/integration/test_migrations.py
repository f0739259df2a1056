"""Every revision upgrades and downgrades with data present; head equals the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import app.models  # noqa: F401
from app.db import Base, make_engine
from app.migrate import alembic_config, downgrade, upgrade


def _diff(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def _insert_sample(engine) -> None:
    """Put a row in the main tables so the downgrades run against data."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO categories (code, name_zh, name_en, severity, ack_minutes, "
                "resolve_minutes, sort_order, active) "
                "VALUES ('theft', '盗窃', 'Theft', 3, 10, 60, 0, :t)"
            ),
            {"t": True},
        )
        conn.execute(
            text(
                "INSERT INTO tips (ref, channel, category_id, description, received_at, "
                "location_source, routing_reason, flags, priority, status, updated_at) VALUES "
                "('T-AAAAAA', 'api', 1, 'x', '2026-11-29 00:00:00', 'none', 'no_location', '[]', "
                "'high', 'new', '2026-11-29 00:00:00')"
            )
        )


def test_each_revision_up_and_down_with_data(db_url):
    engine = make_engine(db_url)
    revisions = [
        s.revision for s in ScriptDirectory.from_config(alembic_config(engine)).walk_revisions()
    ][::-1]
    assert revisions, "no migrations found"
    for rev in revisions:
        upgrade(engine, rev)
        if rev == revisions[0]:
            _insert_sample(engine)
    assert _diff(engine) == [], "the migrations at head differ from the models"
    for _ in revisions:
        downgrade(engine, "-1")
    tables = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set()
    upgrade(engine, "head")
    assert _diff(engine) == []
    engine.dispose()
