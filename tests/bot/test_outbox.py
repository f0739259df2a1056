"""The outbox sender: pace, 429 and 403, status changes and staff alerts (QUALITY 18, 19, 37)."""

from __future__ import annotations

import collections
import itertools
import threading

import pytest
from sqlalchemy import func, select

from app.bot.sender import claim_outbox
from app.db import unit_of_work
from app.outbox.models import OutboxMessage
from app.outbox.services import queue_message
from app.people.identities import issue_staff_link_code, register_telegram_reporter
from app.people.services import create_staff_user
from app.reports.models import Tip
from tests.bot.conftest import RunningBot
from tests.bot.test_conversation import REF_PREFIX, file_a_guided_tip, ref_of, tip_by_ref
from tests.fake_telegram import FakeUser

CHAT_BASE = 880_000_000


def make_recipients(session_factory, settings, n: int) -> list[tuple[int, int]]:
    """Register n Telegram reporters directly; return (reporter id, chat id) pairs."""
    out = []
    with unit_of_work(session_factory) as s:
        for i in range(n):
            chat = CHAT_BASE + i
            r = register_telegram_reporter(
                s,
                settings.secret_key,
                user_id=chat,
                chat_id=chat,
                invite_code=None,
                allow_citizens=True,
            )
            out.append((r.id, chat))
    return out


def queue_status(session_factory, pairs, per_recipient: int = 1, first: int = 0) -> int:
    n = 0
    with unit_of_work(session_factory) as s:
        for k in range(per_recipient):
            for reporter_id, _chat in pairs:
                queue_message(
                    s,
                    recipient_kind="reporter",
                    recipient_id=reporter_id,
                    template="reporter_status",
                    params={"ref": f"T-{first + k:06d}", "status": "closed"},
                )
                n += 1
    return n


def statuses(session_factory) -> dict[str, int]:
    with session_factory() as s:
        rows = s.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))
        return dict(rows.all())


def max_in_window(times: list[float], window: float) -> int:
    times, best, j = sorted(times), 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_pace_and_429s_deliver_each_message_once(tg, bot_settings, engine, seeded, session_factory):
    if engine.dialect.name != "sqlite":
        pytest.skip("the pace does not depend on the database; the SQLite run covers it")
    pairs = make_recipients(session_factory, bot_settings, 150)
    total = queue_status(session_factory, pairs) + queue_status(
        session_factory, pairs[:10], 2, first=1
    )
    attempts = collections.Counter()
    lock = threading.Lock()

    def every_fifth_429(method, params):
        if method != "sendMessage":
            return None
        with lock:
            key = (params["chat_id"], params["text"])
            attempts[key] += 1
            first = attempts[key] == 1
        if first and sum(attempts.values()) % 5 == 0:
            return 429, "Too Many Requests: retry after 1", 1
        return None

    tg.fail = every_fifth_429
    settings = bot_settings.with_(bot_chat_interval_seconds=1.0, bot_send_per_second=30)
    running = RunningBot(settings, engine).start()
    try:
        tg.wait(lambda: statuses(session_factory).get("sent") == total, timeout=60)
    finally:
        running.stop()
    calls = tg.calls_of("sendMessage")
    delivered = collections.Counter(
        (c.params["chat_id"], c.params["text"]) for c in calls if c.status == 200
    )
    assert len(delivered) == total and set(delivered.values()) == {1}
    assert sum(c.status == 429 for c in calls) >= total // 5 - 2
    # Pace, as the server saw it: <= 30 in any second, <= 1 a second to each chat.
    assert max_in_window([c.at for c in calls], 0.97) <= 30
    by_chat = collections.defaultdict(list)
    for c in calls:
        by_chat[c.params["chat_id"]].append(c.at)
    gaps = [b - a for ts in by_chat.values() for a, b in itertools.pairwise(ts)]
    assert min(gaps) >= 0.97


