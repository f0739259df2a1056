"""Crash injection in the bot (QUALITY 12, 13, 37; issue 9 item 1): SIGKILL `tipline bot`.

The process dies after an update is stored and before it is handled, after an
update's transaction and before its replies go out (in the middle of a report),
and after an outbox row is claimed and before it is sent. After a restart each
update has had one effect, each message went out once, and the report goes on
from the same draft. A graceful stop right after a send must not send it again.
"""

from __future__ import annotations

import signal

import pytest

from tests.bot.test_conversation import REF_PREFIX, ref_of
from tests.fake_telegram import FakeUser
from tests.system import canaries, tally
from tests.system.harness import BotProcess, noise_jpeg, tip_by_description, wait_for

WELCOME = "R-"  # the /start reply names the reporter's pseudonym


@pytest.fixture
def bot(system_env, fake_telegram):
    process = BotProcess(system_env, fake_telegram)
    yield process
    process.close()


def _killed(bot: BotProcess) -> None:
    assert bot.wait_dead() == -signal.SIGKILL
    tally.add("crashes injected")


def _each_message_once(user: FakeUser) -> list[str]:
    texts = [m.text for m in user.replies()]
    assert len(texts) == len(set(texts)), texts
    return texts


def _help_round_trip(user: FakeUser) -> None:
    """One more exchange: by its reply, a duplicate of anything earlier would have shown."""
    user.command("help")
    user.wait_reply("/report")


def _stuck_claims(system_env) -> int:
    """Outbox rows claimed by a sender and never marked (they would go out again)."""
    return system_env.scalar(
        "SELECT count(*) FROM outbox WHERE status = 'pending' AND last_error = 'sending'"
    )


def test_killed_after_update_stored(system_env, fake_telegram, bot):
    bot.start()
    system_env.arm_fault("update_stored")
    user = FakeUser(fake_telegram)
    update_id = user.command("start")
    _killed(bot)
    row = "SELECT status FROM bot_inbox WHERE update_id = :u"
    assert system_env.scalar(row, u=update_id) == "pending" and user.replies() == []

    bot.start()  # Telegram sends the unconfirmed update again; the inbox already has it
    user.wait_reply(WELCOME)
    _help_round_trip(user)
    assert system_env.scalar(row, u=update_id) == "done"
    assert [t for t in _each_message_once(user) if WELCOME in t][:1]


def test_killed_before_send(system_env, fake_telegram, bot):
    bot.start()
    system_env.arm_fault("before_send")
    user = FakeUser(fake_telegram)
    user.command("start")
    _killed(bot)
    assert user.replies() == [] and _stuck_claims(system_env) >= 1

    bot.start()
    user.wait_reply(WELCOME)
    _help_round_trip(user)
    _each_message_once(user)


def _wait_recorded(system_env, stuck: int) -> None:
    """Wait until the sender has written the outcome of what it sent.

    Between Telegram's "ok" and that write (RECORD_DELAY, ~50 ms) a SIGKILL makes the
    message go out once more after the restart: at-least-once is the promise there,
    since Telegram has no idempotent send. The crash points here are elsewhere.
    """
    wait_for(lambda: _stuck_claims(system_env) <= stuck, 10, "the send was never recorded")


def _welcomed(system_env, fake_telegram, bot: BotProcess) -> tuple[FakeUser, int]:
    """Start the bot and have a new user /start it; also the stuck claims from before."""
    stuck = _stuck_claims(system_env)
    bot.start()
    user = FakeUser(fake_telegram)
    user.command("start")
    user.wait_reply(WELCOME)
    return user, stuck


def test_killed_mid_report_continues_the_draft(system_env, fake_telegram, bot):
    user, stuck = _welcomed(system_env, fake_telegram, bot)
    _wait_recorded(system_env, stuck)
    text = canaries.tip_fields()["description"]
    system_env.arm_fault("update_applied")
    user.photo(noise_jpeg(), caption=text)
    _killed(bot)

    bot.start()
    user.wait_reply("分钟内发送位置")  # the reply of the committed photo, sent after all
    user.location(canaries.LAT, canaries.LON)
    assert text in user.wait_reply("请核对").text
    user.press("sum:confirm")
    ref = ref_of(user.wait_reply(REF_PREFIX))
    tally.add("tips acknowledged")
    stored = tip_by_description(system_env, text)
    assert [t["ref"] for t in stored] == [ref] and len(stored[0]["photos"]) == 1
    _each_message_once(user)


def test_graceful_stop_right_after_a_send_does_not_resend(system_env, fake_telegram, bot):
    user, stuck = _welcomed(system_env, fake_telegram, bot)
    assert bot.stop() == 0  # at once: the send's outcome may not be written yet
    assert _stuck_claims(system_env) == stuck

    bot.start()
    _help_round_trip(user)
    _each_message_once(user)
