"""`tipline db restore PATH`: put a backup back only after it has shown it is whole and ours.

SQLite: the backup is copied beside the database and checked there
(`integrity_check`, `foreign_key_check`, an alembic revision this release
knows); only then is it renamed over the database, under an exclusive lock
that proves no other process has the database open (one that had would go on
writing to the replaced file, and those writes would be lost).

PostgreSQL: the archive's table of contents and alembic revision are read
first; then `pg_restore --clean --if-exists --no-owner --single-transaction`
into DATABASE_URL's database, so a dump that breaks half-way leaves the
database as it was. The password travels in the environment, never on argv.

Either way a database that already holds tips is replaced only when asked to.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from app.backup import pg_environment
from app.durable import fsync_dir, temp_beside
from app.migrate import MIGRATIONS

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"  # pg_dump --format=custom
LOCK_WAIT_SECONDS = 2.0  # a writer's transaction is milliseconds; an open process is forever


class RestoreFailed(RuntimeError):
    """The backup was not restored; the database is as it was."""


@dataclass(frozen=True)
class Restored:
    """What a restore did, for the command to print."""

    method: str
    revision: str
    head: str
    tips: int
    replaced_tips: int
    leftover_tables: tuple[str, ...] = ()


def restore_database(url: str, source: Path, *, replace_tips: bool = False) -> Restored:
    """Replace the database at url with the backup at source; refuse rather than guess."""
    parsed = make_url(url)
    source = Path(source)
    if not source.exists():
        raise RestoreFailed(f"{source} does not exist")
    if not source.is_file():
        raise RestoreFailed(f"{source} is not a file")
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            if not parsed.database or parsed.database == ":memory:":
                raise RestoreFailed("an in-memory database cannot be restored into")
            return _sqlite_restore(source, Path(parsed.database), replace_tips)
        if backend == "postgresql":
            return _pg_restore(parsed, source, replace_tips)
    except OSError as exc:  # unreadable backup, unwritable directory, full disk
        raise RestoreFailed(f"{exc.filename or source}: {exc.strerror or exc}") from None
    raise RestoreFailed(f"no restore method for {backend}")


def known_revisions() -> tuple[set[str], str]:
    """Return every alembic revision this release ships, and its head."""
    script = ScriptDirectory(str(MIGRATIONS))
    return {s.revision for s in script.walk_revisions()}, script.get_current_head()


def _check_revisions(found: list[str], source: Path) -> tuple[str, str]:
    """Return (revision, head) if found names exactly one revision we know."""
    known, head = known_revisions()
    if not found:
        raise RestoreFailed(f"{source.name} is not a Tipline database (no alembic revision)")
    if len(found) > 1:
        raise RestoreFailed(f"{source.name} has several alembic revisions: {', '.join(found)}")
    if found[0] not in known:
        raise RestoreFailed(
            f"{source.name} is at alembic revision {found[0]}, which this release does not "
            "know (made by a newer Tipline, or not a Tipline database)"
        )
    return found[0], head


def _has_magic(source: Path, magic: bytes) -> bool:
    with open(source, "rb") as fh:
        return fh.read(len(magic)) == magic


def _non_empty(path: Path) -> bool:
    """A log or journal that exists and holds something (an empty one replays nothing)."""
    return path.exists() and path.stat().st_size > 0


def _refuse_tips(tips: int) -> None:
    raise RestoreFailed(
        f"the database holds {tips} tip{'s' if tips != 1 else ''}; "
        "add --yes to replace it with the backup"
    )


# --- SQLite -------------------------------------------------------------------------------
def _sqlite_restore(source: Path, target: Path, replace_tips: bool) -> Restored:
    if not _has_magic(source, SQLITE_MAGIC):
        raise RestoreFailed(f"{source.name} is not an SQLite database file")
    if _non_empty(Path(f"{source}-wal")):
        # Its last commits may be in the log: a live database, not a backup of one.
        raise RestoreFailed(
            f"{source.name} has a write-ahead log beside it (a live database?); "
            "make a backup of it with `tipline db backup`"
        )
    if not target.parent.is_dir():
        raise RestoreFailed(f"{target.parent} is not a directory")
    tmp = temp_beside(target)
    try:
        # Checked as a copy: the backup itself is never opened for writing.
        shutil.copyfile(source, tmp)
        revision, head, tips = _check_sqlite_copy(tmp, source)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        with _sole_access(target) as existing_tips:
            if existing_tips and not replace_tips:
                _refuse_tips(existing_tips)
            _match_ownership(tmp, target)
            os.replace(tmp, target)
            # The old file's shared-memory index must not be taken for the new file's.
            Path(f"{target}-shm").unlink(missing_ok=True)
            fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
        for side in ("-journal", "-wal", "-shm"):
            Path(f"{tmp}{side}").unlink(missing_ok=True)
    return Restored("sqlite file replace", revision, head, tips, existing_tips)


def _check_sqlite_copy(tmp: Path, source: Path) -> tuple[str, str, int]:
    """Check the copy is whole and a Tipline database; leave it with no side files."""
    try:
        with closing(sqlite3.connect(tmp, isolation_level=None)) as conn:
            # A plain rollback-journal file: nothing beside it to carry across the rename.
            conn.execute("PRAGMA journal_mode=DELETE").fetchone()
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
            if problems != ["ok"]:
                raise RestoreFailed(
                    f"{source.name} fails its integrity check: {'; '.join(problems)[:300]}"
                )
            if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                raise RestoreFailed(f"{source.name} fails its foreign-key check")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "alembic_version" not in tables or "tips" not in tables:
                raise RestoreFailed(f"{source.name} is not a Tipline database")
            found = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
            revision, head = _check_revisions(found, source)
            tips = conn.execute("SELECT count(*) FROM tips").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        # A truncated or damaged file: SQLite says so on the first page it cannot read.
        raise RestoreFailed(f"{source.name} is not a readable SQLite database: {exc}") from None
    return revision, head, tips


@contextmanager
def _sole_access(target: Path):
    """Hold an exclusive lock on the database for the rename; yield how many tips it holds.

    In WAL mode every open connection keeps a shared lock on the file, so leaving
    WAL succeeds only when no other connection (in any process) is open. The
    journal then lives in memory: no file is left beside the database we replace.
    """
    if not target.exists():
        for side in ("-wal", "-journal"):
            if _non_empty(Path(f"{target}{side}")):
                # SQLite would replay it into the restored file.
                raise RestoreFailed(f"{target.name}{side} exists without its database; move it")
        yield 0
        return
    try:
        conn = sqlite3.connect(target, timeout=LOCK_WAIT_SECONDS, isolation_level=None)
    except sqlite3.Error as exc:
        raise RestoreFailed(f"cannot open {target}: {exc}") from None
    with closing(conn):
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE").fetchone()
            found = conn.execute("PRAGMA journal_mode").fetchone()[0]
            mode = conn.execute("PRAGMA journal_mode=MEMORY").fetchone()[0]
            conn.execute("BEGIN EXCLUSIVE")  # kept after COMMIT in exclusive locking mode
            conn.execute("COMMIT")
            has_tips = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tips'"
            ).fetchone()
            tips = conn.execute("SELECT count(*) FROM tips").fetchone()[0] if has_tips else 0
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise RestoreFailed(
                    f"{target} is open in another process (web, bot?): stop them, then restore"
                ) from None
            raise RestoreFailed(f"cannot lock {target}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise RestoreFailed(f"{target} is not an SQLite database ({exc}); move it") from None
        if mode != "memory":
            raise RestoreFailed(f"{target} stayed in {mode} mode; is it open elsewhere?")
        try:
            yield tips
        except BaseException:
            # Not replaced after all: leave the file in the journal mode it was found in.
            with suppress(sqlite3.Error):
                conn.execute(f"PRAGMA journal_mode={found}")
            raise


def _match_ownership(tmp: Path, target: Path) -> None:
    """Give the new file the old one's mode and owner, so the service can still write it."""
    if not target.exists():
        return
    st = target.stat()
    os.chmod(tmp, st.st_mode & 0o7777)
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except PermissionError:
            raise RestoreFailed(f"{target} belongs to another user; restore as that user") from None