def test_blocked_chat_fails_for_good_and_nothing_else_breaks(tg, bot, session_factory, settings):
    pairs = make_recipients(session_factory, settings, 3)
    tg.blocked_chats.add(pairs[1][1])
    queue_status(session_factory, pairs)
    tg.wait(lambda: statuses(session_factory).get("sent") == 2)
    tg.wait(lambda: statuses(session_factory).get("failed") == 1)
    with session_factory() as s:
        failed = s.scalar(select(OutboxMessage).where(OutboxMessage.status == "failed"))
    assert failed.last_error == "blocked" and failed.recipient_id == pairs[1][0]
    queue_status(session_factory, pairs[:1])
    tg.wait(lambda: statuses(session_factory).get("sent") == 3)
    assert sum(c.params["chat_id"] == pairs[1][1] for c in tg.calls_of("sendMessage")) == 1


def test_claimed_but_unsent_row_is_sent_once_after_restart(
    tg, bot_settings, engine, seeded, session_factory
):
    pairs = make_recipients(session_factory, bot_settings, 1)
    queue_status(session_factory, pairs)
    with unit_of_work(session_factory) as s:  # a sender claimed it, then died before sending
        assert len(claim_outbox(s)) == 1
    running = RunningBot(bot_settings, engine).start()
    try:
        tg.wait(lambda: statuses(session_factory).get("sent") == 1)
    finally:
        running.stop()
    assert len(tg.calls_of("sendMessage")) == 1


def test_status_change_reaches_the_reporter(driver, session_factory):
    from app.reports.workflow import apply_action

    ref = file_a_guided_tip(driver)
    tip = tip_by_ref(session_factory, ref)
    with unit_of_work(session_factory) as s:
        boss = create_staff_user(s, "boss", "supervisor", grids=["C"])
        apply_action(s, tip.id, actor_id=boss.id, action="acknowledge")
    assert ref in driver.wait_reply("处理中").text


def test_staff_link_alert_and_acknowledge_button(driver, tg, session_factory, settings):
    with unit_of_work(session_factory) as s:
        create_staff_user(s, "gw3", "grid_worker", grids=["G3"])
        code = issue_staff_link_code(s, settings.secret_key, "gw3")
    worker = FakeUser(tg)
    worker.command("start", code.lower())
    worker.wait_reply("gw3")
    worker.command("start", code)  # used up: now it is just an unknown code
    worker.wait_reply("邀请码无效")
    driver.text("📝 报告线索")
    driver.press("抢劫/暴力")
    driver.text("有人持刀抢劫")
    driver.press("photos:skip")
    from tests.layers import centre_of

    driver.location(*centre_of("G3"))
    driver.press("sum:confirm")
    ref = ref_of(driver.wait_reply(REF_PREFIX))
    alert = worker.wait_reply(ref)
    assert alert.buttons() and alert.buttons()[0]["callback_data"] == f"ack:{ref}"
    worker.press(f"ack:{ref}")
    tg.wait(lambda: "确认受理" in alert.text and not alert.buttons())
    with session_factory() as s:
        assert s.scalar(select(Tip.status).where(Tip.ref == ref)) == "acknowledged"
    assert ref in driver.wait_reply("处理中").text
    answers = [c.params.get("text", "") for c in tg.calls_of("answerCallbackQuery")]
    assert any(ref in a for a in answers)


def test_a_stranger_cannot_acknowledge(driver, tg, session_factory):
    ref = file_a_guided_tip(driver)
    stranger = FakeUser(tg)
    stranger.tg.push(
        {
            "callback_query": {
                "id": "cq1",
                "from": {"id": stranger.id},
                "message": {"message_id": 1, "chat": {"id": stranger.chat_id, "type": "private"}},
                "data": f"ack:{ref}",
            }
        }
    )
    tg.wait(lambda: tg.calls_of("answerCallbackQuery"))
    assert tip_by_ref(session_factory, ref).status == "new"
