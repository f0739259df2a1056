"""Alembic environment: run migrations on the engine the caller hands over."""

from alembic import context

import app.models  # noqa: F401  (fills Base.metadata)
from app.config import load_settings
from app.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Run migrations in a transaction on the given (or configured) engine."""
    engine = config.attributes.get("engine") or make_engine(load_settings().database_url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
