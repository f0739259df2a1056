"""Reference data on the hot path (categories, the active grid layer), re-read every few seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

DEFAULT_TTL = 10.0
_MAX_DATABASES = 32


class Refreshed:
    """A value loaded per database by `load(conn)` and trusted for `ttl` seconds.

    Other processes see an edit within the ttl; this process sees it at once,
    because whatever edits the data calls `clear()`.
    """

    def __init__(self, load: Callable[[Connection], object], ttl: float = DEFAULT_TTL):
        self._load = load
        self._ttl = ttl
        self._entries: dict = {}
        self._lock = threading.Lock()

    def get(self, source: Connection | Session):
        """Return the value for this database, loading it when stale.

        Given a Session, a fresh value costs no database work at all: the session's
        transaction (on SQLite, the write lock) only begins when a load is needed.
        """
        bind = source.get_bind() if isinstance(source, Session) else source
        # Keyed by the engine's pool (one per database and process; an engine's twins with
        # other execution options share it), which hashes by identity: hashing the URL
        # cost more than the rest of a cache hit, four times per tip.
        key = bind.engine.pool
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self._ttl:
            return entry[1]
        value = self._load(source.connection() if isinstance(source, Session) else source)
        with self._lock:
            if len(self._entries) >= _MAX_DATABASES:
                self._entries.clear()
            self._entries[key] = (now, value)
        return value

    def clear(self) -> None:
        """Forget every cached value (call after changing the data)."""
        with self._lock:
            self._entries.clear()
