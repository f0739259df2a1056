"""Sliding-window limits, in process and in Redis (shared across workers)."""

from __future__ import annotations

import os
import uuid

import pytest

from app.ratelimit import MemoryLimiter, RedisLimiter

REDIS_URL = os.environ.get("TEST_REDIS_URL")


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_memory_limiter_allows_the_limit_then_says_when():
    clock = FakeClock()
    limiter = MemoryLimiter(clock)
    assert [limiter.hit("k", 3, 60).allowed for _ in range(4)] == [True, True, True, False]
    assert limiter.hit("k", 3, 60).retry_after == 60
    clock.now += 30
    assert limiter.peek("k", 3, 60).retry_after == 30
    clock.now += 31
    assert limiter.hit("k", 3, 60).allowed
    assert limiter.hit("other", 3, 60).remaining == 2


@pytest.fixture
def redis_limiter():
    if not REDIS_URL:
        pytest.skip("Redis cases need TEST_REDIS_URL (CI sets it)")
    return RedisLimiter(REDIS_URL, prefix=f"test:{uuid.uuid4().hex}:")


def test_redis_limits_are_shared_between_limiters(redis_limiter):
    other_worker = RedisLimiter(REDIS_URL, prefix=redis_limiter._prefix)
    results = [
        (redis_limiter if i % 2 else other_worker).hit("r:1", 5, 60).allowed for i in range(7)
    ]
    assert results == [True] * 5 + [False] * 2
    denied = redis_limiter.hit("r:1", 5, 60)
    assert not denied.allowed and 1 <= denied.retry_after <= 60
    assert not other_worker.peek("r:1", 5, 60).allowed
    redis_limiter.reset("r:1")
    assert other_worker.hit("r:1", 5, 60).allowed
