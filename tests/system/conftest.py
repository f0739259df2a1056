"""System-test fixtures: one real database for the session, the fake Bot API, the summary."""

from __future__ import annotations

import itertools
import os

import pytest

from tests.fake_telegram import FakeTelegram
from tests.system import canaries, tally
from tests.system.harness import SystemEnv, WebServer, record_totals

NO_PG = "tests/system need TEST_DATABASE_URL (a PostgreSQL server; CI sets it)"


@pytest.fixture(scope="session")
def system_env(tmp_path_factory):
    """The suite's database, media dir and log dir (see harness.py)."""
    base_url = os.environ.get("TEST_DATABASE_URL")
    if not base_url:
        pytest.skip(NO_PG)
    env = SystemEnv(base_url, tmp_path_factory.mktemp("system")).create()
    try:
        yield env
    finally:
        try:
            record_totals(env)
        finally:
            env.close()


@pytest.fixture(scope="session")
def web_server(system_env):
    """One plain gunicorn (2 workers) shared by every test that needs no special set-up.

    It answers the Telegram webhook too (the secret is a canary). A test that kills it
    starts it again (`web_server.start()`), so later tests find it running.
    """
    server = WebServer(
        system_env, extra_env={"TELEGRAM_WEBHOOK_SECRET": canaries.WEBHOOK_SECRET}
    ).start()
    yield server
    server.close()


_UPDATE_ID_BLOCKS = itertools.count(1)


@pytest.fixture
def fake_telegram():
    """A fresh fake Bot API server for one test.

    Its update_ids start above every earlier fake's: the suite's database keeps the
    inbox, and an update_id seen before is (rightly) ignored as a duplicate.
    """
    fake = FakeTelegram()
    fake._update_ids = itertools.count(next(_UPDATE_ID_BLOCKS) * 1_000_000)
    fake.start()
    yield fake
    tally.add("messages sent", len(fake.sent))
    fake.stop()


def pytest_terminal_summary(terminalreporter):
    """Print the counts issue 9 asks for when any system test ran."""
    counts = tally.counts()
    if not any(counts.values()):
        return
    terminalreporter.section("system suite tally")
    for line in tally.lines():
        terminalreporter.write_line(line)
