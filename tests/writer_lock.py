"""Whether another connection could take SQLite's writer lock right now (app/db_sqlite.py)."""

from __future__ import annotations

import fcntl
import os
import time

from sqlalchemy import make_url


def writer_lock_free(database_url: str, *, wait_s: float = 0.0) -> bool | None:
    """On a SQLite file, whether the writer lock can be taken (None elsewhere).

    `wait_s`: keep trying that long, for a lock other work may hold for a moment (the
    bot's sender marking a reply sent); a lock held by the work that calls this never
    comes free, since that work is waiting for the call to return.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":  # PostgreSQL has no such lock: rows are locked
        return None
    fd = os.open(os.path.abspath(url.database) + ".writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
    finally:
        os.close(fd)
