"""Run a periodic job in one process at a time, when several processes run it.

Several `tipline clock run --every` processes (and the bot's own clock job) may run
side by side for availability; only one tick should work at a time. With REDIS_URL
the lock is a Redis key set with NX and an expiry (a holder that dies frees it when
the expiry passes) and released only by its holder; without Redis, on PostgreSQL, a
transaction-scoped advisory lock, released by the tick's own commit or rollback.
SQLite has one writer anyway (BEGIN IMMEDIATE): the job simply runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.config import DEFAULT_REDIS_PREFIX
from app.db import unit_of_work
from app.security import new_token

log = logging.getLogger("tipline.locks")
T = TypeVar("T")

# Delete the key only if it still holds our token: an expired holder must not free
# the lock that someone else has taken since.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# The key is per schema, so deployments (or test schemas) sharing a database do not
# block each other: 64 bits of md5(schema:name), as pg_advisory locks take a bigint.
_TRY_XACT_LOCK = text(
    "SELECT pg_try_advisory_xact_lock(('x' || substr(md5("
    "current_schema() || ':tipline:' || :name), 1, 16))::bit(64)::bigint)"
)


class JobLock:
    """A named lock for one job; `run` does the job in one unit of work, or skips it."""

    def __init__(
        self,
        name: str,
        *,
        redis_url: str | None = None,
        ttl_seconds: float = 60.0,
        prefix: str = DEFAULT_REDIS_PREFIX,
    ):
        self.name = name
        # The deployment's prefix (Settings.redis_prefix): another Tipline on the same
        # Redis ticks its own clock.
        self.key = f"{prefix}lock:{name}"
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self._redis = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(
                url=redis_url, socket_timeout=2, socket_connect_timeout=2
            )
            self._release = self._redis.register_script(_RELEASE)

    def acquire_redis(self) -> str | None:
        """Take the Redis lock: our token, or None when someone holds it."""
        token = new_token("lock")
        return token if self._redis.set(self.key, token, nx=True, px=self.ttl_ms) else None

    def release_redis(self, token: str) -> None:
        """Free the Redis lock if it is still ours."""
        self._release(keys=[self.key], args=[token])

    def run(self, factory: sessionmaker[Session], job: Callable[[Session], T]) -> T | None:
        """Run job(session) in one transaction unless another process holds the lock (None)."""
        token = None
        if self._redis is not None:
            try:
                token = self.acquire_redis()
            except Exception as exc:  # Redis down: fall back to the database's own lock
                log.warning(
                    "redis lock %s unavailable (%s); using the database",
                    self.name,
                    type(exc).__name__,
                )
            else:
                if token is None:
                    return None
        try:
            with unit_of_work(factory) as session:
                # PostgreSQL's lock is held until this transaction ends: the commit too.
                postgres = session.get_bind().dialect.name == "postgresql"
                if (
                    token is None
                    and postgres
                    and not session.scalar(_TRY_XACT_LOCK, {"name": self.name})
                ):
                    return None
                return job(session)
        finally:
            if token is not None:
                try:
                    self.release_redis(token)
                except Exception as exc:  # it expires by itself
                    log.warning("redis lock %s not released (%s)", self.name, type(exc).__name__)


def clock_lock(
    redis_url: str | None, every_seconds: float = 15.0, *, prefix: str = DEFAULT_REDIS_PREFIX
) -> JobLock:
    """The response clock's lock, shared by `tipline clock run` and the bot's clock job.

    The expiry outlives a slow tick several times over; a tick that outlives it anyway
    is still safe (run_clock locks its rows with SKIP LOCKED), merely not alone.
    """
    return JobLock(
        "response-clock",
        redis_url=redis_url,
        ttl_seconds=max(60.0, 4 * every_seconds),
        prefix=prefix,
    )
