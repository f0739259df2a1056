"""SQLite specifics: pragmas, BEGIN IMMEDIATE, and a kernel-queued writer lock."""

from __future__ import annotations

import fcntl
import os
import sqlite3

from sqlalchemy import Engine, event


class QueuedWriterConnection(sqlite3.Connection):
    """A pysqlite connection that holds a file lock from BEGIN IMMEDIATE to COMMIT/ROLLBACK.

    SQLite's busy handler polls with sleeps of 1 to 100 ms, so under a burst of
    writers from several processes some wait hundreds of milliseconds while the
    database sits idle. Writers queued on flock() are woken by the kernel the
    moment the lock is free. Each connection opens the lock file itself: flock()
    excludes by open file, so threads of one process exclude each other too.
    If a holder dies, the kernel drops its lock; a stuck worker is ended by
    gunicorn's timeout.
    """

    lock_path: str | None = None
    _lock_fd: int | None = None
    _locked: bool = False

    def acquire_writer_lock(self) -> None:
        """Wait in the kernel's queue for the right to begin a write transaction."""
        if self.lock_path is None or self._locked:
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._locked = True

    def _release(self) -> None:
        if self._locked:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._locked = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            self._release()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        finally:
            super().close()


def _pragmas(dbapi_conn, _record) -> None:
    """Turn on WAL, foreign keys and a busy timeout; take over BEGIN from pysqlite."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    # FULL: a tip is acknowledged only once its commit is on disk, power loss included
    # (NORMAL would survive a process crash but may lose the last commits to an OS crash).
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


def _begin(conn) -> None:
    """Start write transactions with BEGIN IMMEDIATE: deferred ones lose updates under load.

    `sqlite_begin`: "DEFERRED" for read-only work, "NONE" for reads each in autocommit.
    """
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    if mode == "NONE":
        return
    if mode != "DEFERRED":
        conn.connection.dbapi_connection.acquire_writer_lock()
    conn.exec_driver_sql(f"BEGIN {mode}")


def sqlite_connect_args(database: str | None) -> dict:
    """Return connect_args: the queued-writer connection class, with its lock file path."""
    in_memory = not database or database == ":memory:"
    lock_path = None if in_memory else os.path.abspath(database) + ".writelock"

    class _Conn(QueuedWriterConnection):
        pass

    _Conn.lock_path = lock_path
    return {"check_same_thread": False, "timeout": 30, "factory": _Conn}


def configure_sqlite(engine: Engine) -> None:
    """Attach the pragma and BEGIN listeners to a SQLite engine."""
    event.listen(engine, "connect", _pragmas)
    event.listen(engine, "begin", _begin)