# --- PostgreSQL ---------------------------------------------------------------------------
def _pg_restore(url, source: Path, replace_tips: bool) -> Restored:
    exe = shutil.which("pg_restore")
    if exe is None:
        raise RestoreFailed("pg_restore is not installed (Debian: postgresql-client)")
    if not _has_magic(source, PGDUMP_MAGIC):
        raise RestoreFailed(
            f"{source.name} is not a pg_dump custom-format archive (`tipline db backup` makes one)"
        )
    env = pg_environment(url)
    listing = _run(exe, ["--list", str(source)], env, f"{source.name} cannot be read")
    tables = set(re.findall(r"^\d+; \d+ \d+ TABLE (\S+) (\S+)(?: |$)", listing, re.M))
    if not {"alembic_version", "tips"} <= {name for _schema, name in tables}:
        raise RestoreFailed(f"{source.name} is not a Tipline database")
    data = _run(
        exe,
        ["--data-only", "--table=alembic_version", "--file=-", str(source)],
        env,
        f"{source.name} cannot be read",
    )
    revision, head = _check_revisions(_copy_rows(data, "alembic_version"), source)
    existing_tips, _ = _pg_inspect(url, tables)
    if existing_tips and not replace_tips:
        _refuse_tips(existing_tips)
    _run(
        exe,
        [
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",  # all or nothing: a broken archive changes nothing
            "--exit-on-error",
            "--dbname",
            url.database or url.username or "",
            str(source),
        ],
        env,
        "pg_restore failed; the database is unchanged",
    )
    tips, leftovers = _pg_inspect(url, tables, analyze=True)
    return Restored(
        "pg_restore --single-transaction", revision, head, tips, existing_tips, leftovers
    )


