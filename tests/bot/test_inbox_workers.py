"""Several inbox workers: SKIP LOCKED claims, each chat in update_id order, nothing twice.

The workers here are threads, each with its own engine (its own connections), as
separate processes would be; the handler records what it handled in a table, in the
same transaction that marks the inbox row done.
"""

from __future__ import annotations

import datetime as dt
import random
import threading

import pytest
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, insert, select

from app.bot import inbox
from app.bot.models import InboxUpdate
from app.db import make_engine, make_session_factory, unit_of_work, utcnow

handled_meta = MetaData()
handled = Table(
    "test_handled",
    handled_meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("chat_id", BigInteger),
    Column("update_id", BigInteger),
    Column("worker", String(10)),
)


def message(update_id: int, chat: int) -> dict:
    """A minimal sanitised text update from a private chat."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1,
            "chat": {"id": chat, "type": "private"},
            "text": f"#{update_id}",
        },
    }


def mixed_stream(n: int, chats: int, seed: int = 8) -> list[dict]:
    """n updates with increasing ids, each from a random one of `chats` chats."""
    rng = random.Random(seed)
    return [message(1000 + i, 5000 + rng.randrange(chats)) for i in range(n)]


@pytest.fixture
def inbox_db(engine, session_factory):
    """The test database with the recording table and a clean inbox."""
    handled_meta.create_all(engine)
    return session_factory


def handle(factory, row: inbox.Claimed, worker: str, now=None) -> bool:
    """The handler's one transaction: its effect (a record) and done; False if lost a race."""
    try:
        with unit_of_work(factory) as session:
            chat = row.payload["message"]["chat"]["id"]
            session.execute(
                insert(handled).values(chat_id=chat, update_id=row.update_id, worker=worker)
            )
            inbox.finish_update(session, row.id, now=now)
    except inbox.AlreadyHandled:
        return False
    return True


