"""One clock tick at a time across processes: Redis lock with expiry, else a PG advisory lock."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from app.cli import Context, cli
from app.config import load_settings
from app.db import make_engine, make_session_factory
from app.locks import JobLock, clock_lock

REDIS_URL = os.environ.get("TEST_REDIS_URL")
NO_REDIS = "Redis cases need TEST_REDIS_URL (CI sets it; see README)"


@pytest.fixture
def redis_url():
    if not REDIS_URL:
        pytest.skip(NO_REDIS)
    return REDIS_URL


def hold(lock: JobLock, factory):
    """Start a holder whose job waits inside the lock; return (release, thread, out)."""
    entered, release, out = threading.Event(), threading.Event(), []

    def job(session):
        session.execute(select(1))
        entered.set()
        assert release.wait(30)
        return "first"

    thread = threading.Thread(target=lambda: out.append(lock.run(factory, job)))
    thread.start()
    assert entered.wait(30)
    return release, thread, out


def second_runner(name: str, url: str, redis: str | None) -> str | None:
    """Another process's attempt: its own engine and its own lock object."""
    engine = make_engine(url)
    try:
        lock = JobLock(name, redis_url=redis)
        return lock.run(make_session_factory(engine), lambda s: "second")
    finally:
        engine.dispose()


def assert_one_tick_at_a_time(url: str, redis: str | None) -> None:
    """A second runner is skipped while the first holds the lock, and runs once it is done."""
    name = f"job-{uuid.uuid4().hex[:8]}"
    engine = make_engine(url)
    try:
        factory = make_session_factory(engine)
        release, thread, out = hold(JobLock(name, redis_url=redis), factory)
        assert second_runner(name, url, redis) is None  # skipped while held
        release.set()
        thread.join(30)
        assert out == ["first"]
        # The lock ended with the holder's transaction (or its Redis key).
        assert second_runner(name, url, redis) == "second"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_advisory_lock_lets_one_tick_run(pg_schema_url):
    assert_one_tick_at_a_time(pg_schema_url, None)


def test_redis_lock_lets_one_tick_run(redis_url, db_url):
    assert_one_tick_at_a_time(db_url, redis_url)


def test_redis_lock_expires_when_its_holder_dies(redis_url):
    import redis

    name = f"job-{uuid.uuid4().hex[:8]}"
    dead = JobLock(name, redis_url=redis_url, ttl_seconds=0.3)
    token = dead.acquire_redis()  # ... and the process is killed before releasing
    assert token is not None
    other = JobLock(name, redis_url=redis_url, ttl_seconds=60)
    assert other.acquire_redis() is None
    assert 0 < redis.Redis.from_url(redis_url).pttl(dead.key) <= 300
    deadline = time.monotonic() + 10
    mine = None
    while mine is None and time.monotonic() < deadline:
        time.sleep(0.05)
        mine = other.acquire_redis()
    assert mine is not None  # freed by the expiry
    dead.release_redis(token)  # the zombie's late release must not free the new holder's lock
    assert JobLock(name, redis_url=redis_url).acquire_redis() is None
    other.release_redis(mine)
    assert JobLock(name, redis_url=redis_url).acquire_redis() is not None


def test_redis_down_falls_back_to_the_database(db_url, caplog):
    lock = JobLock("job", redis_url="redis://127.0.0.1:1/0")
    engine = make_engine(db_url)
    try:
        assert lock.run(make_session_factory(engine), lambda s: 42) == 42
    finally:
        engine.dispose()
    assert "using the database" in caplog.text


def test_sqlite_without_redis_just_runs(sqlite_url):
    engine = make_engine(sqlite_url)
    try:
        assert JobLock("job").run(make_session_factory(engine), lambda s: "ran") == "ran"
    finally:
        engine.dispose()


def test_clock_lock_expiry_outlives_slow_ticks():
    assert clock_lock(None, 15).ttl_ms == 60_000 and clock_lock(None, 60).ttl_ms == 240_000


def test_cli_clock_skips_while_another_runner_ticks(redis_url, engine, settings, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("TIPLINE_SECRET_KEY", "k" * 32)
    # This deployment's prefix: a fresh one, as other runs of the suite share this Redis.
    monkeypatch.setenv("TIPLINE_REDIS_PREFIX", f"test:{uuid.uuid4().hex[:12]}")
    prefix = load_settings().redis_prefix
    runner = CliRunner()
    other = clock_lock(redis_url, prefix=f"test:{uuid.uuid4().hex[:12]}:")  # another Tipline
    other_token = other.acquire_redis()
    try:
        result = runner.invoke(cli, ["clock", "run"], obj=Context())
        assert result.exit_code == 0 and "escalated 0 tip(s)" in result.output
    finally:
        other.release_redis(other_token)
    holder = clock_lock(redis_url, prefix=prefix)
    token = holder.acquire_redis()
    try:
        result = runner.invoke(cli, ["clock", "run"], obj=Context())
        assert result.exit_code == 0 and "skipped" in result.output, (
            "`tipline clock run` must lock under Settings.redis_prefix (app/cli.py: "
            "clock_lock(ctx.settings.redis_url, every, prefix=ctx.settings.redis_prefix))"
        )
    finally:
        holder.release_redis(token)
    result = runner.invoke(cli, ["clock", "run"], obj=Context())
    assert result.exit_code == 0 and "escalated 0 tip(s)" in result.output
