"""The inbox: stored before acknowledged, handled once, poison dead-lettered (QUALITY 10-12, 14)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time

import pytest
from sqlalchemy import func, select

from app.bot import conversation, inbox
from app.bot.models import Draft, InboxUpdate
from app.bot.runtime import AlreadyRunning, BotRuntime
from app.bot.updates import sanitise_update
from app.db import unit_of_work, utcnow
from app.people.models import Reporter
from app.reports.storage import make_media_store
from tests.bot.conftest import RunningBot
from tests.fake_telegram import FakeUser

SECRET = "webhook-secret-canary-9f2"


def count(session_factory, model, *where) -> int:
    with session_factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_same_update_twice_one_effect_one_reply(driver, tg, session_factory):
    update = {"message": driver.message(text="📝 报告线索")}
    uid = tg.push(update)
    tg.push(update, update_id=uid)  # the same update twice in one batch
    driver.wait_reply("类别")
    tg.push(update, update_id=uid)  # and again after it was handled
    tg.wait(lambda: tg.pending_updates() == 0)
    driver.text("/help is not a command without its entity")  # a later update, handled after
    driver.wait_reply("按钮")
    assert sum("类别" in m.text for m in driver.replies()) == 1
    assert count(session_factory, Draft) == 1
    assert count(session_factory, InboxUpdate, InboxUpdate.update_id == uid) == 1


def test_concurrent_inserts_of_one_update_store_one_row(session_factory, seeded):
    payload = sanitise_update(
        {
            "update_id": 777,
            "message": {
                "message_id": 1,
                "date": 1,
                "chat": {"id": 5, "type": "private"},
                "text": "x",
            },
        }
    )
    barrier = threading.Barrier(4)
    stored = []

    def insert():
        barrier.wait()
        with unit_of_work(session_factory) as s:
            stored.append(inbox.store_updates(s, [payload]))

    threads = [threading.Thread(target=insert) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(stored) == [0, 0, 0, 1]
    assert count(session_factory, InboxUpdate) == 1


def test_stored_but_unhandled_updates_are_handled_once_after_restart(
    tg, bot_settings, engine, seeded, session_factory, invite
):
    first, second = FakeUser(tg), FakeUser(tg)
    updates = [
        {
            "update_id": 501,
            "message": first.message(
                text=f"/start {invite()}",
                entities=[{"type": "bot_command", "offset": 0, "length": 6}],
            ),
        },
        {
            "update_id": 502,
            "message": second.message(
                text=f"/start {invite()}",
                entities=[{"type": "bot_command", "offset": 0, "length": 6}],
            ),
        },
    ]
    with unit_of_work(session_factory) as s:
        inbox.store_updates(s, [sanitise_update(u) for u in updates])
    with unit_of_work(session_factory) as s:  # a consumer claimed 502 and died mid-handling
        assert [c.update_id for c in inbox.claim_updates(s, limit=1)] == [501]
    # Telegram never saw the offset move past them, so it delivers both again.
    for u in updates:
        tg.push_raw(u)
    running = RunningBot(bot_settings, engine).start()
    try:
        first.wait_reply("R-")
        second.wait_reply("R-")
        tg.wait(lambda: tg.pending_updates() == 0)
        tg.wait(lambda: count(session_factory, InboxUpdate, InboxUpdate.status == "done") == 2)
    finally:
        running.stop()
    assert count(session_factory, Reporter) == 2
    assert len(first.replies()) == 1 and len(second.replies()) == 1


def test_poison_update_is_dead_lettered_and_others_flow(
    driver, tg, bot, invite, session_factory, monkeypatch
):
    real = conversation.apply_update

    def apply_update(session, env, inc, plan, fetched):
        if inc.text == "POISON":
            raise RuntimeError("handler bug")
        return real(session, env, inc, plan, fetched)

    monkeypatch.setattr(conversation, "apply_update", apply_update)
    uid = driver.text("POISON")
    other = FakeUser(tg)
    other.command("start", invite())
    other.wait_reply("R-")  # flows while the poison one is retried
    driver.wait_reply("出错")
    with session_factory() as s:
        row = s.scalar(select(InboxUpdate).where(InboxUpdate.update_id == uid))
        assert row.status == "dead" and row.attempts == bot.runtime.settings.bot_max_attempts
        assert row.last_error.startswith("RuntimeError at test_inbox.py")
    driver.text("📝 报告线索")
    driver.wait_reply("类别")
    assert sum("出错" in m.text for m in driver.replies()) == 1
    assert any("dead-lettered" in p for p in bot.logged_problems())


def test_malformed_updates_do_not_block_the_batch(tg, bot, invite, session_factory):
    tg.push_raw({"update_id": tg.next_update_id(), "message": "not an object"})
    tg.push_raw(
        {
            "update_id": tg.next_update_id(),
            "message": {"chat": "x", "from": None, "text": 5, "date": "x"},
        }
    )
    tg.push_raw(
        {"update_id": tg.next_update_id(), "callback_query": {"id": None, "data": {"x": 1}}}
    )
    tg.push_raw(
        {
            "update_id": tg.next_update_id(),
            "message": {
                "message_id": 1,
                "date": 1,
                "chat": {"id": 1, "type": "private"},
                "from": {"id": 1},
                "photo": [{}],
            },
        }
    )
    tg.push_raw({"update_id": tg.next_update_id(), "my_chat_member": {"chat": {"id": 3}}})
    user = FakeUser(tg)
    user.command("start", invite())
    user.wait_reply("R-")
    tg.wait(lambda: count(session_factory, InboxUpdate, InboxUpdate.status == "done") == 6)
    assert bot.logged_problems() == []


def test_one_consumer_per_token(bot, bot_settings, engine):
    with pytest.raises(AlreadyRunning):
        RunningBot(bot_settings, engine).start()


@pytest.fixture
def webhook_app(settings, engine, seeded):
    from app import create_app

    application = create_app(settings.with_(telegram_webhook_secret=SECRET))
    yield application
    application.extensions["tipline"].engine.dispose()


def test_webhook_checks_the_secret_and_stores_once(webhook_app, session_factory, caplog):
    caplog.set_level(logging.DEBUG)
    client = webhook_app.test_client()
    body = {
        "update_id": 42,
        "message": {
            "message_id": 1,
            "date": 1700000000,
            "chat": {"id": 7, "type": "private"},
            "from": {"id": 7, "is_bot": False},
            "text": "webhook body canary",
        },
    }
    header = "X-Telegram-Bot-Api-Secret-Token"
    assert client.post("/telegram/webhook", json=body).status_code == 403
    wrong = client.post("/telegram/webhook", json=body, headers={header: SECRET + "x"})
    assert wrong.status_code == 403
    assert count(session_factory, InboxUpdate) == 0
    for _ in range(2):
        ok = client.post("/telegram/webhook", json=body, headers={header: SECRET})
        assert ok.status_code == 200
    assert count(session_factory, InboxUpdate) == 1
    bad = client.post("/telegram/webhook", data=b"[1,2", headers={header: SECRET})
    assert bad.status_code == 400
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "webhook body canary" not in logged and SECRET not in logged


def test_webhook_is_off_in_polling_mode(client):
    assert client.post("/telegram/webhook", json={"update_id": 1}).status_code == 404


def test_webhook_mode_drains_the_inbox(webhook_app, tg, bot_settings, engine, invite):
    running = RunningBot(bot_settings.with_(telegram_webhook_secret=SECRET), engine).start()
    try:
        user = FakeUser(tg)
        body = {
            "update_id": 4242,
            "message": user.message(
                text=f"/start {invite()}",
                entities=[{"type": "bot_command", "offset": 0, "length": 6}],
            ),
        }
        response = webhook_app.test_client().post(
            "/telegram/webhook", json=body, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
        )
        assert response.status_code == 200
        user.wait_reply("R-")
    finally:
        running.stop()
    assert tg.calls_of("getUpdates") == [] and tg.calls_of("deleteWebhook") == []


def test_hourly_job_sweeps_orphans_and_prunes_the_inbox(bot_settings, engine, session_factory):
    """The bot's one hourly job is retention: the orphan sweep and inbox pruning with it."""
    store = make_media_store(bot_settings)
    orphan = store.put(b"\xff\xd8 a photo whose tip never committed \xff\xd9")
    old = time.time() - bot_settings.orphan_grace_seconds - 60
    os.utime(store.path(orphan), (old, old))
    long_ago = utcnow() - dt.timedelta(days=3)
    with unit_of_work(session_factory) as s:
        s.add(InboxUpdate(update_id=1, payload={}, status="done", processed_at=long_ago))
    BotRuntime(bot_settings, engine=engine)._sweep()
    assert not store.exists(orphan)
    assert count(session_factory, InboxUpdate) == 0