def work(url: str, name: str, errors: list, stop: threading.Event) -> None:
    """Claim and handle until the inbox has nothing pending (its own engine, like a process)."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    try:
        while not stop.is_set():
            with unit_of_work(factory) as session:
                claimed = inbox.claim_updates(session, lease_seconds=60, limit=7)
            if not claimed:
                with factory() as session:
                    left = session.scalar(
                        select(func.count())
                        .select_from(InboxUpdate)
                        .where(InboxUpdate.status == "pending")
                    )
                if left == 0:
                    return
                continue
            for row in claimed:
                handle(factory, row, name)
    except BaseException as exc:
        errors.append(exc)
        stop.set()
    finally:
        engine.dispose()


def assert_once_and_in_order(factory, stream: list[dict]) -> list:
    """Every update handled exactly once; per chat, handling order is update_id order."""
    with factory() as session:
        rows = session.execute(
            select(handled.c.chat_id, handled.c.update_id, handled.c.worker).order_by(handled.c.id)
        ).all()
    ids = [r.update_id for r in rows]
    assert len(ids) == len(set(ids)) == len(stream)
    assert set(ids) == {p["update_id"] for p in stream}
    per_chat: dict[int, list[int]] = {}
    for r in rows:
        per_chat.setdefault(r.chat_id, []).append(r.update_id)
    for chat, order in per_chat.items():
        assert order == sorted(order), chat
    with factory() as session:
        statuses = session.execute(
            select(InboxUpdate.status, InboxUpdate.chat_id.is_(None), func.count()).group_by(
                InboxUpdate.status, InboxUpdate.chat_id.is_(None)
            )
        ).all()
    assert statuses == [("done", False, len(stream))]
    return rows


def test_two_workers_1000_updates_100_chats(inbox_db, settings):
    stream = mixed_stream(1000, 100)
    with unit_of_work(inbox_db) as session:
        assert inbox.store_updates(session, stream) == 1000
    errors: list = []
    stop = threading.Event()
    workers = [
        threading.Thread(target=work, args=(settings.database_url, f"w{i}", errors, stop))
        for i in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
    assert not any(w.is_alive() for w in workers)
    assert errors == []
    rows = assert_once_and_in_order(inbox_db, stream)
    assert len({r.chat_id for r in rows}) == 100
    assert {r.worker for r in rows} == {"w0", "w1"}  # both took part


def test_a_leased_head_holds_back_its_chat(inbox_db):
    stream = [message(1, 7), message(2, 7), message(3, 8), {"update_id": 4, "poll": {}}]
    with unit_of_work(inbox_db) as session:
        inbox.store_updates(session, stream)
        first = inbox.claim_updates(session, limit=10)
    # One head per chat; the chatless update has no order to keep.
    assert [c.update_id for c in first] == [1, 3, 4]
    with unit_of_work(inbox_db) as session:
        assert inbox.claim_updates(session, limit=10) == []  # 2 waits behind leased 1
        assert not inbox.any_due(session)
        assert inbox.pending_chats(session) == {7, 8}
    handle(inbox_db, first[0], "w")
    with unit_of_work(inbox_db) as session:
        assert [c.update_id for c in inbox.claim_updates(session, limit=10)] == [2]


def test_a_retrying_head_keeps_its_chat_waiting(inbox_db):
    with unit_of_work(inbox_db) as session:
        inbox.store_updates(session, [message(1, 7), message(2, 7)])
        [row] = inbox.claim_updates(session, limit=10)
        inbox.fail_update(session, row.id, error="boom", max_attempts=2, retry_base_seconds=60)
    with unit_of_work(inbox_db) as session:
        assert inbox.claim_updates(session, limit=10) == []  # 1 retries later; 2 after it
    later = utcnow() + dt.timedelta(seconds=61)
    with unit_of_work(inbox_db) as session:
        [again] = inbox.claim_updates(session, now=later, limit=10)
        assert again.update_id == 1
        assert inbox.fail_update(
            session, again.id, error="boom", max_attempts=2, retry_base_seconds=60, now=later
        )  # dead-lettered: the chat moves on
    with unit_of_work(inbox_db) as session:
        assert [c.update_id for c in inbox.claim_updates(session, now=later)] == [2]


def test_a_worker_killed_mid_lease(inbox_db):
    """A's rows come back after the lease, are handled once by B, and A's late finish loses."""
    stream = mixed_stream(60, 6, seed=3)
    t0 = utcnow()
    with unit_of_work(inbox_db) as session:
        inbox.store_updates(session, stream, now=t0)
        lost = inbox.claim_updates(session, now=t0, lease_seconds=30, limit=3)  # then A dies
    assert len(lost) == 3
    lost_chats = {c.payload["message"]["chat"]["id"] for c in lost}

    def drain(now) -> list[int]:
        done = []
        while True:
            with unit_of_work(inbox_db) as session:
                claimed = inbox.claim_updates(session, now=now, lease_seconds=30, limit=4)
            if not claimed:
                return done
            for row in claimed:
                assert handle(inbox_db, row, "B", now=now)
                done.append(row.update_id)

    during = drain(t0 + dt.timedelta(seconds=5))  # B, while A's lease holds
    assert (
        during
        and not {p["message"]["chat"]["id"] for p in stream if p["update_id"] in during}
        & lost_chats
    )
    after = drain(t0 + dt.timedelta(seconds=31))  # the lease ran out
    assert {c.update_id for c in lost} <= set(after)
    with unit_of_work(inbox_db) as session:
        attempts = dict(
            session.execute(
                select(InboxUpdate.update_id, InboxUpdate.attempts).where(
                    InboxUpdate.update_id.in_([c.update_id for c in lost])
                )
            ).all()
        )
    assert set(attempts.values()) == {2}  # A's try, then B's
    # A wakes up (a zombie, not dead after all) and tries to finish: it lost, nothing doubles.
    assert not handle(inbox_db, lost[0], "A")
    rows = assert_once_and_in_order(inbox_db, stream)
    assert {r.worker for r in rows} == {"B"}


# --- the bot process in webhook mode, with several inbox workers -------------------------


def test_webhook_mode_with_three_workers(settings, engine, seeded, tg, bot_settings, invite):
    from app import create_app
    from tests.bot.conftest import RunningBot
    from tests.fake_telegram import FakeUser

    secret = "workers-webhook-secret"
    web = create_app(settings.with_(telegram_webhook_secret=secret))
    users = [FakeUser(tg) for _ in range(5)]
    bodies = []
    for n, user in enumerate(users):
        start = user.message(
            text=f"/start {invite()}", entities=[{"type": "bot_command", "offset": 0, "length": 6}]
        )
        helps = user.message(
            text="/help", entities=[{"type": "bot_command", "offset": 0, "length": 5}]
        )
        bodies += [(9000 + n, start), (9100 + n, helps)]
    client = web.test_client()
    for update_id, msg in bodies:
        response = client.post(
            "/telegram/webhook",
            json={"update_id": update_id, "message": msg},
            headers={"X-Telegram-Bot-Api-Secret-Token": secret},
        )
        assert response.status_code == 200
    web.extensions["tipline"].engine.dispose()
    running = RunningBot(
        bot_settings.with_(telegram_webhook_secret=secret, bot_inbox_workers=3), engine
    ).start()
    try:
        for user in users:
            user.wait_reply("R-")
        tg.wait(lambda: all(len(u.replies()) >= 2 for u in users))
    finally:
        running.stop()
    for user in users:
        first, second = user.replies()[:2]
        assert "R-" in first.text and "R-" not in second.text  # /start, then /help: in order
    with seeded() as session:
        rows = session.execute(select(InboxUpdate.status, InboxUpdate.chat_id)).all()
    assert sorted(r.chat_id for r in rows) == sorted(u.chat_id for u in users for _ in "ab")
    assert {r.status for r in rows} == {"done"}
    assert running.problems.records == []
