"""The sender's pace and how it reads Telegram's answers."""

from __future__ import annotations

import datetime as dt

from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from app.bot.sender import Pacer, outcome_of


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_overall_pace_spreads_sends_evenly():
    clock = Clock()
    pacer = Pacer(30, 1.0, clock)
    starts = []
    for i in range(90):
        clock.now += pacer.delay(f"chat{i}")
        pacer.take(f"chat{i}")
        starts.append(clock.now)
    for i in range(len(starts) - 30):
        assert starts[i + 30] - starts[i] >= 1.0 - 1e-9
    assert starts[-1] - starts[0] < 3.0


def test_one_message_a_second_to_a_chat_and_holds():
    clock = Clock()
    pacer = Pacer(30, 1.0, clock)
    pacer.take("a")
    assert 0.99 < pacer.delay("a") <= 1.0
    assert pacer.delay("b") < 0.04
    pacer.hold("b", 7)
    clock.now += 2
    assert pacer.delay("a") == 0 and 4.9 < pacer.delay("b") <= 5


def test_outcomes(monkeypatch):
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # as make_client() sets it for the bot
    assert outcome_of(None, 1) == ("sent", None, 0.0)
    assert outcome_of(RetryAfter(dt.timedelta(seconds=3)), 1) == ("retry", "retry_after", 3.0)
    assert outcome_of(Forbidden("Forbidden: bot was blocked by the user"), 1)[:2] == (
        "failed",
        "blocked",
    )
    assert outcome_of(BadRequest("chat not found"), 1)[0] == "failed"
    kind, detail, delay = outcome_of(TimedOut(), 3)
    assert (kind, detail, delay) == ("retry", "TimedOut", 8.0)
    assert outcome_of(NetworkError("x"), 20)[2] == 600.0
