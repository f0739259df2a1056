"""Bot fixtures: the fake Bot API, the bot runtime in a thread, invites and fake users."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from app.bot.runtime import BotRuntime
from app.config import Settings
from app.people.services import create_invites
from tests.fake_telegram import FakeTelegram, FakeUser


@pytest.fixture
def tg():
    """The fake Bot API server."""
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


@pytest.fixture
def bot_settings(settings: Settings, tg: FakeTelegram) -> Settings:
    """Settings pointing the bot at the fake server, with short waits for fast tests."""
    return settings.with_(
        telegram_bot_token=tg.token,
        telegram_api_base_url=tg.api_base_url,
        telegram_file_base_url=tg.file_base_url,
        bot_chat_interval_seconds=0.0,
        bot_retry_base_seconds=0.05,
        bot_poll_timeout=1,
        # As in production: a loaded CI machine can space one album's photos by > 0.3 s.
        bot_album_settle_seconds=1.0,
    )


class _Problems(logging.Handler):
    """Collects warnings and errors the bot logs, so a test can say there were none."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


class RunningBot:
    """A BotRuntime on its own event loop in a background thread."""

    def __init__(self, settings: Settings, engine=None):
        self.runtime = BotRuntime(settings, engine=engine)
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.problems = _Problems()
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        async def main():
            task = asyncio.create_task(self.runtime.run())
            while not self.runtime.running and not task.done():
                await asyncio.sleep(0.01)
            if task.done():
                await task  # it failed to start: raise here
            self.started.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self.started.set()

    def start(self) -> RunningBot:
        logging.getLogger("tipline.bot").addHandler(self.problems)
        self.thread.start()
        assert self.started.wait(15), "bot did not start"
        if self.error:
            raise self.error
        return self

    def stop(self) -> None:
        self.runtime.stop()
        self.thread.join(15)
        logging.getLogger("tipline.bot").removeHandler(self.problems)
        assert not self.thread.is_alive(), "bot did not stop"
        if self.error:
            raise self.error

    def logged_problems(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.problems.records]


@pytest.fixture
def bot(bot_settings, engine, seeded, tg):
    """The bot running against the fake server and the seeded test database."""
    running = RunningBot(bot_settings, engine).start()
    yield running
    running.stop()


@pytest.fixture
def sqlite_is_enough(db_url):
    """Skip the PostgreSQL run of a test of conversation logic alone (keeps the suite short).

    The database paths those tests use (drafts, inbox, outbox, registration, albums,
    restarts, the workflow) are exercised on PostgreSQL by the other bot tests.
    """
    if not db_url.startswith("sqlite"):
        pytest.skip("conversation logic only: the SQLite run covers it")


@pytest.fixture
def invite(session_factory, settings, seeded):
    """Make an invite code: invite(role="taxi_driver", org=None)."""

    def make(role: str = "taxi_driver") -> str:
        with session_factory() as s:
            (code,) = create_invites(s, settings.secret_key, role)
            s.commit()
        return code

    return make


@pytest.fixture
def driver(tg, bot, invite) -> FakeUser:
    """A taxi driver registered through an invite (the welcome already read)."""
    user = FakeUser(tg)
    user.command("start", invite("taxi_driver"))
    user.wait_reply("R-")
    return user
