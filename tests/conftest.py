"""Shared fixtures: a fresh database per test, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.config import Settings
from app.db import Base, make_engine, make_session_factory

PG_URL = os.environ.get("TEST_DATABASE_URL")
NO_PG = "PostgreSQL cases need TEST_DATABASE_URL (CI sets it; see README)"


def _pg_psycopg(url: str) -> str:
    """Spell a PostgreSQL URL for the psycopg 3 driver."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def pg_schema_url():
    """Yield a PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if not PG_URL:
        pytest.skip(NO_PG)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(_pg_psycopg(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path: Path) -> str:
    """A database URL for an empty database: SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL for an empty SQLite file, for cases that are about SQLite itself."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    """Test settings rooted in a temporary instance folder."""
    instance = tmp_path / "instance"
    instance.mkdir()
    return Settings(
        database_url=db_url,
        secret_key="test-secret-key-not-for-production",
        media_dir=instance / "media",
        instance_dir=instance,
        testing=True,
    )


@pytest.fixture
def engine(settings: Settings):
    """An engine on a database holding every table of the models."""
    import app.models  # noqa: F401  (registers every table on Base.metadata)

    eng = make_engine(settings.database_url)
    Base.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine):
    """The session factory bound to the test engine."""
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory):
    """A session for service-level tests; the test decides when to commit."""
    with session_factory() as s:
        yield s


@pytest.fixture
def seeded(session_factory):
    """Categories and the small four-grid layer, committed."""
    from tests.layers import seed_small

    seed_small(session_factory)
    return session_factory


@pytest.fixture
def app(settings, engine, seeded):
    """The Flask app on the seeded test database."""
    from app import create_app

    application = create_app(settings)
    yield application
    application.extensions["tipline"].engine.dispose()


@pytest.fixture
def client(app):
    """A test client of the app."""
    return app.test_client()
