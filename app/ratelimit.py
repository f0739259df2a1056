"""Rate limits shared by every worker when Redis is configured, per process otherwise."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from app.config import DEFAULT_REDIS_PREFIX


@dataclass(frozen=True)
class Decision:
    """Whether one more event is allowed, and when to come back if not."""

    allowed: bool
    remaining: int
    retry_after: int  # seconds; 0 when allowed


class RateLimiter(Protocol):
    """Counts events per key in a sliding window."""

    def hit(self, key: str, limit: int, window_s: int) -> Decision:
        """Record one event for key and say whether it is within `limit` per `window_s`."""

    def peek(self, key: str, limit: int, window_s: int) -> Decision:
        """Say whether one more event would be allowed, without recording one."""

    def reset(self, key: str) -> None:
        """Forget the key's events (e.g. after a successful sign-in)."""


class MemoryLimiter:
    """A sliding-window log per key, in this process only (the default without Redis)."""

    def __init__(self, clock=time.monotonic):
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _window(self, key: str, window_s: int) -> deque[float]:
        now = self._clock()
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - window_s:
            events.popleft()
        return events

    def _decide(self, events: deque[float], limit: int, window_s: int) -> Decision:
        if len(events) < limit:
            return Decision(True, limit - len(events), 0)
        wait = events[len(events) - limit] + window_s - self._clock()
        return Decision(False, 0, max(1, math.ceil(wait)))

    def hit(self, key: str, limit: int, window_s: int) -> Decision:
        with self._lock:
            events = self._window(key, window_s)
            decision = self._decide(events, limit, window_s)
            if decision.allowed:
                events.append(self._clock())
                return Decision(True, decision.remaining - 1, 0)
            return decision

    def peek(self, key: str, limit: int, window_s: int) -> Decision:
        with self._lock:
            return self._decide(self._window(key, window_s), limit, window_s)

    def reset(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)


# Atomic sliding-window log in a sorted set: trim, count, add if under the limit.
_HIT = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
  return {1, limit - count - 1, 0}
end
local oldest = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
return {0, 0, tostring(tonumber(oldest[2]) + window - now)}
"""


class RedisLimiter:
    """The same sliding window in Redis, so limits hold across web workers and the bot."""

    def __init__(self, url: str, prefix: str = f"{DEFAULT_REDIS_PREFIX}rl:"):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._hit = self._redis.register_script(_HIT)
        self._prefix = prefix
        self._seq = 0
        self._lock = threading.Lock()

    def _member(self) -> str:
        with self._lock:
            self._seq += 1
            return f"{time.time_ns()}-{id(self)}-{self._seq}"

    def hit(self, key: str, limit: int, window_s: int) -> Decision:
        allowed, remaining, wait = self._hit(
            keys=[self._prefix + key], args=[time.time(), window_s, limit, self._member()]
        )
        return Decision(
            bool(allowed), int(remaining), 0 if allowed else max(1, math.ceil(float(wait)))
        )

    def peek(self, key: str, limit: int, window_s: int) -> Decision:
        full = self._prefix + key
        now = time.time()
        pipe = self._redis.pipeline()
        pipe.zremrangebyscore(full, "-inf", now - window_s)
        pipe.zrange(full, 0, -1, withscores=True)
        _, events = pipe.execute()
        if len(events) < limit:
            return Decision(True, limit - len(events), 0)
        wait = events[len(events) - limit][1] + window_s - now
        return Decision(False, 0, max(1, math.ceil(wait)))

    def reset(self, key: str) -> None:
        self._redis.delete(self._prefix + key)


def make_limiter(redis_url: str | None, *, prefix: str = DEFAULT_REDIS_PREFIX) -> RateLimiter:
    """Return a Redis-backed limiter when REDIS_URL is set, else an in-process one.

    `prefix` is the deployment's (Settings.redis_prefix): another Tipline on the same
    Redis keeps its own counters.
    """
    return RedisLimiter(redis_url, prefix=f"{prefix}rl:") if redis_url else MemoryLimiter()
