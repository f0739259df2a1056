"""`tipline db backup PATH`: SQLite's online backup while the database is in use; failures."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner
from sqlalchemy import func, select

from app.cli import Context, cli
from app.db import make_engine, make_session_factory
from app.reports.categories import seed_categories
from app.reports.models import Category


def invoke(*args: str, url: str):
    env = {"DATABASE_URL": url, "TIPLINE_SECRET_KEY": "backup-test-key"}
    return CliRunner().invoke(cli, list(args), obj=Context(), env=env)


def test_sqlite_backup_restores_to_the_same_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    assert invoke("db", "upgrade", url=url).exit_code == 0
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as s:
        seed_categories(s)
        s.commit()
        categories = s.scalar(select(func.count()).select_from(Category))
    # A reader holds a transaction open meanwhile: the online backup does not need it gone.
    with engine.connect() as busy:
        busy.execute(select(func.count()).select_from(Category))
        dest = tmp_path / "backup.db"
        result = invoke("db", "backup", str(dest), url=url)
        assert result.exit_code == 0, result.output
        assert "sqlite online backup" in result.output
    engine.dispose()
    assert invoke("db", "backup", str(dest), url=url).exit_code == 0  # replaces it whole
    assert list(tmp_path.glob("*.part")) == []  # no temp file left
    with sqlite3.connect(dest) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # Restore = put the file in place; the app reads it like the original.
    restored = make_engine(f"sqlite:///{dest}")
    with make_session_factory(restored)() as s:
        assert s.scalar(select(func.count()).select_from(Category)) == categories > 0
    restored.dispose()


def test_backup_failures_are_clear_and_leave_nothing(tmp_path):
    missing_dir = tmp_path / "nope" / "b.db"
    result = invoke("db", "backup", str(missing_dir), url=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.exit_code == 2 and "is not a directory" in result.output
    result = invoke("db", "backup", str(tmp_path / "b.db"), url=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.exit_code == 2 and "does not exist" in result.output
    # A file that is not a database: SQLite's own words, no traceback, no partial file.
    (tmp_path / "x.db").write_bytes(b"not a database at all, just some bytes" * 100)
    result = invoke("db", "backup", str(tmp_path / "b.db"), url=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.exit_code == 2 and "the SQLite backup failed" in result.output
    assert not (tmp_path / "b.db").exists() and list(tmp_path.glob("*.part")) == []
    # PostgreSQL that does not answer: pg_dump's error, no partial file.
    url = "postgresql://postgres:s3cret@127.0.0.1:1/nodb"
    result = invoke("db", "backup", str(tmp_path / "pg.dump"), url=url)
    assert result.exit_code == 2 and "pg_dump failed" in result.output
    assert "s3cret" not in result.output
    assert not (tmp_path / "pg.dump").exists() and list(tmp_path.glob("*.part")) == []