def _run(exe: str, args: list[str], env: dict[str, str], failure: str) -> str:
    """Run a PostgreSQL tool; raise its first error lines (never a data row) on failure."""
    result = subprocess.run(  # noqa: S603 (fixed arguments, no shell)
        [exe, *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        # Only the tools' own error lines: DETAIL/CONTEXT lines may quote a row's values.
        errors = [line for line in result.stderr.splitlines() if ": error: " in line]
        raise RestoreFailed(f"{failure}: {' '.join(errors[:2])[:300] or 'no message'}")
    return result.stdout


def _copy_rows(script: str, table: str) -> list[str]:
    """Return the rows of one table's COPY block in a pg_restore script (one column)."""
    rows: list[str] = []
    inside = False
    for line in script.splitlines():
        if inside:
            if line == "\\.":
                break
            rows.append(line)
        elif re.match(rf"COPY (\S+\.)?{table} ", line):
            inside = True
    return rows


def _pg_inspect(url, dumped: set[tuple[str, str]], *, analyze: bool = False):
    """Return the tips the database holds and its tables the dump lacks (in the dump's schemas).

    `--clean` drops only what the dump has: a table a newer release added stays behind,
    and the operator must hear of it before `tipline db upgrade` trips over it.
    """
    engine = create_engine(
        url.set(drivername="postgresql+psycopg"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as conn:
            if analyze:
                # pg_restore leaves the planner without statistics; the queue needs them.
                conn.execute(text("ANALYZE"))
            present = conn.execute(
                text("SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(:s)"),
                {"s": sorted({schema for schema, _name in dumped})},
            ).all()
            has_tips = conn.scalar(text("SELECT to_regclass('tips')")) is not None
            tips = conn.scalar(text("SELECT count(*) FROM tips")) if has_tips else 0
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
        raise RestoreFailed(f"cannot read the target database: {reason}") from None
    finally:
        engine.dispose()
    leftovers = sorted(f"{schema}.{name}" for schema, name in set(map(tuple, present)) - dumped)
    return tips, tuple(leftovers)
