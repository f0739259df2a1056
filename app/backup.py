"""`tipline db backup PATH`: a consistent copy of a live database, without stopping it.

SQLite: the online backup API (pages copied under a read lock, writers go on
between steps), into a temp file beside PATH, fsynced and renamed, so PATH is
either the previous backup or a whole new one. PostgreSQL: pg_dump's custom
format (restore with pg_restore), with the password passed in the environment,
never on the command line where `ps` would show it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import make_url

from app.durable import fsync_dir, temp_beside

# libpq reads these from the environment; the URL's query may carry them.
LIBPQ_QUERY_VARS = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "options": "PGOPTIONS",
}


class BackupFailed(RuntimeError):
    """The backup could not be made; PATH is untouched."""


def backup_database(url: str, dest: Path) -> str:
    """Write a backup of the database at url to dest; return the method used."""
    parsed = make_url(url)
    dest = Path(dest)
    if not dest.parent.is_dir():
        raise BackupFailed(f"{dest.parent} is not a directory")
    try:
        if parsed.get_backend_name() == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise BackupFailed("an in-memory database has nothing to back up")
            _atomically(dest, lambda tmp: _sqlite_backup(parsed.database, tmp))
            return "sqlite online backup"
        if parsed.get_backend_name() == "postgresql":
            _atomically(dest, lambda tmp: _pg_dump(parsed, tmp))
            return "pg_dump --format=custom"
    except sqlite3.Error as exc:  # an unreadable or damaged live database
        raise BackupFailed(f"the SQLite backup failed: {exc}") from None
    except OSError as exc:  # an unwritable directory, a full disk
        raise BackupFailed(f"{exc.filename or dest}: {exc.strerror or exc}") from None
    raise BackupFailed(f"no backup method for {parsed.get_backend_name()}")


def _atomically(dest: Path, write) -> None:
    """Fill a temp file beside dest, fsync it, and rename it over dest (durably)."""
    tmp = temp_beside(dest)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _sqlite_backup(database: str, tmp: Path) -> None:
    if not Path(database).is_file():
        raise BackupFailed("the SQLite database file does not exist")
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    target = sqlite3.connect(tmp)
    try:
        with target:
            source.backup(target, pages=4096)  # steps: writers are not held off for long
        check = target.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise BackupFailed("the copy failed its integrity check")
    finally:
        target.close()
        source.close()


def pg_environment(url) -> dict[str, str]:
    """Return os.environ plus libpq's variables for url: the password never goes on argv."""
    env = dict(os.environ)
    for var, value in (
        ("PGHOST", url.host),
        ("PGPORT", url.port),
        ("PGUSER", url.username),
        ("PGPASSWORD", url.password),
        ("PGDATABASE", url.database),
    ):
        if value is not None:
            env[var] = str(value)
    # Connection options in the URL's query (TLS, timeouts) apply to the tools too.
    for param, var in LIBPQ_QUERY_VARS.items():
        value = url.query.get(param)
        if isinstance(value, str):
            env[var] = value
    return env


def _pg_dump(url, tmp: Path) -> None:
    exe = shutil.which("pg_dump")
    if exe is None:
        raise BackupFailed("pg_dump is not installed (Debian: postgresql-client)")
    result = subprocess.run(  # noqa: S603 (fixed arguments, no shell)
        [exe, "--format=custom", "--no-owner", "--file", str(tmp)],
        env=pg_environment(url),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        # pg_dump's own message names the problem (connection, permissions), not data.
        raise BackupFailed(f"pg_dump failed: {result.stderr.strip()[:300]}")
